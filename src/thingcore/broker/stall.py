"""Stuck subscribers: one that holds QoS 1/2 messages without acknowledging them must not slow anyone else.

A session has a *backlog* while its client's receive window is full or messages wait in its queue. Only
then does a :class:`StallWatch` exist for it, checking on a timer whether the client acknowledged anything
(PUBACK, PUBREC, PUBCOMP) since the last check:

- Publishers are paused at half its queue only for a subscriber that shows progress (it acknowledged
  something since its backlog began). A publish its full queue cannot take waits for it too while it is
  new (broker/flow.py): its client may not have had a loop turn yet to acknowledge the first messages
  of a burst. One that acknowledges nothing within ``backpressure_first_ack`` of its backlog beginning is stuck,
  so a client that subscribes and never reads costs a publisher at most that, once per connection, and
  only if it fills its queue within that time; its first acknowledgement makes it trusted again.
- A subscriber that acknowledged nothing for ``backpressure_timeout``, or whose queue did not drain to a
  quarter while a publisher waited ``backpressure_timeout`` for it, is *stuck*: no publisher is paused
  for it any more. Its queue fills and then drops (counted in ``dropped``) while everyone else keeps
  their rate. It is trusted again once its queue has drained to a quarter.
- A subscriber that acknowledged nothing for ``slow_consumer_timeout`` is disconnected (MQTT 5
  DISCONNECT 0x97, lifecycle reason ``THROTTLED``, counted in ``slow_consumers``); a persistent session
  keeps what it was owed, bounded by ``max_queued_messages``.

Without a backlog this costs nothing; with one, a counter per acknowledgement and a timer per check.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from thingcore.broker.connection import Connection
    from thingcore.broker.session import Session

log = logging.getLogger("thingcore.broker")


class StallWatch:
    """The watch over one session's backlog on one connection; gone once the backlog or the connection is."""

    __slots__ = ("acks", "conn", "handle", "seen", "session", "since", "stuck")

    def __init__(self, session: Session, conn: Connection) -> None:
        self.session = session
        self.conn = conn
        self.acks = 0  # acknowledgements so far; ``seen`` is the count at the last check
        self.seen = 0
        self.stuck = False
        loop = asyncio.get_running_loop()
        self.since = loop.time()  # the last time the client was seen making progress
        broker = session.broker
        self.handle: asyncio.TimerHandle | None = loop.call_later(
            min(broker.first_ack_grace, broker.slow_consumer_timeout), self.check)

    def acked(self) -> None:
        """A PUBACK, PUBREC or PUBCOMP: progress; a stuck subscriber that has drained, or that was stuck for
        not acknowledging its first message in time, is trusted again."""
        self.acks += 1
        if self.stuck and (self.acks == 1 or self.session.queued_count <= self.session.broker.backpressure_low):
            self.stuck = False
            if self.session.would_drop():  # full: the next publish for it waits again (broker/flow.py)
                self.session.broker.full_sessions.add(self.session)

    def mark_stuck(self, why: str) -> None:
        """No publisher waits for this subscriber from now on (those waiting are released)."""
        if self.stuck:
            return
        self.stuck = True
        session = self.session
        log.info("subscriber %s is stuck (%s, %d in flight, %d queued): publishers no longer wait for it",
                 session.client_id, why, len(session.inflight), len(session.queue))
        session.release_publishers()

    def stop(self) -> None:
        if self.handle is not None:
            self.handle.cancel()
            self.handle = None
        if self.session.stall_watch is self:
            self.session.stall_watch = None

    def check(self) -> None:
        self.handle = None
        session = self.session
        conn = session.connection
        if conn is None or session.discarded or not session.has_backlog(conn):
            self.stop()
            return
        loop = asyncio.get_running_loop()
        now = loop.time()
        if conn is not self.conn:  # the client reconnected: a fresh start on the new connection
            self.conn, self.stuck, self.since = conn, False, now
        if self.acks != self.seen:
            self.seen = self.acks
            self.since = now
        stalled = now - self.since
        broker = session.broker
        if stalled >= broker.slow_consumer_timeout:
            self.stop()
            conn.drop_slow_consumer(f"no acknowledgement for {stalled:.1f} s with {len(session.inflight)} "
                                    f"messages in flight and {len(session.queue)} queued")
            return
        grace = broker.first_ack_grace
        if stalled >= broker.backpressure_timeout or (not self.acks and stalled >= grace):
            self.mark_stuck(f"no acknowledgement for {stalled:.2f} s")
        delay = broker.slow_consumer_timeout - stalled
        if not self.stuck:
            delay = min(delay, (grace if not self.acks else broker.backpressure_timeout) - stalled)
        self.handle = loop.call_later(delay, self.check)
