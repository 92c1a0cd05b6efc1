"""``thingcore simulate``: run N simulated thermostats against a broker, with live progress.

The fleet itself is :mod:`thingcore.device.simulate`; it is imported when the command runs, so the
rest of the CLI does not load the device SDK."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.live import Live
from rich.table import Table

if TYPE_CHECKING:
    from thingcore.device.simulate import SimConfig, SimStats

simulate_app = typer.Typer(rich_markup_mode=None, context_settings={"help_option_names": ["-h", "--help"]})


def _table(stats: SimStats, config: SimConfig) -> Table:
    table = Table(title=f"thingcore simulate: {config.devices} thermostats, {config.transport}://"
                        f"{config.endpoint}{':' + str(config.port) if config.port else ''}", show_header=False)
    rate = stats.sent / stats.elapsed if stats.elapsed else 0.0
    rows = [
        ("elapsed", f"{stats.elapsed:.1f} s" + (f" / {config.duration:g} s" if config.duration else "")),
        ("connected", f"{stats.connected} / {config.devices}"),
        ("messages sent", f"{stats.sent}  ({rate:.0f}/s; target {config.devices * config.rate:g}/s)"),
        ("deltas handled", str(stats.deltas)),
        ("shadow reports", str(stats.reports)),
        ("reconnects", str(stats.reconnects)),
        ("errors", str(stats.errors) + (f"  last: {stats.last_error[:100]}" if stats.last_error else "")),
    ]
    for name, value in rows:
        table.add_row(name, value)
    return table


def _line(stats: SimStats, config: SimConfig) -> str:
    return (f"t={stats.elapsed:.1f}s connected={stats.connected}/{config.devices} sent={stats.sent} "
            f"deltas={stats.deltas} reports={stats.reports} reconnects={stats.reconnects} errors={stats.errors}")


async def _run(config: SimConfig, console: Console, every: float) -> SimStats:
    from thingcore.device.simulate import Fleet

    fleet = Fleet(config)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, fleet.request_stop)
    if console.is_terminal:
        with Live(_table(fleet.stats, config), console=console, refresh_per_second=4, transient=False) as live:
            return await fleet.run(lambda s: live.update(_table(s, config)), interval=0.25)
    last = [-every]

    def plain(s: SimStats) -> None:  # logs and pipes get a line per interval instead of a redrawn table
        if s.elapsed - last[0] >= every:
            last[0] = s.elapsed
            console.print(_line(s, config), highlight=False, soft_wrap=True)

    stats = await fleet.run(plain, interval=min(0.5, every))
    console.print(_line(stats, config), highlight=False, soft_wrap=True)
    return stats


@simulate_app.callback(invoke_without_command=True)
def simulate(
    devices: Annotated[int, typer.Option("--devices", "-n", help="Number of simulated thermostats.")] = 10,
    rate: Annotated[float, typer.Option(help="Telemetry messages per second per device.")] = 1.0,
    endpoint: Annotated[str, typer.Option(help="Broker host name (thingcore or an AWS IoT endpoint).")] = "localhost",
    port: Annotated[int | None, typer.Option(
        help="Port [default: 1883 mqtt, 8080 websockets/http; with TLS 8883/443].")] = None,
    transport: Annotated[str, typer.Option(help="mqtt, websockets or http.")] = "mqtt",
    protocol: Annotated[int, typer.Option(help="MQTT version: 5 or 4 (3.1.1).")] = 5,
    qos: Annotated[int, typer.Option(help="QoS of the telemetry messages (0 or 1).")] = 1,
    duration: Annotated[float, typer.Option(help="Seconds to run; 0 runs until Ctrl-C.")] = 0.0,
    prefix: Annotated[str, typer.Option(help="Client id / thing name prefix: <prefix>-0000, ...")] = "thermostat",
    topic: Annotated[str, typer.Option(help="Telemetry topic; {thing} is the thing name.")] = "sim/{thing}/telemetry",
    ca: Annotated[Path | None, typer.Option(help="PEM CA to verify the server (enables TLS).")] = None,
    cert: Annotated[Path | None, typer.Option(help="PEM client certificate (one for the whole fleet).")] = None,
    key: Annotated[Path | None, typer.Option(help="PEM key of the client certificate.")] = None,
    username: Annotated[str | None, typer.Option(help="MQTT user name.")] = None,
    password: Annotated[str | None, typer.Option(help="MQTT password.", envvar="THINGCORE_SIM_PASSWORD")] = None,
    connect_concurrency: Annotated[int, typer.Option(help="Connections set up at once while ramping up.")] = 50,
    progress_every: Annotated[float, typer.Option(help="Seconds between progress lines when not on a terminal.")]
    = 1.0,
    seed: Annotated[int | None, typer.Option(help="Random seed (temperatures, noise, timing).")] = None,
) -> None:
    """Start N simulated thermostats: each publishes telemetry (temperature with noise) at --rate, reports
    to its shadow, follows desired.setpoint from shadow deltas and reports it back.

    Progress goes to stderr (a live table on a terminal); a JSON summary goes to stdout at the end.
    Example: thingcore simulate --devices 1000 --rate 1 --duration 60
    """
    from thingcore.device.simulate import SimConfig

    err = Console(stderr=True)
    try:
        config = SimConfig(devices=devices, rate=rate, endpoint=endpoint, port=port, transport=transport,
                           protocol=protocol, qos=qos, duration=duration, prefix=prefix, topic=topic, ca=ca,
                           cert=cert, key=key, username=username, password=password,
                           connect_concurrency=max(1, connect_concurrency), seed=seed)
        if transport not in ("mqtt", "websockets", "http"):
            raise ValueError("--transport must be mqtt, websockets or http")
        if protocol not in (4, 5):
            raise ValueError("--protocol must be 5 or 4")
    except ValueError as exc:
        err.print(f"[red]error:[/red] {exc}", highlight=False)
        raise typer.Exit(2) from None
    try:
        import uvloop

        runner = uvloop.run
    except ImportError:  # pragma: no cover - uvloop is a dependency
        runner = asyncio.run
    try:
        stats = runner(_run(config, err, progress_every))
    except (OSError, ValueError) as exc:
        err.print(f"[red]error:[/red] {exc}", highlight=False)
        raise typer.Exit(1) from None
    sys.stdout.write(json.dumps(stats.as_dict()) + "\n")
    if stats.ever_connected == 0:
        err.print(f"[red]error:[/red] no device could connect to {endpoint}"
                  f"{':' + str(port) if port else ''} ({stats.last_error or 'no error recorded'})", highlight=False)
        raise typer.Exit(1)
