"""Flow control between publishers and subscriber queues: a PUBACK means the message was queued.

A session keeps at most ``max_queued_messages`` QoS 1/2 messages beyond its client's receive window. What
happens to a publish that meets a full queue depends on whose queue it is:

- An online subscriber the broker waits for (it is not known stuck, broker/stall.py): the publish is not
  routed to anyone. The publisher's connection stops handling its input at that publish, keeps it and
  everything after it, stops reading, and goes on once the queue has drained to a quarter
  (:class:`PublishHeld`). So an MQTT client that pipelines thousands of publishes in one socket read is
  acknowledged only for what was queued. Before the queue is full, at half of it, a publisher whose
  message was queued is paused after that message (soft back-pressure, ``Broker.congested``), which leaves
  room for those who cannot wait: the broker's own services, wills, retained messages at SUBSCRIBE.
- A subscriber known stuck (it acknowledged nothing for ``backpressure_timeout``, or did not drain while a
  publisher waited that long for it) or the client's own session: nobody waits for it (it must not stall the
  others, nor a client itself). What overflows its queue is dropped for it, counted in ``dropped``.
- An offline persistent session: what overflows is dropped, counted.

Every drop for a full queue is logged at most once per session per minute (:class:`QueueFullLog`), with
the count. When a QoS 1/2 message could be queued for no subscriber it matched (every one of them dropped
it), an MQTT 5 publisher is answered PUBACK/PUBREC 0x97 Quota exceeded and an HTTP publisher 429
(``Broker.unqueued``); MQTT 3.1.1 has no way to say no, so its publisher is acknowledged, as before.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from thingcore.broker.session import Session

log = logging.getLogger("thingcore.broker")


class Dropped:
    """The type of :data:`DROPPED`: what ``Session.deliver`` returns for a message its full queue dropped."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "DROPPED"


DROPPED: Final = Dropped()


class PublishHeld(Exception):
    """Raised by ``Broker.publish(..., hold=True)`` before routing anything: ``sessions`` are online
    subscribers the message is for, with full queues, that the broker waits for. The caller waits for one
    of them to drain (``Session.waiting_publishers``) and publishes the same message again."""

    def __init__(self, sessions: list[Session]) -> None:
        super().__init__("a subscriber's queue is full")
        self.sessions = sessions


class QueueFullLog:
    """One log line per session per ``interval`` about messages dropped because its queue is full, with the
    count since the last line; sessions not heard of for an interval are forgotten."""

    interval = 60.0
    _PRUNE_AT = 4096

    def __init__(self) -> None:
        self._last: dict[str, list[float]] = {}  # client id -> [time of the last line, dropped since]

    def dropped(self, session: Session, online: bool) -> None:
        now = time.monotonic()
        entry = self._last.get(session.client_id)
        if entry is not None and now - entry[0] < self.interval:
            entry[1] += 1
            return
        count = 1 + (int(entry[1]) if entry is not None else 0)
        if entry is None and len(self._last) >= self._PRUNE_AT:
            self._last = {k: v for k, v in self._last.items() if now - v[0] < self.interval}
        self._last[session.client_id] = [now, 0]
        why = "its client is not keeping up" if online else "its client is offline"
        log.warning("session %s: queue is full (max_queued_messages %d) and %s: %d message(s) dropped since "
                    "the last such line (at most one a minute per session)", session.client_id,
                    session.broker.max_queued, why, count)
