// One MQTT-over-WebSocket connection to /mqtt on the page's own origin, shared by every view.
// Views register filters with `conn.subscribe(filter, handler)`; each filter gets an MQTT 5 subscription
// identifier, so a message is handed only to the views whose filter matched, even when filters overlap.
import mqtt from "../vendor/mqtt.esm.js";
import { matches } from "./topics.js";

const AUTH_REFUSED = new Set([4, 5, 134, 135]); // 3.1.1 and 5 CONNACK codes: bad credentials, not authorized

export class Connection extends EventTarget {
  constructor() {
    super();
    this.client = null;
    this.state = "offline";
    this.subs = new Map(); // filter -> {id, qos, handlers: Set}
    this.byId = new Map(); // subscription identifier -> entry
    this.nextId = 1;
    this.acked = new Set(); // filters the broker granted on the current connection (tests wait on this)
  }

  url() {
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    return `${scheme}://${location.host}/mqtt`;
  }

  /** (Re)connect with these credentials; MQTT.js reconnects on its own after every loss. */
  connect({ username, password } = {}) {
    if (this.client) this.client.end(true);
    const clientId = `dashboard-${Math.random().toString(16).slice(2, 10)}`;
    const client = mqtt.connect(this.url(), {
      protocolVersion: 5, clientId, clean: true, reconnectPeriod: 2000, connectTimeout: 8000,
      resubscribe: false, username: username || undefined, password: password || undefined,
    });
    this.client = client;
    this.clientId = clientId;
    this.setState("connecting");
    client.on("connect", () => {
      this.acked.clear();
      this.setState("connected");
      for (const [filter, entry] of this.subs) this.sendSubscribe(filter, entry);
    });
    client.on("reconnect", () => this.setState("reconnecting"));
    client.on("close", () => { if (this.state !== "refused") this.setState("offline", "connection lost"); });
    client.on("error", (err) => {
      if (AUTH_REFUSED.has(err.code)) this.setState("refused", `authentication refused (${err.message})`);
      else this.setState(this.state, err.message);
    });
    client.on("message", (topic, payload, packet) => this.dispatch(topic, payload, packet));
  }

  setState(state, detail = "") {
    this.state = state;
    this.dispatchEvent(new CustomEvent("state", { detail: { state, detail } }));
  }

  dispatch(topic, payload, packet) {
    const received = performance.timeOrigin + performance.now();
    const msg = { topic, payload, qos: packet.qos, retain: packet.retain, properties: packet.properties || {}, received };
    let ids = msg.properties.subscriptionIdentifier;
    if (ids !== undefined && !Array.isArray(ids)) ids = [ids];
    const entries = ids ? ids.map((id) => this.byId.get(id)).filter(Boolean)
      : [...this.subs].filter(([f]) => matches(f, topic)).map(([, e]) => e);
    for (const entry of entries) for (const h of entry.handlers) {
      try { h(msg); } catch (err) { console.error("dashboard handler failed", err); }
    }
  }

  sendSubscribe(filter, entry) {
    this.client.subscribe(filter, { qos: entry.qos, properties: { subscriptionIdentifier: entry.id } }, (err, granted) => {
      const refused = err || (granted && granted.some((g) => g.qos >= 128));
      if (refused) this.dispatchEvent(new CustomEvent("suberror", { detail: { filter, error: err ? err.message : "refused" } }));
      else this.acked.add(filter);
    });
  }

  /** Call handler(msg) for every message matching filter; returns a function that unsubscribes. */
  subscribe(filter, handler, qos = 0) {
    let entry = this.subs.get(filter);
    if (!entry) {
      entry = { id: this.nextId++, qos, handlers: new Set() };
      this.subs.set(filter, entry);
      this.byId.set(entry.id, entry);
      if (this.client && this.client.connected) this.sendSubscribe(filter, entry);
    }
    entry.handlers.add(handler);
    return () => {
      entry.handlers.delete(handler);
      if (entry.handlers.size === 0 && this.subs.get(filter) === entry) {
        this.subs.delete(filter);
        this.byId.delete(entry.id);
        this.acked.delete(filter);
        if (this.client && this.client.connected) this.client.unsubscribe(filter);
      }
    };
  }

  publish(topic, payload, { qos = 0, retain = false } = {}) {
    return new Promise((resolve, reject) => {
      if (!this.client || !this.client.connected) { reject(new Error("not connected to the broker")); return; }
      this.client.publish(topic, payload, { qos, retain }, (err, packet) => {
        if (err) reject(err);
        else if (packet && packet.reasonCode >= 128) reject(new Error(`refused by the broker (reason ${packet.reasonCode})`));
        else resolve();
      });
    });
  }
}

export const conn = new Connection();
