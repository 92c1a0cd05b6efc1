"""Topic rule destinations (AWS ``CreateTopicRuleDestination`` and friends): the URLs HTTP actions may reach.

As on AWS, an ``http`` action delivers only to a URL that begins with the ``confirmationUrl`` of an ENABLED
destination, and a destination becomes ENABLED only once the endpoint proved it wants the traffic:

1. ``CreateTopicRuleDestination`` stores it ``IN_PROGRESS`` and POSTs a confirmation message to
   ``confirmationUrl?confirmationToken=<token>`` (headers ``x-amz-rules-engine-message-type:
   DestinationConfirmation`` and ``x-amz-rules-engine-destination-arn``; JSON body ``{arn, confirmationToken,
   enableUrl, messageType}``), through the same address policy as rule actions.
2. The endpoint (or its owner) calls ``ConfirmTopicRuleDestination`` with the token, i.e. GETs ``enableUrl``:
   the destination is ENABLED. The token is the proof, so that call needs no other credentials; it is
   single-use and expires after :data:`CONFIRMATION_TTL` (the destination then shows ERROR).
3. ``UpdateTopicRuleDestination`` moves ENABLED <-> DISABLED, or to IN_PROGRESS to send a new challenge.

A URL "begins with" a destination when scheme, host and port are the same and its path (with query)
starts with the destination's; URLs with user info, or dot segments that would climb out of the path, match
nothing. Destinations are stored as documents (namespace ``ruledestination``), tokens only as hashes.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import secrets
import time
import uuid
from dataclasses import asdict, dataclass
from typing import Any
from urllib.parse import unquote

import httpx
import orjson

from thingcore.rules.address_policy import AddressPolicy, AddressRefused
from thingcore.rules.model import RuleError, invalid
from thingcore.storage import Storage

log = logging.getLogger("thingcore.rules.destinations")

NAMESPACE = "ruledestination"
MAX_URL = 2000
MAX_DESTINATIONS = 1000  #: AWS's default quota of HTTP topic rule destinations per account
CONFIRMATION_TTL = 3 * 24 * 3600.0  #: seconds a confirmation token stays valid
STATUSES = ("ENABLED", "IN_PROGRESS", "DISABLED", "ERROR", "DELETING")
_DEFAULT_PORTS = {"http": 80, "https": 443}


class DestinationUrlError(ValueError):
    """A URL that can be neither a destination nor matched against one."""


@dataclass(frozen=True, slots=True)
class UrlKey:
    """What destination matching compares: the origin, and the path with its query."""

    scheme: str
    host: str
    port: int
    path: str

    def starts_with(self, prefix: UrlKey) -> bool:
        return (self.scheme, self.host, self.port) == (prefix.scheme, prefix.host, prefix.port) \
            and self.path.startswith(prefix.path)


def url_key(url: str | httpx.URL) -> UrlKey:
    """Parse as httpx (which makes the request) parses; refuse what could make the prefix check lie."""
    try:
        parsed = url if isinstance(url, httpx.URL) else httpx.URL(url)
    except (httpx.InvalidURL, TypeError, ValueError) as exc:
        raise DestinationUrlError(f"{url!s} is not a valid URL: {exc}") from None
    if parsed.scheme not in _DEFAULT_PORTS or not parsed.raw_host:
        raise DestinationUrlError(f"{url!s} is not an http:// or https:// URL with a host")
    if parsed.userinfo:
        raise DestinationUrlError(f"{url!s}: user names and passwords in URLs are not accepted")
    raw = parsed.raw_path.decode("ascii")
    path = raw.split("?", 1)[0]
    for segment in path.split("/"):
        decoded = unquote(segment)
        if decoded in (".", "..") or "/" in decoded or "\\" in decoded:
            raise DestinationUrlError(f"{url!s}: encoded slashes and dot segments are not accepted in the path")
    return UrlKey(parsed.scheme, parsed.raw_host.decode("ascii").lower(),
                  parsed.port or _DEFAULT_PORTS[parsed.scheme], raw)


@dataclass(slots=True)
class Destination:
    """One HTTP topic rule destination as stored (``token_hash``/``token_at``: the pending challenge)."""

    id: str
    arn: str
    confirmation_url: str
    status: str
    created_at: float
    updated_at: float
    status_reason: str = ""
    token_hash: str | None = None
    token_at: float = 0.0

    def view(self) -> dict[str, Any]:
        """``TopicRuleDestination`` as AWS returns it."""
        out: dict[str, Any] = {"arn": self.arn, "status": self.status, "createdAt": self.created_at,
                               "lastUpdatedAt": self.updated_at,
                               "httpUrlProperties": {"confirmationUrl": self.confirmation_url}}
        if self.status_reason:
            out["statusReason"] = self.status_reason
        return out

    def summary(self) -> dict[str, Any]:
        """``TopicRuleDestinationSummary``."""
        out = self.view()
        out["httpUrlSummary"] = out.pop("httpUrlProperties")
        return out


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def denied(arn: str) -> RuleError:
    # as for rules: the model lists no ResourceNotFoundException for these operations
    return RuleError("UnauthorizedException", f"Access to topic rule destination '{arn}' was denied", 401)


class DestinationStore:
    """Destinations as storage documents, keyed by their id (the uuid at the end of the ARN)."""

    def __init__(self, storage: Storage) -> None:
        self.storage = storage

    async def load_all(self) -> list[Destination]:
        out = []
        for key, value in await self.storage.list_documents(NAMESPACE):
            try:
                out.append(Destination(**orjson.loads(value)))
            except (ValueError, TypeError) as exc:
                log.error("stored topic rule destination %r is unreadable (%s); it is kept but not loaded", key, exc)
        return out

    def save(self, dest: Destination) -> asyncio.Future[None]:
        return self.storage.put_document(NAMESPACE, dest.id, orjson.dumps(asdict(dest)))

    def delete(self, dest_id: str) -> asyncio.Future[None]:
        return self.storage.delete_document(NAMESPACE, dest_id)


class TopicRuleDestinations:
    """The destinations of this server: management (the AWS API), confirmation, and matching for actions."""

    def __init__(self, storage: Storage, region: str, account_id: str, policy: AddressPolicy,
                 http_client: Any, timeout: float) -> None:
        self.store = DestinationStore(storage)
        self.arn_prefix = f"arn:aws:iot:{region}:{account_id}:ruledestination/http/"
        self.policy = policy
        self.http_client = http_client  #: () -> the guarded httpx.AsyncClient
        self.timeout = timeout
        self.by_id: dict[str, Destination] = {}
        self._keys: dict[str, UrlKey] = {}  # destination id -> its parsed confirmationUrl
        self._tokens: dict[str, str] = {}  # token hash -> destination id
        self._lock = asyncio.Lock()
        #: the confirmation request in flight per destination: at most one (a new challenge cancels the old)
        self._sends: dict[str, asyncio.Task] = {}

    async def load(self) -> None:
        for dest in await self.store.load_all():
            try:
                self._keys[dest.id] = url_key(dest.confirmation_url)
            except DestinationUrlError as exc:
                log.error("stored topic rule destination %s cannot be used: %s", dest.arn, exc)
                continue
            self.by_id[dest.id] = dest
            if dest.token_hash:
                self._tokens[dest.token_hash] = dest.id

    async def close(self) -> None:
        tasks = list(self._sends.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    # -- matching (the HTTP action) -----------------------------------------------------------------

    def match(self, url: str | httpx.URL | UrlKey) -> Destination | None:
        """The ENABLED destination whose confirmationUrl the URL begins with, or None."""
        try:
            key = url if isinstance(url, UrlKey) else url_key(url)
        except DestinationUrlError:
            return None
        best: Destination | None = None
        for dest in self.by_id.values():
            if dest.status == "ENABLED" and key.starts_with(self._keys[dest.id]) and \
                    (best is None or len(dest.confirmation_url) > len(best.confirmation_url)):
                best = dest
        return best

    # -- the AWS API -----------------------------------------------------------------------------

    def _find(self, arn: str) -> Destination:
        dest = self.by_id.get(arn[len(self.arn_prefix):]) if arn.startswith(self.arn_prefix) else None
        if dest is None:
            raise denied(arn)
        self._expire(dest)
        return dest

    def _expire(self, dest: Destination) -> None:
        """A challenge past its time: the destination shows ERROR, as AWS's does after a confirmation timeout."""
        if dest.status == "IN_PROGRESS" and dest.token_hash and time.time() - dest.token_at > CONFIRMATION_TTL:
            self._tokens.pop(dest.token_hash, None)
            dest.token_hash = None
            dest.status, dest.status_reason, dest.updated_at = "ERROR", "confirmation timed out", time.time()
            self.store.save(dest)

    def get(self, arn: str) -> dict[str, Any]:
        return self._find(arn).view()

    def list(self) -> list[Destination]:
        dests = sorted(self.by_id.values(), key=lambda d: (d.created_at, d.id))
        for dest in dests:
            self._expire(dest)
        return dests

    async def create(self, config: Any, enable_base: str) -> dict[str, Any]:
        """CreateTopicRuleDestination: stored IN_PROGRESS, then the confirmation message is sent."""
        if not isinstance(config, dict):
            raise invalid("destinationConfiguration is required")
        if set(config) - {"httpUrlConfiguration"} or "httpUrlConfiguration" not in config:
            raise invalid("only httpUrlConfiguration destinations are supported by thingcore "
                          "(vpcConfiguration and influxDBConfiguration are not)")
        http = config["httpUrlConfiguration"]
        url = http.get("confirmationUrl") if isinstance(http, dict) else None
        if not isinstance(url, str) or not 1 <= len(url) <= MAX_URL:
            raise invalid(f"httpUrlConfiguration.confirmationUrl must be a URL of at most {MAX_URL} characters")
        if "${" in url:
            raise invalid("a destination's confirmationUrl cannot hold substitution templates")
        try:
            key = url_key(url)
        except DestinationUrlError as exc:
            raise invalid(f"confirmationUrl: {exc}") from None
        await self._check_address(key)
        async with self._lock:
            for other in self.by_id.values():
                if self._keys[other.id] == key:
                    raise RuleError("ResourceAlreadyExistsException",
                                    f"Topic rule destination {other.arn} already exists for {url}", 409,
                                    resourceArn=other.arn)
            if len(self.by_id) >= MAX_DESTINATIONS:
                raise RuleError("LimitExceededException", f"at most {MAX_DESTINATIONS} topic rule destinations", 410)
            now = time.time()
            dest_id = str(uuid.uuid4())
            dest = Destination(dest_id, self.arn_prefix + dest_id, url, "IN_PROGRESS", now, now)
            token = self._challenge(dest)
            self.by_id[dest_id] = dest
            self._keys[dest_id] = key
            await self.store.save(dest)
        log.info("topic rule destination %s created for %s: confirmation sent", dest.arn, url)
        self._send_later(dest, token, enable_base)
        return dest.view()

    async def _check_address(self, key: UrlKey) -> None:
        try:
            await asyncio.wait_for(self.policy.resolve_and_check(key.host.strip("[]"), key.port), self.timeout)
        except AddressRefused as exc:
            log.warning("topic rule destination refused: %s", exc)
            raise invalid(f"confirmationUrl: {exc}") from None
        except TimeoutError:
            raise invalid(f"confirmationUrl: cannot resolve {key.host} within {self.timeout:g} s") from None

    async def update(self, arn: Any, status: Any, enable_base: str) -> None:
        """UpdateTopicRuleDestination: ENABLED <-> DISABLED; IN_PROGRESS (from any state) sends a new challenge."""
        if not isinstance(arn, str) or not isinstance(status, str):
            raise invalid("arn and status are required")
        if status not in STATUSES:
            raise invalid(f"status must be one of {', '.join(STATUSES)}")
        async with self._lock:
            dest = self._find(arn)
            token = None
            if status == "IN_PROGRESS":
                token = self._challenge(dest)
                dest.status, dest.status_reason = "IN_PROGRESS", ""
            elif status in ("ENABLED", "DISABLED"):
                allowed_from = {"ENABLED": ("DISABLED", "ENABLED"), "DISABLED": ("ENABLED", "DISABLED")}[status]
                if dest.status not in allowed_from:
                    raise invalid(f"topic rule destination {arn} is {dest.status}: only a "
                                  f"{allowed_from[0]} destination can be set to {status} "
                                  "(confirm it first: set IN_PROGRESS to send a new confirmation)")
                dest.status = status
            else:
                raise invalid(f"a topic rule destination cannot be set to {status}")
            dest.updated_at = time.time()
            await self.store.save(dest)
        log.info("topic rule destination %s set to %s", arn, status)
        if token is not None:
            self._send_later(dest, token, enable_base)

    async def delete(self, arn: str) -> None:
        async with self._lock:
            dest = self._find(arn)
            del self.by_id[dest.id]
            del self._keys[dest.id]
            sending = self._sends.pop(dest.id, None)
            if sending is not None:
                sending.cancel()
            if dest.token_hash:
                self._tokens.pop(dest.token_hash, None)
            await self.store.delete(dest.id)
        log.info("topic rule destination %s deleted", arn)

    async def confirm(self, token: str) -> None:
        """ConfirmTopicRuleDestination: the token proves the endpoint received the challenge."""
        if not 1 <= len(token) <= 2048:
            raise invalid("confirmationToken must have 1 to 2048 characters")
        async with self._lock:
            dest = self.by_id.get(self._tokens.get(_hash(token), ""))
            if dest is not None:
                self._expire(dest)
            if dest is None or dest.token_hash != _hash(token):
                log.warning("topic rule destination confirmation refused: unknown, used or expired token")
                raise invalid("the confirmation token is not valid (unknown, already used or expired)")
            self._tokens.pop(dest.token_hash, None)
            dest.token_hash = None
            dest.status, dest.status_reason, dest.updated_at = "ENABLED", "", time.time()
            await self.store.save(dest)
        log.info("topic rule destination %s confirmed: ENABLED", dest.arn)

    # -- the confirmation message ----------------------------------------------------------------

    def _challenge(self, dest: Destination) -> str:
        token = secrets.token_urlsafe(48)
        if dest.token_hash:
            self._tokens.pop(dest.token_hash, None)
        dest.token_hash, dest.token_at = _hash(token), time.time()
        self._tokens[dest.token_hash] = dest.id
        return token

    def _send_later(self, dest: Destination, token: str, enable_base: str) -> None:
        previous = self._sends.pop(dest.id, None)
        if previous is not None:
            previous.cancel()
        task = self._sends[dest.id] = asyncio.get_running_loop().create_task(self._send(dest, token, enable_base))

        def done(t: asyncio.Task) -> None:
            if self._sends.get(dest.id) is t:
                del self._sends[dest.id]
        task.add_done_callback(done)

    async def _send(self, dest: Destination, token: str, enable_base: str) -> None:
        """POST the challenge. Any HTTP answer means the endpoint has the token: it may still confirm (an
        answer other than 2xx is only noted in statusReason). No answer at all (refused address, no
        connection) leaves the destination in ERROR with the reason: send again with UpdateTopicRuleDestination
        IN_PROGRESS."""
        body = {"arn": dest.arn, "confirmationToken": token,
                "enableUrl": f"{enable_base.rstrip('/')}/confirmdestination/{token}",
                "messageType": "DestinationConfirmation"}
        headers = {"x-amz-rules-engine-message-type": "DestinationConfirmation",
                   "x-amz-rules-engine-destination-arn": dest.arn, "content-type": "application/json"}
        url = httpx.URL(dest.confirmation_url).copy_merge_params({"confirmationToken": token})
        reason = ""
        try:
            resp = await self.http_client().post(url, content=orjson.dumps(body), headers=headers,
                                                 timeout=self.timeout)
            if not 200 <= resp.status_code < 300:
                log.warning("topic rule destination %s: the confirmation request was answered with HTTP %d",
                            dest.arn, resp.status_code)
                async with self._lock:
                    if dest.status == "IN_PROGRESS" and dest.token_hash == _hash(token):
                        dest.status_reason = f"the confirmation request was answered with HTTP {resp.status_code}"
                        await self.store.save(dest)
            return
        except AddressRefused as exc:
            reason = f"the confirmation request was refused: {exc}"
        except httpx.HTTPError as exc:
            reason = f"the confirmation request failed: {type(exc).__name__}: {exc}"
        if not reason:
            return
        log.warning("topic rule destination %s: %s", dest.arn, reason)
        async with self._lock:
            if self.by_id.get(dest.id) is dest and dest.status == "IN_PROGRESS" and dest.token_hash == _hash(token):
                self._tokens.pop(dest.token_hash, None)
                dest.token_hash = None
                dest.status, dest.status_reason, dest.updated_at = "ERROR", reason, time.time()
                await self.store.save(dest)
