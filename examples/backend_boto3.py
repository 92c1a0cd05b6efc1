# Run: python examples/backend_boto3.py color=red power=on   (with `thingcore serve` on localhost; pip install boto3)
"""A back end that sets a thing's desired state with boto3's iot-data client pointed at thingcore's
HTTP port, then reads the shadow until the device has reported the change (or times out).

The credentials are dummies: thingcore accepts unknown keys from loopback clients by default.
"""

from __future__ import annotations

import argparse
import json
import time

import boto3


def parse_value(text: str) -> object:
    try:
        return json.loads(text)  # numbers, true/false, null, objects
    except ValueError:
        return text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("desired", nargs="*", default=["power=on", "color=red"], help="key=value pairs")
    parser.add_argument("--endpoint-url", default="http://localhost:8080", help="thingcore HTTP (default: :8080)")
    parser.add_argument("--thing", default="lamp-1", help="thing name (default: lamp-1)")
    parser.add_argument("--wait", type=float, default=10.0, help="seconds to wait for the device (default: 10)")
    args = parser.parse_args()

    desired = dict(pair.split("=", 1) for pair in args.desired)
    desired = {k: parse_value(v) for k, v in desired.items()}
    iot = boto3.client("iot-data", endpoint_url=args.endpoint_url, region_name="us-east-1",
                       aws_access_key_id="local", aws_secret_access_key="local")

    answer = iot.update_thing_shadow(thingName=args.thing, payload=json.dumps({"state": {"desired": desired}}))
    accepted = json.loads(answer["payload"].read())
    print(f"desired {desired} accepted as version {accepted['version']}")

    deadline = time.monotonic() + args.wait
    while True:
        shadow = json.loads(iot.get_thing_shadow(thingName=args.thing)["payload"].read())
        if "delta" not in shadow["state"]:
            print(f"in sync at version {shadow['version']}: reported {shadow['state'].get('reported')}")
            return
        if time.monotonic() >= deadline:
            raise SystemExit(f"the device has not reported {shadow['state']['delta']} yet; is it running?")
        time.sleep(0.2)


if __name__ == "__main__":
    main()
