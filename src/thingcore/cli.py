"""The `thingcore` command."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

import thingcore
from thingcore.auth.cli import passwd_app
from thingcore.config import ConfigError, load_settings
from thingcore.destinations.data_cli import queues_app, streams_app, tables_app
from thingcore.destinations.outputs_cli import alarms_app, search
from thingcore.registry.cli import things_app
from thingcore.rules.cli import rules_app
from thingcore.shadow.cli import shadow_app
from thingcore.simulate import simulate_app

app = typer.Typer(
    name="thingcore",
    help="A self-hosted IoT Core: MQTT 3.1.1/5 broker with AWS IoT's model.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)
app.add_typer(passwd_app, name="passwd", help="Manage the password file (username:argon2 hash lines).")
app.add_typer(things_app, name="things", help="Manage things in a running server's registry (over HTTP).")
app.add_typer(rules_app, name="rules", help="Manage and test topic rules of a running server (over HTTP).")
app.add_typer(shadow_app, name="shadow", help="Get, update, delete and list device shadows (over HTTP).")
app.add_typer(alarms_app, name="alarms", help="List the alarms cloudwatchAlarm rule actions set (over HTTP).")
app.command("search", help="Query the search index elasticsearch/openSearch actions write (over HTTP).")(search)
app.add_typer(tables_app, name="tables", help="Read the tables dynamoDB rule actions write (over HTTP).")
app.add_typer(streams_app, name="streams", help="Read the streams kinesis/firehose rule actions write (over HTTP).")
app.add_typer(queues_app, name="queues", help="Receive from the queues sqs rule actions write (over HTTP).")
app.add_typer(simulate_app, name="simulate", help="Run N simulated thermostats (telemetry + shadows) against a broker.")
err = Console(stderr=True)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"thingcore {thingcore.__version__}")
        raise typer.Exit()


@app.callback()
def main_callback(
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                          help="Print the version and exit.")] = False,
) -> None:
    """thingcore: devices publish, the broker routes, shadows and rules follow."""


@app.command()
def serve(
    config: Annotated[Path | None, typer.Option("--config", "-c", help="TOML configuration file.",
                                                 envvar="THINGCORE_CONFIG")] = None,
    data_dir: Annotated[Path | None, typer.Option(help="State directory [default: ./thingcore-data; "
                                                   "env THINGCORE_DATA_DIR].")] = None,
    host: Annotated[str | None, typer.Option(help="Bind address [default: 0.0.0.0; env THINGCORE_HOST].")] = None,
    mqtt_port: Annotated[int | None, typer.Option(help="MQTT over TCP port [default: 1883].")] = None,
    mqtts_port: Annotated[int | None, typer.Option(
        help="MQTT over TLS port, used when a certificate is configured [default: 8883].")] = None,
    http_port: Annotated[int | None, typer.Option(help="HTTP port: /healthz, /metrics, APIs [default: 8080].")] = None,
    tls_cert: Annotated[Path | None, typer.Option(help="PEM server certificate; enables MQTTS.")] = None,
    tls_key: Annotated[Path | None, typer.Option(help="PEM key of the server certificate.")] = None,
    tls_ca: Annotated[Path | None, typer.Option(help="PEM CA that signs client certificates.")] = None,
    require_client_cert: Annotated[bool | None, typer.Option(
        "--require-client-cert/--no-require-client-cert", help="Refuse TLS clients without a certificate.")] = None,
    profile: Annotated[str | None, typer.Option(help="standard (default) or aws (AWS IoT Core limits).")] = None,
    no_persistence: Annotated[bool, typer.Option("--no-persistence",
                                                 help="Keep all state in memory only.")] = False,
    log_level: Annotated[str | None, typer.Option(help="DEBUG, INFO (default), WARNING, ERROR.")] = None,
) -> None:
    """Run the broker and the HTTP server until SIGINT or SIGTERM.

    Every option can also be set in the TOML file or as THINGCORE_<NAME> (nested sections with a double
    underscore, e.g. THINGCORE_LIMITS__MAX_QUEUED_MESSAGES=5000).
    """
    tls: dict[str, object] = {}
    for key, value in (("certfile", tls_cert), ("keyfile", tls_key), ("cafile", tls_ca),
                       ("require_client_cert", require_client_cert)):
        if value is not None:
            tls[key] = value
    try:
        settings = load_settings(
            config, data_dir=data_dir, host=host, mqtt_port=mqtt_port, mqtts_port=mqtts_port,
            http_port=http_port, profile=profile, log_level=log_level,
            persistence=False if no_persistence else None, tls=tls or None,
        )
    except ConfigError as exc:
        err.print(f"[red]error:[/red] {escape(str(exc))}", highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None
    level = getattr(logging, settings.log_level.upper(), None)
    if not isinstance(level, int):
        err.print(f"[red]error:[/red] unknown log level {settings.log_level!r}", highlight=False)
        raise typer.Exit(2)
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    from thingcore.server import run

    try:
        run(settings)
    except ConfigError as exc:
        err.print(f"[red]error:[/red] {escape(str(exc))}", highlight=False, soft_wrap=True)
        raise typer.Exit(1) from None
    except KeyboardInterrupt:
        pass


def main() -> None:
    app()


if __name__ == "__main__":
    main()
