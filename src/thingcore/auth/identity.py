"""Who a connection is, and the hook signatures the broker calls with it.

The broker builds one :class:`Identity` per connection (from the listener, the peer address, the
TLS client certificate if any, and the CONNECT packet), calls the :data:`Authenticator` once at
CONNECT, and the :data:`Authorizer` for every CONNECT / PUBLISH / SUBSCRIBE / delivery.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from enum import StrEnum


class Action(StrEnum):
    """What a caller wants to do; the resource is a topic, a filter, or (MANAGE) a control-plane object."""

    CONNECT = "connect"
    PUBLISH = "publish"
    SUBSCRIBE = "subscribe"
    RECEIVE = "receive"
    # Control-plane operations (rules, things, thing types, destinations, the admin API). The resource names
    # the object as "<kind>/<name>" (e.g. "rules/lamp_rule", "things/lamp-1"). Unlike the MQTT actions,
    # MANAGE is denied by default: only administrators, or callers an access rule allows, may manage.
    MANAGE = "manage"


#: The MQTT actions: what "all" means in an access rule (MANAGE must be named on its own).
MQTT_ACTIONS = (Action.CONNECT, Action.PUBLISH, Action.SUBSCRIBE, Action.RECEIVE)


@dataclass(slots=True)
class Identity:
    client_id: str
    # The user name access rules (``username``) and ``%u`` see. At CONNECT the authenticator gets the login
    # name the client claims (the CONNECT user name before any ``?metadata``); once authenticated it is the
    # name the client proved (see :meth:`accept`): the password file's user, the CN of a verified client
    # certificate, or None (anonymous clients, signed WebSockets), never a name nobody checked.
    username: str | None
    # Who authenticated: certificate subject (RFC 4514 string) or username; None for anonymous.
    principal: str | None
    # Listener name: "mqtt", "mqtts", "ws", "wss", "http".
    listener: str
    # Peer IP address.
    address: str
    port: int = 0
    # SHA-256 hex of the client certificate (DER), lower case.
    cert_fingerprint: str | None = None
    anonymous: bool = True
    # Proved administrator rights (the admin token, or an unauthenticated loopback caller where
    # [admin] allow_unauthenticated admits it): may MANAGE unless an access rule denies it.
    administrator: bool = False
    # The authorizer's verdicts for this identity by (action, topic), kept by it for the connection's
    # life (bounded there): a publish costs a dict lookup, not a rule walk. Reset when the identity changes.
    verdicts: dict[tuple[Action, str | None], int] | None = field(default=None, compare=False, repr=False)

    def accept(self, result: AuthResult) -> None:
        """Become who the authenticator says this caller is: its principal and the user name rules see."""
        self.verdicts = None
        self.username = result.username
        if result.principal is not None:
            self.principal = result.principal
            self.anonymous = False


def service_identity(principal: str, listener: str) -> Identity:
    """An in-process service acting on its own behalf (a rule's actions): an authenticated principal that
    access rules can name, never an administrator."""
    return Identity(client_id="", username=None, principal=principal, listener=listener, address="",
                    anonymous=False)


@dataclass(slots=True)
class AuthResult:
    # 0 accepted, else an MQTT 5 CONNACK reason code (0x86 bad user/password, 0x87 not authorized,
    # 0x8A banned ...).
    reason_code: int = 0
    principal: str | None = None
    reason_string: str | None = None
    # The user name access rules and %u see from now on (None: none, the CONNECT user name is not believed).
    username: str | None = None

    @property
    def ok(self) -> bool:
        return self.reason_code == 0


# (identity with username, password) -> result. Called once per CONNECT.
Authenticator = Callable[[Identity, bytes | None], Awaitable[AuthResult]]
# (identity, action, topic or filter) -> 0 allow, or the reason code to refuse with.
Authorizer = Callable[[Identity, Action, str | None], int]

__all__ = ["MQTT_ACTIONS", "Action", "AuthResult", "Authenticator", "Authorizer", "Identity", "service_identity"]
