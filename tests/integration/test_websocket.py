"""MQTT over WebSockets at /mqtt: the same broker, sessions and rules as TCP, and bad input that costs
only its own connection.

paho-mqtt's websockets transport exchanges messages with TCP clients; a raw-socket WebSocket client
sends what real clients rarely do (packets split across frames, several packets in one frame,
fragmented messages) and what they must not (unmasked or reserved-bit frames, text frames, unknown
subprotocols, oversized messages).
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from tests.integration.mqtt_helpers import V5, V311, PahoClient, RawClient, both_protocols, uid, wait_for
from tests.integration.wsclients import CONT, TEXT, RawWS, WSPahoClient
from tests.server import ThingcoreProcess

from thingcore.mqtt import encode
from thingcore.mqtt.packets import (
    Connack,
    Connect,
    Disconnect,
    Pingreq,
    Pingresp,
    Publish,
    Suback,
    Subscribe,
    Subscription,
)

pytestmark = pytest.mark.integration

MAX_PACKET = 16 * 1024


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ThingcoreProcess]:
    limits = {"max_packet_size": MAX_PACKET, "max_output_buffer": 65536, "slow_consumer_timeout": 1}
    with ThingcoreProcess(tmp_path_factory.mktemp("ws"), {"limits": limits}) as tc:
        yield tc


def check_serving(server: ThingcoreProcess) -> None:
    """After abuse: a WebSocket client and a TCP client still exchange a message both ways."""
    topic = f"ws/alive/{uid()}"
    with WSPahoClient(server.http_port) as ws, PahoClient(server.mqtt_port) as tcp:
        ws.connect()
        tcp.connect()
        ws.subscribe(topic + "/ws", 1)
        tcp.subscribe(topic + "/tcp", 1)
        tcp.publish(topic + "/ws", b"to-ws", 1)
        ws.publish(topic + "/tcp", b"to-tcp", 1)
        assert ws.expect().payload == b"to-ws"
        assert tcp.expect().payload == b"to-tcp"


@both_protocols
def test_paho_websocket_and_tcp_clients_exchange_messages(server: ThingcoreProcess, protocol: int) -> None:
    topic = f"ws/x/{uid()}"
    with WSPahoClient(server.http_port, protocol=protocol) as ws, PahoClient(server.mqtt_port, protocol=V5) as tcp:
        ws.connect()
        tcp.connect()
        ws.subscribe(topic + "/down", 1)
        tcp.subscribe(topic + "/up", 1)
        for qos in (0, 1):
            tcp.publish(f"{topic}/down", f"tcp->ws qos{qos}".encode(), qos)
            got = ws.expect()
            assert (got.topic, got.payload, got.qos) == (f"{topic}/down", f"tcp->ws qos{qos}".encode(), qos)
            ws.publish(f"{topic}/up", f"ws->tcp qos{qos}".encode(), qos)
            got = tcp.expect()
            assert (got.topic, got.payload, got.qos) == (f"{topic}/up", f"ws->tcp qos{qos}".encode(), qos)


def test_retained_message_from_websocket_reaches_later_tcp_subscriber(server: ThingcoreProcess) -> None:
    topic = f"ws/retained/{uid()}"
    with WSPahoClient(server.http_port) as ws:
        ws.connect()
        ws.publish(topic, b"kept", 1, retain=True)
    with PahoClient(server.mqtt_port) as tcp:
        tcp.connect()
        tcp.subscribe(topic, 1)
        got = tcp.expect()
        assert (got.payload, got.retain) == (b"kept", True)


def test_persistent_session_moves_between_websocket_and_tcp(server: ThingcoreProcess) -> None:
    """One client id, one session: subscribe over WebSocket, collect the queued message over TCP."""
    cid, topic = uid("roam"), f"ws/roam/{uid()}"
    ws = WSPahoClient(server.http_port, cid, protocol=V311, clean=False)
    ws.connect()
    ws.subscribe(topic, 1)
    ws.disconnect()
    with PahoClient(server.mqtt_port) as pub:
        pub.connect()
        pub.publish(topic, b"while away", 1)
    with PahoClient(server.mqtt_port, cid, protocol=V311, clean=False) as tcp:
        assert tcp.connect().session_present
        assert tcp.expect().payload == b"while away"


def test_client_id_takeover_from_tcp_to_websocket(server: ThingcoreProcess) -> None:
    cid = uid("take")
    tcp = PahoClient(server.mqtt_port, cid)
    tcp.connect()
    try:
        with WSPahoClient(server.http_port, cid) as ws:
            ws.connect()
            assert tcp.wait_disconnected() == 0x8E  # session taken over
    finally:
        tcp.close()


@pytest.mark.parametrize("offered", [["mqtt"], ["mqttv3.1"], ["mqttv3.1.1"], ["chat", "mqtt"]])
def test_mqtt_subprotocol_is_echoed(server: ThingcoreProcess, offered: list[str]) -> None:
    with RawWS(server.http_port, subprotocols=offered, level=4) as ws:
        assert ws.status == 101
        assert ws.headers["sec-websocket-protocol"] == next(p for p in offered if p.startswith("mqtt"))
        ws.send_packet(Connect(uid("sp"), 4, "MQTT", True, 30, None, None, None, {}))
        assert ws.expect(Connack).reason_code == 0


def test_client_offering_no_subprotocol_is_accepted(server: ThingcoreProcess) -> None:
    with RawWS(server.http_port) as ws:
        assert ws.status == 101
        assert "sec-websocket-protocol" not in ws.headers
        ws.send_packet(Connect(uid("nosp"), 5, "MQTT", True, 30, None, None, None, {}))
        assert ws.expect(Connack).reason_code == 0


def test_non_mqtt_subprotocol_is_refused_with_a_clear_http_error(server: ThingcoreProcess) -> None:
    with RawWS(server.http_port, subprotocols=["chat", "graphql-ws"]) as ws:
        assert ws.status == 400
        assert ws.headers["x-amzn-errortype"] == "InvalidRequestException"
        assert b"unsupported WebSocket subprotocol chat, graphql-ws" in ws.body
    check_serving(server)


def test_plain_get_on_mqtt_path_explains_itself(server: ThingcoreProcess) -> None:
    r = httpx.get(f"http://127.0.0.1:{server.http_port}/mqtt")
    assert r.status_code == 400
    assert r.headers["x-amzn-errortype"] == "InvalidRequestException"
    assert "WebSocket" in r.json()["message"]


def _connect_bytes(cid: str) -> bytes:
    return encode(Connect(cid, 5, "MQTT", True, 30, None, None, None, {}), 5)


def test_packet_split_across_frames_and_several_packets_in_one_frame(server: ThingcoreProcess) -> None:
    topic = f"ws/frames/{uid()}"
    with RawWS(server.http_port, subprotocols=["mqtt"]) as ws:
        data = _connect_bytes(uid("split"))
        for i in range(len(data)):  # the CONNECT one byte per WebSocket message
            ws.send(data[i:i + 1])
        assert ws.expect(Connack).reason_code == 0
        batch = (encode(Subscribe(1, [Subscription(topic, 0)], {}), 5)
                 + b"".join(encode(Publish(topic, f"m{i}".encode(), 0, False, False, None, {}), 5) for i in range(5))
                 + encode(Pingreq(), 5))
        ws.send(batch)  # SUBSCRIBE, five PUBLISHes and a PINGREQ in one message
        assert ws.expect(Suback).reason_codes == [0]
        got = [ws.recv_packet() for _ in range(6)]
        assert [p.payload for p in got if isinstance(p, Publish)] == [f"m{i}".encode() for i in range(5)]
        assert any(isinstance(p, Pingresp) for p in got)


def test_fragmented_websocket_message_is_reassembled(server: ThingcoreProcess) -> None:
    topic = f"ws/frag/{uid()}"
    with RawWS(server.http_port, subprotocols=["mqtt"]) as ws:
        ws.send_packet(Connect(uid("frag"), 5, "MQTT", True, 30, None, None, None, {}))
        ws.expect(Connack)
        ws.send_packet(Subscribe(1, [Subscription(topic, 0)], {}))
        ws.expect(Suback)
        data = encode(Publish(topic, b"x" * 1000, 0, False, False, None, {}), 5)
        ws.send(data[:10], fin=False)  # binary frame, then continuation frames
        ws.send(data[10:500], CONT, fin=False)
        ws.send(data[500:], CONT)
        assert ws.expect(Publish).payload == b"x" * 1000


@pytest.mark.parametrize("broken", ["unmasked frame", "reserved bits", "unknown opcode", "oversized length"])
def test_malformed_websocket_frame_closes_only_that_connection(server: ThingcoreProcess, broken: str) -> None:
    with RawWS(server.http_port, subprotocols=["mqtt"]) as ws:
        ws.send_packet(Connect(uid("bad"), 5, "MQTT", True, 30, None, None, None, {}))
        ws.expect(Connack)
        if broken == "unmasked frame":
            ws.send(encode(Pingreq(), 5), mask=False)
        elif broken == "reserved bits":
            ws.send(encode(Pingreq(), 5), rsv=0b011)
        elif broken == "unknown opcode":
            ws.send(b"\x00", 0x3)
        else:  # declares a 2**62-byte frame
            ws.sock.sendall(b"\x82\xff" + (1 << 62).to_bytes(8, "big") + b"\x00\x00\x00\x00")
        assert ws.wait_closed() == (1009 if broken == "oversized length" else 1002)  # too big / protocol error
    check_serving(server)


def test_text_frame_is_refused_with_close_code_1003(server: ThingcoreProcess) -> None:
    with RawWS(server.http_port, subprotocols=["mqtt"]) as ws:
        ws.send_packet(Connect(uid("text"), 5, "MQTT", True, 30, None, None, None, {}))
        ws.expect(Connack)
        ws.send(b"hello", TEXT)
        assert ws.wait_closed() == 1003
    check_serving(server)


def test_malformed_mqtt_inside_a_valid_frame_gets_a_v5_disconnect(server: ThingcoreProcess) -> None:
    with RawWS(server.http_port, subprotocols=["mqtt"]) as ws:
        ws.send_packet(Connect(uid("mal"), 5, "MQTT", True, 30, None, None, None, {}))
        ws.expect(Connack)
        ws.send(b"\xc1\x00")  # PINGREQ with reserved flags set
        assert ws.expect(Disconnect).reason_code == 0x81
        assert ws.wait_closed() == 1000
    check_serving(server)


def test_message_larger_than_the_limit_is_refused(server: ThingcoreProcess) -> None:
    with RawWS(server.http_port, subprotocols=["mqtt"]) as ws:
        ws.send_packet(Connect(uid("big"), 5, "MQTT", True, 30, None, None, None, {}))
        ws.expect(Connack)
        ws.send(b"\x30" + b"\xff" * 3 * MAX_PACKET)  # bigger than a WebSocket message may be here
        assert ws.wait_closed() == 1009
    check_serving(server)


def test_client_that_vanishes_mid_packet_is_cleaned_up(server: ThingcoreProcess) -> None:
    cid = uid("vanish")
    ws = RawWS(server.http_port, subprotocols=["mqtt"])
    ws.send_packet(Connect(cid, 5, "MQTT", True, 30, None, None, None, {}))
    ws.expect(Connack)
    ws.send(_connect_bytes(cid)[:5])
    ws.sock.shutdown(socket.SHUT_RDWR)
    ws.close()
    with WSPahoClient(server.http_port, cid) as again:  # same client id: no takeover of a ghost needed
        assert again.connect().session_present is False
    check_serving(server)


def test_websocket_subscriber_that_stops_reading_is_disconnected(server: ThingcoreProcess) -> None:
    """As on TCP: QoS 0 to a subscriber whose output stays full is dropped, then the client is disconnected."""
    before = server.metrics()["thingcore_slow_consumers_total"]
    topic = f"ws/slow/{uid()}"
    slow = RawWS(server.http_port, subprotocols=["mqtt"], rcvbuf=4096)
    try:
        slow.send_packet(Connect(uid("slow"), 5, "MQTT", True, 0, None, None, None, {}))
        slow.expect(Connack)
        slow.send_packet(Subscribe(1, [Subscription(topic, 0)], {}))
        slow.expect(Suback)  # from here on it reads nothing
        with RawClient(server.mqtt_port) as pub:
            pub.connect(uid("flood"))
            deadline = time.monotonic() + 30
            while server.metrics()["thingcore_slow_consumers_total"] == before:
                assert time.monotonic() < deadline, "the WebSocket subscriber that reads nothing is still connected"
                for _ in range(100):
                    pub.publish(topic, b"p" * 8000)
        check_serving(server)
    finally:
        slow.close()


def test_server_shutdown_tells_websocket_clients(thingcore_factory: Any) -> None:
    tc = thingcore_factory()
    with RawWS(tc.http_port, subprotocols=["mqtt"]) as ws:
        ws.send_packet(Connect(uid("bye"), 5, "MQTT", True, 30, None, None, None, {}))
        ws.expect(Connack)
        tc.stop()
        assert ws.expect(Disconnect).reason_code == 0x8B  # server shutting down
        assert ws.wait_closed() == 1000  # then a WebSocket close frame, not just a dropped socket


def test_every_closed_websocket_released_its_connection(thingcore_factory: Any) -> None:
    """Whatever way a WebSocket ends (DISCONNECT, a vanished client, a bad frame, a text frame, a malformed
    packet, a takeover), the broker holds no connection for it. Its own server, so no other test's
    connections count and the order tests run in does not matter."""
    tc = thingcore_factory()
    cid = uid("ended")
    polite = WSPahoClient(tc.http_port, cid)
    polite.connect()
    with WSPahoClient(tc.http_port, cid) as taker:  # takes the client id over, then disconnects
        taker.connect()
        assert polite.wait_disconnected() == 0x8E
        taker.disconnect()
    polite.close()
    for ending in ("vanish", "bad frame", "text frame", "malformed packet"):
        ws = RawWS(tc.http_port, subprotocols=["mqtt"])
        ws.send_packet(Connect(uid("end"), 5, "MQTT", True, 30, None, None, None, {}))
        ws.expect(Connack)
        if ending == "vanish":
            ws.send(_connect_bytes(cid)[:5])
            ws.sock.shutdown(socket.SHUT_RDWR)
        elif ending == "bad frame":
            ws.send(encode(Pingreq(), 5), mask=False)
            assert ws.wait_closed() == 1002
        elif ending == "text frame":
            ws.send(b"hello", TEXT)
            assert ws.wait_closed() == 1003
        else:
            ws.send(b"\xc1\x00")
            assert ws.expect(Disconnect).reason_code == 0x81
        ws.close()
    with RawWS(tc.http_port, subprotocols=["mqtt"]):  # upgraded, never sends CONNECT, then goes away
        pass
    assert tc.metrics()["thingcore_connections_accepted_total"] >= 7  # they all reached the broker

    def idle() -> bool:
        m = tc.metrics()
        return m["thingcore_connections"] == 0 and m["thingcore_clients_connected"] == 0

    wait_for(idle, what="all connections released")
