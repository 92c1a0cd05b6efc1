"""Load generator and side-by-side benchmark runs of thingcore against mosquitto.

Run ``python -m benchmarks.run --help``; see ``docs/benchmarks.md``.
"""
