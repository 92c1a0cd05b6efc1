"""AWS IoT lifecycle events: presence and subscription changes published as MQTT messages.

A ``broker.hooks`` observer that publishes, as AWS IoT Core does (developer guide,
life-cycle-events.html):

- ``$aws/events/presence/connected/{clientId}`` and ``.../disconnected/{clientId}``
- ``$aws/events/subscriptions/subscribed/{clientId}`` and ``.../unsubscribed/{clientId}``

with AWS's JSON fields. ``versionNumber`` grows by one per connection of a client id (a connect and
its disconnect share it) and starts again at 0 once the client has been away for an hour.
``sessionIdentifier`` is new for every connection. Client ids containing ``+`` or ``#`` get no
events, as on AWS. Publishing is deferred to the next loop turn so a hook never re-enters the
broker while it is changing a session.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson

from thingcore.broker.message import Message

if TYPE_CHECKING:
    from thingcore.broker.core import Broker

log = logging.getLogger("thingcore.events")

PRESENCE = "$aws/events/presence/"
SUBSCRIPTIONS = "$aws/events/subscriptions/"
VERSION_RESET_AFTER = 3600.0  # AWS: versionNumber resets after about an hour disconnected


@dataclass(slots=True)
class _Client:
    session: int  # a UUID4 as a number: 48 bytes per client where its hex string took 81
    version: int
    disconnected_at: float | None = None

    @property
    def session_id(self) -> str:
        return f"{self.session:032x}"


class LifecycleEvents:
    def __init__(self, broker: Broker, *, reset_after: float = VERSION_RESET_AFTER) -> None:
        self.broker = broker
        self.reset_after = reset_after
        self.published = 0
        self._clients: dict[str, _Client] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._prune_handle: asyncio.TimerHandle | None = None
        self._running = False

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._running = True
        self.broker.hooks.append(self.on_event)
        self._prune_handle = self._loop.call_later(self.reset_after, self._prune)

    def stop(self) -> None:
        self._running = False
        if self.on_event in self.broker.hooks:
            self.broker.hooks.remove(self.on_event)
        if self._prune_handle is not None:
            self._prune_handle.cancel()
            self._prune_handle = None

    # -- the hook ------------------------------------------------------------------------------

    def on_event(self, event: str, data: dict[str, Any]) -> None:
        client_id: str = data.get("client_id") or ""
        if not client_id or "+" in client_id or "#" in client_id:
            return
        now = time.time()
        if event == "connected":
            payload = self._connected(client_id, data, now)
            topic = f"{PRESENCE}connected/{client_id}"
        elif event == "disconnected":
            payload = self._disconnected(client_id, data, now)
            topic = f"{PRESENCE}disconnected/{client_id}"
        elif event in ("subscribed", "unsubscribed"):
            state = self._clients.get(client_id)
            payload = {
                "clientId": client_id, "timestamp": int(now * 1000), "eventType": event,
                "sessionIdentifier": state.session_id if state else "",
                "principalIdentifier": _principal(data), "topics": list(data.get("topics") or ()),
            }
            topic = f"{SUBSCRIPTIONS}{event}/{client_id}"
        else:
            return
        msg = Message(topic, orjson.dumps(payload), 1, False, {}, received_at=now)
        if self._loop is not None:
            self._loop.call_soon(self._publish, msg)

    def _connected(self, client_id: str, data: dict[str, Any], now: float) -> dict[str, Any]:
        previous = self._clients.get(client_id)
        recent = previous is not None and (
            previous.disconnected_at is None or now - previous.disconnected_at < self.reset_after
        )
        state = _Client(uuid.uuid4().int, previous.version + 1 if recent else 0)
        self._clients[client_id] = state
        return {
            "clientId": client_id, "timestamp": int(now * 1000), "eventType": "connected",
            "sessionIdentifier": state.session_id, "principalIdentifier": _principal(data),
            "ipAddress": data.get("address") or "", "versionNumber": state.version,
        }

    def _disconnected(self, client_id: str, data: dict[str, Any], now: float) -> dict[str, Any]:
        state = self._clients.get(client_id)
        if state is None:  # connected before this observer started
            state = self._clients[client_id] = _Client(uuid.uuid4().int, 0)
        state.disconnected_at = now
        reason = data.get("reason") or "CONNECTION_LOST"
        return {
            "clientId": client_id, "timestamp": int(now * 1000), "eventType": "disconnected",
            "sessionIdentifier": state.session_id, "principalIdentifier": _principal(data),
            "clientInitiatedDisconnect": bool(data.get("graceful")), "disconnectReason": reason,
            "versionNumber": state.version,
        }

    def _publish(self, msg: Message) -> None:
        if not self._running:
            return
        try:
            self.broker.publish(msg)
            self.published += 1
        except Exception:
            log.exception("could not publish lifecycle event on %s", msg.topic)

    def _prune(self) -> None:
        """Forget clients away longer than the reset time: their next versionNumber is 0 anyway."""
        now = time.time()
        stale = [cid for cid, st in self._clients.items()
                 if st.disconnected_at is not None and now - st.disconnected_at >= self.reset_after]
        for cid in stale:
            del self._clients[cid]
        if self._running and self._loop is not None:
            self._prune_handle = self._loop.call_later(self.reset_after, self._prune)


def _principal(data: dict[str, Any]) -> str:
    identity = data.get("identity")
    principal = getattr(identity, "principal", None) if identity is not None else None
    return principal or "anonymous"
