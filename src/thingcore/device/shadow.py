"""Device shadow clients (classic and named) speaking AWS IoT's shadow protocol.

Over MQTT a request is a publish to ``<prefix>/get|update|delete`` carrying a fresh ``clientToken``;
the answer is the ``/accepted`` or ``/rejected`` message that echoes that token. Those topics are
shared by everyone working on the shadow (a back end's updates are accepted there too), so answers
are matched by token, never by arrival order. The shadow's version is tracked from every accepted
and delta document seen, and a delta older than it is discarded, as AWS advises. Over HTTP the same
calls use the shadow REST API (no deltas: HTTP cannot subscribe).
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson

from thingcore.device.errors import (
    NotConnected,
    OperationTimeout,
    ShadowError,
    ShadowTimeout,
    UnsupportedOperation,
    shadow_rejection,
)
from thingcore.device.http_link import TransientHTTPError
from thingcore.device.message import Message

if TYPE_CHECKING:
    from thingcore.device.aio import AsyncDevice, Callback


class _Unset:
    def __repr__(self) -> str:
        return "UNSET"


UNSET: Any = _Unset()  #: "leave this section out" (``None`` sends JSON null, which clears the section)
MAX_INFLIGHT = 10  #: AWS answers 429 beyond 10 shadow requests in flight on one connection
_RESPONSES = {op: [f"{op}/accepted", f"{op}/rejected"] for op in ("get", "update", "delete")}


@dataclass(frozen=True, slots=True)
class Delta:
    """One ``/update/delta`` message: ``state`` holds the desired values that reported lacks."""

    state: dict[str, Any]
    version: int | None
    timestamp: int | None
    metadata: dict[str, Any]
    client_token: str | None
    document: dict[str, Any]


def shadow_topic(thing: str, name: str | None) -> str:
    return f"$aws/things/{thing}/shadow" + (f"/name/{name}" if name else "")


class AsyncShadow:
    """The shadow of ``thing`` (classic when ``name`` is None); get it from ``device.shadow(...)``."""

    def __init__(self, device: AsyncDevice, thing: str, name: str | None) -> None:
        if not thing:
            raise ValueError("a shadow needs a thing name")
        self.device = device
        self.thing = thing
        self.name = name
        self.topic = shadow_topic(thing, name)
        self.version: int | None = None  #: the newest version seen in an accepted or delta document
        self.stale_deltas = 0  #: deltas discarded because they were older than ``version``
        self._pending: dict[str, asyncio.Future] = {}
        self._subscribed: dict[str, asyncio.Future] = {}
        self._delta_callbacks: list[Callback] = []
        self._slots: asyncio.Semaphore | None = None

    def __repr__(self) -> str:
        return f"<AsyncShadow {self.topic!r} version={self.version}>"

    # -- the calls --------------------------------------------------------------------------------

    async def get(self, *, timeout: float | None = None) -> dict[str, Any]:
        """The whole document (state.desired/reported/delta, metadata, version, timestamp).
        Raises :class:`ShadowNotFound` if the shadow does not exist."""
        if self.device.transport == "http":
            return await self._rest("GET")
        return await self._request("get", {}, timeout)

    async def update(self, desired: Any = UNSET, reported: Any = UNSET, *, version: int | None = None,
                     client_token: str | None = None, timeout: float | None = None) -> dict[str, Any]:
        """Merge ``desired`` and/or ``reported`` into the shadow (a key set to None is removed; a section
        set to None is cleared). ``version`` makes it conditional (409 :class:`ShadowVersionConflict`
        if the shadow moved on). Returns the accepted document."""
        state: dict[str, Any] = {}
        if desired is not UNSET:
            state["desired"] = desired
        if reported is not UNSET:
            state["reported"] = reported
        if not state:
            raise ValueError("update() needs desired=..., reported=... or both")
        body: dict[str, Any] = {"state": state}
        if version is not None:
            body["version"] = version
        if client_token is not None:
            if not isinstance(client_token, str) or not 0 < len(client_token.encode()) <= 64:
                # the service could not echo it, so its rejection would match no request
                raise ValueError("client_token must be a string of 1 to 64 bytes")
            body["clientToken"] = client_token
        if self.device.transport == "http":
            return await self._rest("POST", body)
        return await self._request("update", body, timeout)

    async def report(self, reported: dict[str, Any] | None = None, /, **values: Any) -> dict[str, Any]:
        """``update(reported=...)`` with a dict and/or keyword values: ``report(temperature=21.5)``."""
        merged = {**(reported or {}), **values}
        if not merged:
            raise ValueError("report() needs values")
        return await self.update(reported=merged)

    async def delete(self, *, timeout: float | None = None) -> dict[str, Any]:
        """Delete the shadow; returns ``{"version", "timestamp"}``. :class:`ShadowNotFound` if absent."""
        if self.device.transport == "http":
            doc = await self._rest("DELETE")
        else:
            doc = await self._request("delete", {}, timeout)
        self.version = None
        return doc

    async def on_delta(self, callback: Callback) -> None:
        """Call ``callback(delta: Delta)`` for every delta (desired differs from reported) from now on.
        Subscribes to ``<shadow>/update/delta`` (restored after reconnects). Call :meth:`get` after
        it to catch up with a delta that was published while the device was offline."""
        if self.device.transport == "http":
            raise UnsupportedOperation("deltas need a subscription: use transport='mqtt' or 'websockets' "
                                       "(over HTTP, poll get() and read state.delta)")
        self._delta_callbacks.append(callback)
        # a device that follows deltas gets and reports next: one SUBSCRIBE for all five topics
        await self._ensure(["update/delta", *_RESPONSES["get"], *_RESPONSES["update"]])

    def close(self) -> None:
        for fut in self._pending.values():
            if not fut.done():
                fut.set_exception(NotConnected("the device disconnected"))

    # -- MQTT -------------------------------------------------------------------------------------

    async def _ensure(self, suffixes: list[str]) -> None:
        """Subscribe to the response topics not yet subscribed, in one SUBSCRIBE; concurrent callers
        share the SUBACK. A failed subscription is forgotten so the next call tries again."""
        missing = [s for s in suffixes if s not in self._subscribed]
        if missing:
            device = self.device
            subs = [device._register(f"{self.topic}/{s}", self._on_delta if s == "update/delta" else self._on_response,
                                     1, False, False, 0, True) for s in missing]
            fut = asyncio.ensure_future(device._activate(subs, None))
            for s in missing:
                self._subscribed[s] = fut
        futures = {self._subscribed[s] for s in suffixes}
        try:
            await asyncio.gather(*(asyncio.shield(f) for f in futures))
        except BaseException:
            for s in suffixes:
                if self._subscribed.get(s) in futures and self._subscribed[s].done():
                    del self._subscribed[s]
            raise

    async def _request(self, op: str, body: dict[str, Any], timeout: float | None) -> dict[str, Any]:
        device = self.device
        loop = device._bind_loop()
        try:
            await self._ensure(_RESPONSES[op])
        except OperationTimeout as exc:
            raise ShadowTimeout(f"{op} on {self.topic}: {exc}") from None
        token = body.get("clientToken") or uuid.uuid4().hex
        body["clientToken"] = token
        if self._slots is None:
            self._slots = asyncio.Semaphore(MAX_INFLIGHT)
        wait = device.operation_timeout if timeout is None else timeout
        async with self._slots:
            answer = loop.create_future()
            self._pending[token] = answer
            try:
                delivery = device.publish(f"{self.topic}/{op}", orjson.dumps(body), qos=1)

                def failed(d: Any) -> None:
                    exc = d.exception()
                    if exc is not None and not answer.done():
                        answer.set_exception(exc)

                delivery.add_done_callback(failed)
                async with asyncio.timeout(wait):
                    return await answer
            except TimeoutError:
                raise ShadowTimeout(f"no answer to {op} on {self.topic} (clientToken {token}) within {wait} s") \
                    from None
            finally:
                self._pending.pop(token, None)

    def _track(self, version: Any) -> None:
        if isinstance(version, int) and (self.version is None or version > self.version):
            self.version = version

    def _on_response(self, message: Message) -> None:
        try:
            doc = message.json()
        except ValueError:
            return
        if not isinstance(doc, dict):
            return
        accepted = message.topic.endswith("/accepted")
        if accepted and not message.topic.endswith("/delete/accepted"):
            self._track(doc.get("version"))
        fut = self._pending.get(doc.get("clientToken"))  # type: ignore[arg-type]
        if fut is None or fut.done():
            return
        if accepted:
            fut.set_result(doc)
        else:
            fut.set_exception(shadow_rejection(doc.get("code"), doc.get("message", ""), doc.get("clientToken"), doc))

    def _on_delta(self, message: Message) -> None:
        try:
            doc = message.json()
        except ValueError:
            return
        if not isinstance(doc, dict) or not isinstance(doc.get("state"), dict):
            return
        version = doc.get("version")
        if isinstance(version, int) and self.version is not None and version < self.version:
            self.stale_deltas += 1
            return
        self._track(version)
        delta = Delta(doc["state"], version if isinstance(version, int) else None, doc.get("timestamp"),
                      doc.get("metadata") or {}, doc.get("clientToken"), doc)
        for callback in list(self._delta_callbacks):
            self.device._notify(callback, delta)

    # -- REST -------------------------------------------------------------------------------------

    async def _rest(self, method: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        http = self.device._http
        assert http is not None
        try:
            doc = await http.shadow(method, self.thing, self.name, orjson.dumps(body) if body is not None else b"")
        except TransientHTTPError as exc:
            raise ShadowError(str(exc)) from exc
        if method != "DELETE":
            self._track(doc.get("version"))
        return doc
