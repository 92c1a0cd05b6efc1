# Run: python examples/sensor.py   (with `thingcore serve` on localhost; watch: mosquitto_sub -t 'sensors/#' -v)
"""A temperature sensor that publishes telemetry once a second, at QoS 1.

If the broker goes away, the device keeps going: readings wait in its offline queue (up to 1000)
and are sent, in order, when the connection is back.
"""

from __future__ import annotations

import argparse
import random
import time

from thingcore.device import Device


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--endpoint", default="localhost", help="broker host (default: localhost)")
    parser.add_argument("--port", type=int, default=1883, help="MQTT port (default: 1883)")
    parser.add_argument("--id", default="sensor-1", help="client id, also the thing name (default: sensor-1)")
    parser.add_argument("--interval", type=float, default=1.0, help="seconds between readings (default: 1)")
    parser.add_argument("--count", type=int, default=0, help="readings to send, 0 = until Ctrl-C (default: 0)")
    args = parser.parse_args()

    topic = f"sensors/{args.id}/telemetry"
    celsius = 21.0
    with Device(args.endpoint, args.id, port=args.port) as device:
        print(f"connected to {args.endpoint}:{args.port} as {args.id}; publishing to {topic}")
        sent = 0
        try:
            while not args.count or sent < args.count:
                celsius += random.gauss(0, 0.2)
                reading = {"celsius": round(celsius, 2), "ts": int(time.time() * 1000)}
                device.publish(topic, reading, qos=1, content_type="application/json")
                sent += 1
                print(f"{topic} {reading}")
                time.sleep(args.interval)
        except KeyboardInterrupt:
            pass
        device.flush(timeout=10)  # wait for the last PUBACKs before disconnecting


if __name__ == "__main__":
    main()
