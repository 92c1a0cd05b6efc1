// One MQTT.js client for thingcore's integration tests (tests/integration/test_websocket_clients.py).
//
//   node mqtt_client.mjs <ws-url> <protocolVersion 3|4|5> <clientId> <topicIn> <topicOut>
//
// Connects, subscribes to topicIn at QoS 1 and prints {"event":"subscribed"}. For the first message on
// topicIn it prints {"event":"message",...}, publishes "echo:<payload>" to topicOut at QoS 1 (with a user
// property on MQTT 5), disconnects and exits 0. Any error prints {"event":"error"} and exits 1; no message
// within 20 s exits 2.
import mqtt from "mqtt";

const [url, version, clientId, topicIn, topicOut] = process.argv.slice(2);
const protocolVersion = Number(version);
const print = (obj) => process.stdout.write(JSON.stringify(obj) + "\n");

const options = { protocolVersion, clientId, reconnectPeriod: 0, connectTimeout: 10000 };
if (protocolVersion === 3) options.protocolId = "MQIsdp"; // MQTT 3.1 (WebSocket subprotocol mqttv3.1)
const client = mqtt.connect(url, options);
const timer = setTimeout(() => { print({ event: "timeout" }); process.exit(2); }, 20000);

client.on("error", (err) => { print({ event: "error", message: String(err && err.message) }); process.exit(1); });
client.on("connect", () => {
  client.subscribe(topicIn, { qos: 1 }, (err, granted) => {
    if (err) { print({ event: "error", message: String(err.message) }); process.exit(1); }
    print({ event: "subscribed", granted: granted.map((g) => g.qos) });
  });
});
client.on("message", (topic, payload, packet) => {
  print({ event: "message", topic, payload: payload.toString(), qos: packet.qos,
          userProperties: (packet.properties && packet.properties.userProperties) || null });
  const options = { qos: 1 };
  if (protocolVersion === 5) options.properties = { userProperties: { via: "mqtt.js" } };
  client.publish(topicOut, "echo:" + payload.toString(), options, (err) => {
    if (err) { print({ event: "error", message: String(err.message) }); process.exit(1); }
    clearTimeout(timer);
    client.end(false, {}, () => { print({ event: "done" }); process.exit(0); });
  });
});
