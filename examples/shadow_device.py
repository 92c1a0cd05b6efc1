# Run: python examples/shadow_device.py   (with `thingcore serve` on localhost; then run examples/backend_boto3.py)
"""A lamp that keeps its device shadow: it reports its state, follows the desired state that arrives
as shadow deltas, and reports each change back, so the back end sees the shadow come into sync.
"""

from __future__ import annotations

import argparse
import threading

from thingcore.device import Delta, Device, ShadowNotFound


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--endpoint", default="localhost", help="broker host (default: localhost)")
    parser.add_argument("--port", type=int, default=1883, help="MQTT port (default: 1883)")
    parser.add_argument("--thing", default="lamp-1", help="thing name, also the client id (default: lamp-1)")
    parser.add_argument("--deltas", type=int, default=0, help="exit after this many deltas, 0 = never (default: 0)")
    args = parser.parse_args()

    state = {"power": "off", "color": "white", "brightness": 50}
    handled = 0
    done = threading.Event()

    with Device(args.endpoint, args.thing, port=args.port) as device:
        shadow = device.shadow()

        def on_delta(delta: Delta) -> None:
            nonlocal handled
            print(f"delta (version {delta.version}): {delta.state}")
            state.update({k: v for k, v in delta.state.items() if k in state})
            accepted = shadow.report(state)  # blocking here is fine: callbacks run on their own thread
            print(f"reported {state} -> version {accepted['version']}")
            handled += 1
            if args.deltas and handled >= args.deltas:
                done.set()

        shadow.on_delta(on_delta)
        try:  # a desired state set while the lamp was off arrives in the document, not as a delta
            desired = shadow.get()["state"].get("desired", {})
            state.update({k: v for k, v in desired.items() if k in state})
        except ShadowNotFound:
            pass
        print(f"{args.thing}: reporting {state} -> version {shadow.report(state)['version']}")
        print("waiting for deltas (Ctrl-C to stop)")
        try:
            done.wait()
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
