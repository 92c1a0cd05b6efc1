"""The durable outbox of rule actions: a queued delivery is stored until it is over.

The action runners keep pending deliveries in memory (queues, workers, retry timers); the outbox is what
makes them survive a restart or a ``kill -9``:

- **Entry.** When a durable action's runner queues a delivery, an entry is added: the rule, a
  fingerprint of its definition, the original message (``Message.to_record``), the topic as ``topic()``
  saw it, the trace id and the SELECT output (for the error action: its error document), plus the
  action (its index, or ``error``). The actions of one firing share one encoded entry.
- **Pages.** Entries are not one document each: the entries added within one batch window form one
  document of the storage namespace ``outbox`` (a :class:`Page`, at most PAGE_ITEMS entries). When a
  delivery is over (delivered, or given up: the error action then has its own entry) its index goes to
  the page's ``.d`` document; when none is pending the page is deleted. A crash in between delivers
  again: at least once, never lost. One document per entry cost one row inserted and one deleted per
  delivery, and the storage writer's work took the GIL from the event loop: records/s into the
  embedded destinations fell by 35-45 % (docs/actions.md, "Delivery guarantees"); pages make it a few
  rows per batch.
- **Batch.** Writes are collected for up to :data:`WINDOW` seconds and reach storage as one call (one
  transaction in SQLite); an entry whose delivery is over before its page is written never is.
- **Acknowledge.** A QoS 1/2 publisher's acknowledgement waits for the batch holding its entries
  (:meth:`Outbox.commit_future`), which then leaves at the end of the loop turn, not after the window:
  acknowledged means it will be delivered. A QoS 0 message promises nothing to its publisher; a crash
  within the window may lose its deliveries.
- **Replay.** At start each entry of an earlier run goes back to its action's runner when the rule still
  exists with the same fingerprint; the others are ended with one warning naming the rules
  (:func:`replay`).

Page keys are ``<start time in ms, 13 digits>.<sequence, 12 digits>`` (``.d`` appended for the ended
list), so listing the namespace returns pages in arrival order, each followed by its ``.d``, and this
run's pages after every earlier run's.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import logging
import math
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from functools import partial
from typing import Any

import orjson

from thingcore.broker.message import Message
from thingcore.rules.sql.values import UNDEFINED, parse_payload

log = logging.getLogger("thingcore.rules")

NAMESPACE = "outbox"
ERROR_ACTION = "error"  #: how an entry names the error action
LIST_LIMIT = 200  #: documents (pages) read per storage call at replay
PAGE_ITEMS = 1000  #: entries per page at most
PAGE_BYTES = 1 << 20  #: a page with bigger entries ends once it holds about this many bytes
DONE = ".d"  #: the key suffix of a page's list of ended entries
WINDOW = 0.01  #: seconds a batch collects writes and deletes when no acknowledgement waits for it
VERSION = 1
LOG_EVERY = 10.0  #: seconds between log lines about entries that could not be written

_INT_MIN, _INT_MAX = -(2**63), 2**64 - 1  # what orjson writes as a JSON integer


def fingerprint(payload: Mapping[str, Any]) -> str:
    """What a delivery depends on: the statement, its SQL version, the actions and the error action.

    ``description`` and ``ruleDisabled`` are left out: changing them changes no delivery."""
    parts = {k: payload.get(k) for k in ("sql", "awsIotSqlVersion", "actions", "errorAction")}
    return hashlib.sha256(orjson.dumps(parts, option=orjson.OPT_SORT_KEYS)).hexdigest()[:20]


# -- entries -------------------------------------------------------------------------------------------


@dataclass(slots=True)
class Entry:
    """One pending delivery as stored: enough to rebuild the firing after a restart."""

    rule: str
    fingerprint: str
    message: Message
    topic: str  #: as ``topic()`` saw it (Basic Ingest strips ``$aws/rules/<rule>/``)
    trace_id: str
    output: Any  #: the SELECT output, or the error document of an error action


def _refuse(value: Any) -> Any:
    raise TypeError


def encode_entry(rule: str, fp: str, message: Message, topic: str, trace_id: str, output: Any, *,
                 is_document: bool = False) -> bytes:
    """``[4-byte length][JSON header][Message record]``; the output is in the header, losslessly.

    Plain JSON values (the usual output) are written by orjson as they are; an output holding bytes
    (binary ``SELECT *``, ``decode(...)``), Undefined, integers beyond 64 bits or a non-finite float is
    written in a tagged form (:func:`tag`). ``SELECT *`` is not stored twice: a binary output that is the
    payload, or ``is_document`` (the output is the payload's parsed document itself), is read back from
    the payload. Raises TypeError or ValueError for what cannot be stored."""
    head: dict[str, Any] = {"v": VERSION, "r": rule, "f": fp, "t": topic, "i": trace_id}
    if is_document:
        head["d"] = 1
        encoded = orjson.dumps(head)
    elif type(output) is bytes and output == message.payload:
        head["p"] = 1
        encoded = orjson.dumps(head)
    else:
        head["o"] = output
        try:
            encoded = orjson.dumps(head, default=_refuse)
            if b"null" in encoded and _non_finite(output):  # orjson writes NaN and infinities as null
                raise TypeError
        except TypeError:
            del head["o"]
            head["ot"] = tag(output)
            encoded = orjson.dumps(head)
    return len(encoded).to_bytes(4, "big") + encoded + message.to_record()


def decode_entry(value: bytes) -> Entry:
    """The inverse of :func:`encode_entry`; raises ValueError (or KeyError) for a damaged entry."""
    n = int.from_bytes(value[:4], "big")
    head = orjson.loads(value[4:4 + n])
    if head.get("v") != VERSION:
        raise ValueError(f"outbox entry version {head.get('v')!r} is not {VERSION}")
    message, _ = Message.from_record(bytes(value[4 + n:]))
    if "p" in head:
        output: Any = message.payload
    elif "d" in head:
        output = parse_payload(message.payload)
    elif "ot" in head:
        output = untag(head["ot"])
    else:
        output = head["o"]
    return Entry(head["r"], head["f"], message, head["t"], head["i"], output)


def _non_finite(value: Any) -> bool:
    t = type(value)
    if t is float:
        return not math.isfinite(value)
    if t is dict:
        return any(_non_finite(v) for v in value.values())
    if t is list:
        return any(_non_finite(v) for v in value)
    return False


def tag(value: Any) -> Any:
    """A SELECT output as JSON that says what it was: objects are ``{"$o": {...}}``, so any other
    object is a tag: ``$b`` bytes (base64), ``$u`` Undefined, ``$i`` a big integer, ``$f`` a non-finite
    float, ``$d`` a Decimal, ``$s`` a string that is not valid UTF-8 (lone surrogates, hex)."""
    t = type(value)
    if t is dict:
        return {"$o": {_key(k): tag(v) for k, v in value.items()}}
    if t is list or t is tuple:
        return [tag(v) for v in value]
    if t is str:
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return {"$s": value.encode("utf-8", "surrogatepass").hex()}
        return value
    if t is int:
        return value if _INT_MIN <= value <= _INT_MAX else {"$i": str(value)}
    if t is float:
        return value if math.isfinite(value) else {"$f": repr(value)}
    if value is None or t is bool:
        return value
    if t is bytes or t is bytearray or t is memoryview:
        return {"$b": base64.b64encode(value).decode()}
    if value is UNDEFINED:
        return {"$u": 0}
    if t is Decimal:
        return {"$d": str(value)}
    raise TypeError(f"a {t.__name__} cannot be stored in the outbox")


def _key(key: Any) -> str:
    if type(key) is not str:
        raise TypeError(f"an object key {key!r} is not a string")
    return key


_UNTAG: dict[str, Callable[[Any], Any]] = {
    "$b": base64.b64decode,
    "$u": lambda _v: UNDEFINED,
    "$i": int,
    "$f": float,
    "$d": Decimal,
    "$s": lambda v: bytes.fromhex(v).decode("utf-8", "surrogatepass"),
}


def untag(value: Any) -> Any:
    t = type(value)
    if t is list:
        return [untag(v) for v in value]
    if t is dict:
        [(name, inner)] = value.items()
        if name == "$o":
            return {k: untag(v) for k, v in inner.items()}
        return _UNTAG[name](inner)
    return value


# -- pages ----------------------------------------------------------------------------------------------


class Page:
    """One outbox document: the entries added within one batch window (at most PAGE_ITEMS or PAGE_BYTES).

    Before its document is written, an entry whose delivery ends is simply left out of it. Afterwards the
    indexes of the ended ones go to a second document, ``<key>.d``, rewritten with each batch that ends
    more; when none is pending any more both are deleted."""

    __slots__ = ("actions", "done", "done_stored", "items", "key", "local", "nbytes", "pending", "size", "stored")

    def __init__(self, local: int, key: str, *, stored: bool = False) -> None:
        self.local = local  #: this run's number for it: handles are ``local << INDEX_BITS | index``
        self.key = key
        self.items: dict[int, bytes] = {}  #: not yet written: index -> encoded entry
        self.actions: dict[int, str] = {}  #: and its action
        self.size = 0  #: entries added: the next index
        self.nbytes = 0  #: their encoded size
        self.pending = 0  #: deliveries not over yet
        self.done: list[int] = []  #: written entries whose delivery is over
        self.stored = stored  #: the document was handed to storage
        self.done_stored = False  #: ``<key>.d`` was handed to storage


def encode_page(items: Mapping[int, bytes], actions: Mapping[int, str]) -> bytes:
    """``[4-byte length][JSON: [[index, action, entry number], ...]]`` then each distinct entry, length-prefixed.

    The actions of one firing share one encoded entry (the same bytes object)."""
    numbers: dict[int, int] = {}
    entries: list[bytes] = []
    rows = []
    for index, value in items.items():
        action = actions[index]
        n = numbers.get(id(value))
        if n is None:
            n = numbers[id(value)] = len(entries)
            entries.append(value)
        rows.append((index, action, n))
    head = orjson.dumps({"v": VERSION, "items": rows})
    parts = [len(head).to_bytes(4, "big"), head]
    for value in entries:
        parts += (len(value).to_bytes(4, "big"), value)
    return b"".join(parts)


def decode_page(value: bytes) -> tuple[list[tuple[int, str, int]], list[bytes]]:
    """``(rows, entries)``: rows are ``(index, action, entry number)``; entries are decoded by the caller."""
    n = int.from_bytes(value[:4], "big")
    head = orjson.loads(value[4:4 + n])
    if head.get("v") != VERSION:
        raise ValueError(f"outbox page version {head.get('v')!r} is not {VERSION}")
    entries = []
    pos = 4 + n
    while pos < len(value):
        size = int.from_bytes(value[pos:pos + 4], "big")
        if pos + 4 + size > len(value):
            raise ValueError("outbox page is truncated")
        entries.append(bytes(value[pos + 4:pos + 4 + size]))
        pos += 4 + size
    rows = [(int(i), str(a), int(e)) for i, a, e in head["items"]]
    if any(not 0 <= e < len(entries) or not 0 <= i <= _INDEX_MASK for i, _a, e in rows):
        raise ValueError("outbox page refers to a missing entry or has an index out of range")
    return rows, entries


# -- the outbox of one server ----------------------------------------------------------------------------

#: what an action journal holds per pending delivery: ``page.local << INDEX_BITS | index``. An int, not a
#: (page, index) tuple: a tuple per pending delivery is one more object for the garbage collector to scan,
#: and with 20 000 deliveries queued its full collections were the largest cost of the outbox
Handle = int
INDEX_BITS = 12  # > PAGE_ITEMS
_INDEX_MASK = (1 << INDEX_BITS) - 1


class Outbox:
    """Pending deliveries in pages; writes and deletes collected for WINDOW seconds, one storage call each."""

    def __init__(self, storage: Any) -> None:
        self.storage = storage
        self.boot = f"{time.time_ns() // 1_000_000:013d}"  #: this run's key prefix; earlier runs sort before it
        self._seq = 0
        self._last_firing: Any = None  # one encoding per firing, shared by its actions
        self._last_value = b""
        self._pages: dict[int, Page] = {}  # by local number: every page with deliveries not over yet
        self._page: Page | None = None  # the page entries are added to
        self._fresh: list[Page] = []  # pages of the open batch, not written yet
        self._dirty: set[Page] = set()  # written pages with newly ended deliveries
        self._deletes: list[str] = []  # documents to delete with the next batch (unreadable ones, at replay)
        self._batch: asyncio.Future[None] | None = None  # resolves when the open batch is committed
        self._timer: asyncio.TimerHandle | None = None  # flushes the open batch after WINDOW
        self._urgent = False  # an acknowledgement waits for the open batch: it leaves at the end of this turn
        self._loop: asyncio.AbstractEventLoop | None = None
        self.adds = 0  #: entries added by this run (a message's handler compares it before and after)
        self.adopted = 0  #: entries of earlier runs taken over by replay
        self.removed = 0  #: entries whose delivery is over (or was given up)
        self.unstorable = 0  #: deliveries whose entry could not be encoded: delivered without one
        self.failures = 0  #: batches the storage could not commit
        self.replaying = False  #: entries of an earlier run are still being read and queued
        self._logged_at = -LOG_EVERY

    @property
    def pending(self) -> int:
        """Entries of deliveries not over yet (this run's and the replayed ones)."""
        return self.adds + self.adopted - self.removed

    def rule(self, name: str, payload: Mapping[str, Any]) -> RuleJournal:
        return RuleJournal(self, name, fingerprint(payload))

    def add(self, firing: Any, fp: str, action: str) -> Handle | None:
        """Add the entry of one delivery to the open page; its handle, or None if it cannot be stored."""
        if self._last_firing is firing:
            value = self._last_value
        else:
            output = firing.output
            doc = firing.parsed_payload
            try:
                value = encode_entry(firing.rule_name, fp, firing.message, firing.topic, firing.trace_id or "", output,
                                     is_document=doc is not None and doc is output and type(output) is not bytes)
            except (TypeError, ValueError) as exc:
                self.unstorable += 1
                self._warn("rule %s: a delivery cannot be written to the outbox (%s): it is not durable",
                           firing.rule_name, exc)
                return None
            self._last_firing = firing
            self._last_value = value
        page = self._page
        if page is None or page.size >= PAGE_ITEMS or page.nbytes >= PAGE_BYTES:
            page = self._new_page()
        index = page.size
        page.size = index + 1
        page.nbytes += len(value)
        page.items[index] = value
        page.actions[index] = action
        page.pending += 1
        self.adds += 1
        return page.local << INDEX_BITS | index

    def _new_page(self) -> Page:
        page = self._page = self._track(None)
        self._fresh.append(page)
        self._schedule()
        return page

    def _track(self, key: str | None) -> Page:
        """A page of this run (``key`` None: a new one) or of an earlier run being replayed."""
        self._seq += 1
        page = Page(self._seq, key or f"{self.boot}.{self._seq:012d}", stored=key is not None)
        self._pages[self._seq] = page
        return page

    def adopt(self) -> None:
        self.adopted += 1

    def delete(self, handle: Handle) -> None:
        """The delivery is over: its entry is left out of a page not written yet, or marked ended."""
        self.removed += 1
        self._end(handle)

    def _end(self, handle: Handle) -> None:
        page = self._pages[handle >> INDEX_BITS]
        index = handle & _INDEX_MASK
        page.pending -= 1
        if not page.stored:
            del page.items[index]
            del page.actions[index]
            if not page.pending and page is not self._page:  # never written, nothing left: gone
                self._fresh.remove(page)
                del self._pages[page.local]
            return
        page.done.append(index)
        self._dirty.add(page)
        self._schedule()

    def commit_future(self) -> asyncio.Future[None] | None:
        """Resolves when the entries added so far are committed (what a PUBACK waits for).

        The open batch then leaves at the end of this loop turn instead of after the window."""
        batch = self._batch
        if batch is not None and not self._urgent:
            self._urgent = True
            self._loop.call_soon(self._flush)  # type: ignore[union-attr]
        return batch

    def _schedule(self) -> None:
        """Make sure a batch is open: it leaves after WINDOW (or at the end of the turn, when urgent)."""
        if self._batch is None:
            self._open()

    def _open(self) -> None:
        loop = self._loop
        if loop is None:
            loop = self._loop = asyncio.get_running_loop()
        self._batch = loop.create_future()
        self._timer = loop.call_later(WINDOW, self._flush)

    def _flush(self) -> None:
        batch = self._batch
        if batch is None:  # flushed already (urgent, or by flush())
            return
        self._batch = None
        self._urgent = False
        self._timer.cancel()  # type: ignore[union-attr]
        self._timer = None
        self._page = None  # a written page is never appended to
        puts: list[tuple[str, bytes]] = []
        deletes, self._deletes = self._deletes, []
        for page in self._fresh:
            if page.items:
                puts.append((page.key, encode_page(page.items, page.actions)))
                page.items = {}
                page.actions = {}
                page.stored = True
            else:  # every delivery it had is over: never written
                del self._pages[page.local]
        self._fresh = []
        for page in self._dirty:
            if page.pending == 0:
                deletes.append(page.key)
                if page.done_stored:
                    deletes.append(page.key + DONE)
                del self._pages[page.local]
            else:
                puts.append((page.key + DONE, orjson.dumps(page.done)))
                page.done_stored = True
        self._dirty.clear()
        if not puts and not deletes:
            batch.set_result(None)
            return
        try:
            fut = self.storage.write_documents(NAMESPACE, puts, deletes)
        except Exception as exc:  # storage closed: the server is stopping
            self._committed(batch, None, exc)
            return
        fut.add_done_callback(partial(self._committed, batch))

    def _committed(self, batch: asyncio.Future[None], fut: asyncio.Future[None] | None,
                   exc: BaseException | None = None) -> None:
        if fut is not None:
            exc = asyncio.CancelledError() if fut.cancelled() else fut.exception()
        if batch.done():
            return
        if exc is None:
            batch.set_result(None)
            return
        self.failures += 1
        self._warn("outbox: %s", f"a batch of entries could not be stored: {exc}")
        batch.set_exception(exc)
        batch.exception()  # retrieved: a QoS 0 message has nobody waiting, that is no reason for a warning

    async def flush(self) -> None:
        """Send the open batch now and wait until storage has it (before the storage closes)."""
        batch = self._batch
        self._flush()
        if batch is not None:
            await asyncio.wait([batch])

    def _warn(self, text: str, *args: Any) -> None:
        now = time.monotonic()
        if now - self._logged_at >= LOG_EVERY:
            self._logged_at = now
            log.error(text, *args)


class RuleJournal:
    """The outbox side of one compiled rule: its fingerprint, and failed entries waiting for the error document."""

    __slots__ = ("actions", "deferred", "fingerprint", "name", "outbox")

    def __init__(self, outbox: Outbox, name: str, fp: str) -> None:
        self.outbox = outbox
        self.name = name
        self.fingerprint = fp
        self.actions: list[ActionJournal] = []
        self.deferred: dict[Any, list[tuple[ActionJournal, Handle]]] = {}  # firing -> failed entries

    def action(self, index: int | str) -> ActionJournal:
        journal = ActionJournal(self, index)
        self.actions.append(journal)
        return journal

    def release(self, firing: Any) -> None:
        """The firing's error document has its entry: the failed deliveries it lists are over."""
        for journal, handle in self.deferred.pop(firing, ()):
            journal.forget(handle)

    def abandon(self) -> int:
        """The rule was replaced or deleted and its queued deliveries were given up: delete their entries."""
        self.deferred.clear()
        n = 0
        for journal in self.actions:
            for handle in list(journal.handles):
                journal.forget(handle)
                n += 1
        return n


class ActionJournal:
    """The entries of one action of one rule: added when a delivery is queued, ended when it is over."""

    __slots__ = ("action", "handles", "outbox", "rule")

    def __init__(self, rule: RuleJournal, action: int | str) -> None:
        self.rule = rule
        self.outbox = rule.outbox
        self.action = str(action)  #: how entries name it: the action's index, or ``error``
        self.handles: set[Handle] = set()

    def add(self, firing: Any) -> Handle | None:
        handle = self.outbox.add(firing, self.rule.fingerprint, self.action)
        if handle is not None:
            self.handles.add(handle)
        return handle

    def adopt(self, handle: Handle) -> None:
        """A replayed entry of an earlier run: this action delivers it now."""
        self.handles.add(handle)
        self.outbox.adopt()

    def done(self, firing: Any, handle: Handle, failed: bool = False) -> None:
        """The delivery is over. A failure whose firing still waits on other actions keeps its entry until
        the firing's error document has one (:meth:`RuleJournal.release`): a crash in between tries it
        again rather than losing the failure."""
        if failed and firing.pending and firing.on_failed is not None:
            self.rule.deferred.setdefault(firing, []).append((self, handle))
            return
        self.forget(handle)

    def forget(self, handle: Handle) -> None:
        if handle in self.handles:
            self.handles.discard(handle)
            self.outbox.delete(handle)


# -- replay at start ---------------------------------------------------------------------------------------


async def replay(outbox: Outbox, rules: Mapping[str, Any], resume: Callable[[Any, Any, Entry, Handle], None],
                 metrics: Any) -> None:
    """Give every entry of an earlier run back to its action's runner, in arrival order.

    ``rules`` is the engine's live mapping (looked up again after every wait, so a rule replaced meanwhile
    is seen); ``resume(rule, runner, entry, handle)`` rebuilds the firing and submits it. An entry waits
    while its runner's queue is full, so a backlog larger than the queue is fed as it drains instead of
    being dropped. Entries whose rule is gone or changed are ended, with one warning naming the rules.
    ``metrics`` (EngineMetrics) counts both."""
    outbox.replaying = True
    counts: dict[str, Counter[str]] = {"replayed": Counter(), "discarded": Counter(), "kept": Counter()}
    after: str | None = None
    held: tuple[str, bytes] | None = None  # a page waiting for its ``.d`` document (listed right after it)
    try:
        while True:
            docs = await outbox.storage.list_documents(NAMESPACE, start_after=after, limit=LIST_LIMIT)
            docs = [(k, v) for k, v in docs if k < outbox.boot]
            for key, value in docs:
                after = key
                if key.endswith(DONE):
                    if held is not None and key == held[0] + DONE:
                        await _replay_page(outbox, rules, resume, metrics, counts, held[0], held[1], value)
                        held = None
                    continue  # a page this run already replayed: its .d is this run's
                if held is not None:
                    await _replay_page(outbox, rules, resume, metrics, counts, held[0], held[1], None)
                held = (key, value)
            if len(docs) < LIST_LIMIT:
                break
        if held is not None:
            await _replay_page(outbox, rules, resume, metrics, counts, held[0], held[1], None)
    except Exception:
        log.exception("outbox: replay failed; the entries not queued yet stay for the next start")
    finally:
        outbox.replaying = False
    replayed, discarded, kept = counts["replayed"], counts["discarded"], counts["kept"]
    if replayed:
        log.info("outbox: %d deliveries pending at the last stop are queued again", sum(replayed.values()))
    if discarded:
        names = ", ".join(f"{name} ({n})" for name, n in sorted(discarded.items()))
        log.warning("outbox: %d deliveries pending at the last stop were discarded because their rule was deleted "
                    "or changed since they were queued: %s", sum(discarded.values()), names)
    if kept:
        names = ", ".join(f"{name} ({n})" for name, n in sorted(kept.items()))
        log.warning("outbox: %d pending deliveries are kept for a later start: their rule cannot run now: %s",
                    sum(kept.values()), names)


async def _replay_page(outbox: Outbox, rules: Mapping[str, Any], resume: Callable[..., None], metrics: Any,
                       counts: dict[str, Counter[str]], key: str, value: bytes, done_value: bytes | None) -> None:
    try:
        rows, encoded = decode_page(value)
        done = set(orjson.loads(done_value)) if done_value is not None else set()
    except (ValueError, KeyError, TypeError) as exc:
        log.error("outbox page %s is unreadable (%s): deleted", key, exc)
        counts["discarded"]["(unreadable)"] += 1
        metrics.outbox_discarded += 1
        outbox._deletes += [key, key + DONE]
        outbox._schedule()
        return
    page = outbox._track(key)
    page.done = sorted(done)
    page.done_stored = done_value is not None
    page.pending = 1  # held while its entries are queued: a quick delivery must not end the page meanwhile
    entries: dict[int, Entry | None] = {}
    for index, action, number in rows:
        if index in done:
            continue
        if number not in entries:
            try:
                entries[number] = decode_entry(encoded[number])
            except (ValueError, KeyError, TypeError) as exc:
                log.error("outbox page %s: entry %d is unreadable (%s): dropped", key, index, exc)
                entries[number] = None
        entry = entries[number]
        while True:
            verdict = _place(rules.get(entry.rule), entry, action) if entry is not None else "discard"
            if not isinstance(verdict, str):
                rule, runner = verdict
                if len(runner.queue) < runner.queue_size:
                    page.pending += 1
                    handle = page.local << INDEX_BITS | index
                    runner.journal.adopt(handle)
                    resume(rule, runner, entry, handle)
                    counts["replayed"][rule.name] += 1
                    metrics.outbox_replayed += 1
                    break
                await asyncio.sleep(0.05)  # full: wait for the queue to drain
                continue
            if verdict == "keep":
                page.pending += 1  # never ended in this run: the page stays
                counts["kept"][entry.rule] += 1  # type: ignore[union-attr]
            else:
                page.pending += 1
                outbox._end(page.local << INDEX_BITS | index)
                counts["discarded"][entry.rule if entry is not None else "(unreadable)"] += 1
                metrics.outbox_discarded += 1
            break
    page.pending -= 1  # let go: the page ends with its last delivery (or now, when none is pending)
    outbox._dirty.add(page)
    outbox._schedule()


def _place(rule: Any, entry: Entry, action: str) -> tuple[Any, Any] | str:
    """The (rule, runner) that delivers an entry now, or ``"keep"`` / ``"discard"``."""
    journal = getattr(rule, "journal", None)
    if rule is None or journal is None or journal.fingerprint != entry.fingerprint:
        return "discard"
    if rule.error is not None:  # stored, same definition, but cannot run here now (a missing function...)
        return "keep"
    if action == ERROR_ACTION:
        runner = rule.error_runner
    else:
        index = int(action) if action.isdigit() else -1
        runner = rule.runners[index] if 0 <= index < len(rule.runners) else None
    if runner is None or runner.journal is None:
        return "discard"
    if runner.closed:  # the engine is stopping: the entry stays for the next start
        return "keep"
    return rule, runner
