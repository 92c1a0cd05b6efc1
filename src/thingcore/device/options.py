"""Connection settings that are plain data: reconnection back-off, a will, AWS credentials, TLS."""

from __future__ import annotations

import os
import random
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

Transport = Literal["mqtt", "websockets", "http"]
QueueFullPolicy = Literal["error", "drop_oldest", "drop_new"]
TRANSPORTS: tuple[str, ...] = ("mqtt", "websockets", "http")
QUEUE_POLICIES: tuple[str, ...] = ("error", "drop_oldest", "drop_new")


@dataclass(frozen=True, slots=True)
class Backoff:
    """Exponential back-off with jitter between reconnection attempts.

    Attempt ``n`` (0-based) waits a random time in ``[cap/2, cap]`` with ``cap = min(maximum,
    initial * multiplier**n)``: the jitter spreads a fleet that lost its broker at the same moment
    (a restart) so it does not come back in one burst, and the floor keeps a broken link from
    spinning. The attempt count restarts only after a connection stayed up ``reset_after`` seconds,
    so a server that drops the client right after CONNACK (e.g. a duplicate client id) is not
    hammered.
    """

    initial: float = 1.0
    maximum: float = 60.0
    multiplier: float = 2.0
    reset_after: float = 30.0

    def __post_init__(self) -> None:
        if self.initial <= 0 or self.maximum < self.initial or self.multiplier < 1:
            raise ValueError("Backoff needs 0 < initial <= maximum and multiplier >= 1")

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        cap = min(self.maximum, self.initial * self.multiplier ** min(attempt, 64))
        return cap / 2 + (rng or random).uniform(0, cap / 2)


@dataclass(frozen=True, slots=True)
class Will:
    """The last-will message the broker publishes if the device vanishes without DISCONNECT."""

    topic: str
    payload: bytes | str = b""
    qos: int = 0
    retain: bool = False


@dataclass(frozen=True, slots=True)
class AwsCredentials:
    """AWS credentials for SigV4: the presigned ``/mqtt`` WebSocket URL and signed HTTP publishes."""

    access_key_id: str
    secret_access_key: str
    session_token: str | None = None
    region: str = "us-east-1"

    @classmethod
    def from_env(cls, region: str | None = None) -> AwsCredentials:
        """From AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN and AWS_REGION."""
        try:
            key, secret = os.environ["AWS_ACCESS_KEY_ID"], os.environ["AWS_SECRET_ACCESS_KEY"]
        except KeyError as exc:
            raise ValueError(f"{exc.args[0]} is not set") from None
        return cls(key, secret, os.environ.get("AWS_SESSION_TOKEN"),
                   region or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1")


def tls_context(ca: str | Path | None = None, cert: str | Path | None = None, key: str | Path | None = None,
                alpn: list[str] | None = None) -> ssl.SSLContext:
    """A client TLS context: system CAs unless ``ca`` is given, the client certificate when given."""
    if (cert is None) != (key is None):
        raise ValueError("a client certificate needs both cert= and key=")
    ctx = ssl.create_default_context(cafile=str(ca) if ca is not None else None)
    if cert is not None:
        ctx.load_cert_chain(str(cert), str(key))
    if alpn:
        ctx.set_alpn_protocols(alpn)
    return ctx


def default_port(transport: str, tls: bool, client_cert: bool) -> int:
    """thingcore's ports without TLS (1883, 8080); AWS IoT's with TLS (8883; 443; 8443 for HTTP + certificate)."""
    if transport == "mqtt":
        return 8883 if tls else 1883
    if not tls:
        return 8080
    return 8443 if transport == "http" and client_cert else 443


def check_choice(name: str, value: Any, choices: tuple[Any, ...]) -> None:
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, choices))}, not {value!r}")
