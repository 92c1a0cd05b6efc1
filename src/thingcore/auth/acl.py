"""Access rules from configuration, compiled into an :data:`~thingcore.auth.identity.Authorizer`.

A rule is a dict (an ``[[auth.acl]]`` entry)::

    {"effect": "deny" | "allow",
     "action": "connect" | "publish" | "subscribe" | "receive" | "all" | "manage"  (or a list of them),
     "topic": "<MQTT filter; %c = client id, %u = user name>"            (optional),
     "username": "...", "client_id": "...", "principal": "...",          (optional, exact match)
     "anonymous": true | false,                                          (optional)
     "reason_code": 0x87}                                                (optional, deny only)

The first rule that matches wins; when none matches, an MQTT action is allowed and ``manage`` (the
control plane: rules, things, the admin API; resource ``<kind>/<name>``) is allowed to
administrators only. ``all`` means the four MQTT actions, never ``manage``.

What a rule covers:

* Without ``topic`` a rule covers everything its actions can touch: every topic and filter,
  ``$`` topics (``$aws/...``, ``$SYS/...``) included, every ``manage`` resource, and CONNECT. So
  ``deny all`` for a user keeps it from connecting at all, and ``deny publish`` for it refuses
  every publish, reserved topics too.
* With ``topic`` a rule covers the topics its filter matches, with MQTT's semantics: a filter
  starting with a wildcard does not match topics starting with ``$``, so ``topic = "#"`` does not
  cover ``$aws/...`` (write ``$aws/#`` as a rule of its own, or leave ``topic`` out). CONNECT has
  no topic: ``all`` with a topic means publish, subscribe and receive on it.

A rule that cannot mean what it says is refused when the server starts, with an error naming the
entry: ``connect`` named together with a ``topic``; a ``reason_code`` on an allow rule;
``anonymous = true`` together with ``username``, ``principal`` or a ``%u`` topic (anonymous
clients have neither); an empty ``username``, ``client_id`` or ``principal``; a ``username`` with
``?`` (what follows ``?`` is SDK metadata, never part of the name rules see).

Who a rule names: ``username`` and ``%u`` are the name the client proved (see
:mod:`thingcore.auth.policy`): the password file's login name (``guest?SDK=x`` is ``guest``), the
CN of a verified client certificate (whatever user name the client sends), never the user name of
an anonymous client. ``principal`` is the login name, the certificate subject or the access key's
principal. ``client_id`` and ``%c`` are the client id as sent: the client chooses it, so a rule
that should confine a client to its own topics names it with ``%u`` (or pairs ``%c`` with a
principal), as AWS IoT policies bind the client id to the thing of the certificate.

Matching per action:

* PUBLISH and RECEIVE: the rule's filter is matched against the message topic (``+`` one level,
  ``#`` the rest including the parent level, a filter starting with a wildcard never matches a
  topic starting with ``$``).
* SUBSCRIBE: the rule matches when the requested filter is *covered* by the rule's filter, i.e.
  every topic the subscription could receive is also matched by the rule (equal filters included).
  So ``deny subscribe secret/#`` refuses ``secret/#``, ``secret/+`` and ``secret/a``, and
  ``deny subscribe test/nosubscribe`` refuses exactly that filter. A filter that only *overlaps*
  the rule (``#``, ``+/a``) is not refused: refusing it would break every wildcard subscriber
  (dashboards, bridges) as soon as one deny rule exists. What actually keeps those messages from
  reaching such subscribers is a RECEIVE rule (``"action": ["subscribe", "receive"]`` or
  ``"all"``), which the broker checks per delivered message. Symmetrically, ``allow subscribe
  sensors/#`` lets a client subscribe to ``sensors/+/temp`` but not to ``#``.

Shared subscriptions: ``$share/<group>/<filter>`` is checked as ``<filter>``.

Substitution: ``%c`` and ``%u`` are replaced by the client id and the user name, in one pass (a
client id ``%u`` stays literal). When the value is missing (no user name) or contains ``+``,
``#`` or ``/``, a rule that needs it does not match (so a client called ``#`` cannot turn
``devices/%c/#`` into ``devices/#/#``).

Cost: with no rules :func:`build_authorizer` returns a constant allow-all function. Otherwise the
rules are compiled once, grouped by action (an action no rule mentions costs one dict lookup),
and results are cached per (action, topic[, identity]) in a bounded dict.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from thingcore.auth.identity import MQTT_ACTIONS, Action, Authorizer, Identity
from thingcore.mqtt.reason_codes import ReasonCode
from thingcore.mqtt.topics import SHARE_PREFIX, topic_matches

_KEYS = {"effect", "action", "topic", "username", "client_id", "principal", "anonymous", "reason_code"}
_ALL_ACTIONS = MQTT_ACTIONS  # what "all" means in a rule
_NOT_AUTHORIZED = int(ReasonCode.NOT_AUTHORIZED)
_MANAGE = Action.MANAGE  # an Enum class attribute costs a lookup through the class on every call
IDENTITY_CACHE_SIZE = 1024  # verdicts remembered per identity (per connection); past it they start over


# -- topic matching (no regular expressions) ------------------------------------------------


def valid_filter(topic_filter: str) -> bool:
    if not topic_filter or "\x00" in topic_filter:
        return False
    levels = topic_filter.split("/")
    for i, level in enumerate(levels):
        if "#" in level and (level != "#" or i != len(levels) - 1):
            return False
        if "+" in level and level != "+":
            return False
    return True


def levels_match(flt: tuple[str, ...] | list[str], topic: list[str]) -> bool:
    """Whether a filter (split on "/") matches a topic name (split on "/")."""
    if topic and topic[0][:1] == "$" and flt and flt[0] in ("+", "#"):
        return False
    n = len(topic)
    for i, f in enumerate(flt):
        if f == "#":
            return True
        if i >= n:
            return False
        if f != "+" and f != topic[i]:
            return False
    return len(flt) == n


def filter_covers(outer: tuple[str, ...] | list[str], inner: list[str]) -> bool:
    """Whether every topic matched by filter ``inner`` is matched by filter ``outer``."""
    if outer and outer[0] in ("+", "#") and inner and inner[0][:1] == "$":
        return False
    n = len(inner)
    for i, o in enumerate(outer):
        if o == "#":
            return True
        if i >= n:
            return False
        f = inner[i]
        if f == "#":
            return False
        if o == "+":
            continue
        if f != o:  # a literal never covers "+"
            return False
    return len(outer) == n


# -- rules ---------------------------------------------------------------------------------


@dataclass(slots=True, frozen=True)
class Rule:
    effect: str  # "allow" | "deny"
    actions: frozenset[Action]
    topic: str | None
    username: str | None = None
    client_id: str | None = None
    principal: str | None = None
    anonymous: bool | None = None
    reason_code: int = int(ReasonCode.NOT_AUTHORIZED)

    @property
    def substitutes(self) -> bool:
        return self.topic is not None and ("%c" in self.topic or "%u" in self.topic)


def _parse_actions(value: Any, where: str) -> tuple[frozenset[Action], frozenset[str]]:
    """The actions a rule covers, and the names it wrote (``all`` is not ``connect`` by name)."""
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list | tuple) or not items:
        raise ValueError(f"{where}: 'action' must be a name or a non-empty list of names")
    out: set[Action] = set()
    names: set[str] = set()
    for item in items:
        name = str(item).lower()
        names.add(name)
        if name == "all":
            out.update(_ALL_ACTIONS)
            continue
        try:
            out.add(Action(name))
        except ValueError:
            choices = ", ".join([*(a.value for a in Action), "all"])
            raise ValueError(f"{where}: unknown action {item!r} (expected one of {choices})") from None
    return frozenset(out), frozenset(names)


def _describe(raw: Mapping[str, Any]) -> str:
    """A rule as the operator wrote it, short enough to find it in the file."""
    text = ", ".join(f"{k} = {v!r}" for k, v in raw.items() if v is not None)
    return text if len(text) <= 160 else text[:157] + "..."


def _never_matches(raw: Mapping[str, Any], names: frozenset[str], topic: str | None, effect: str) -> str | None:
    """Why a well-formed rule still cannot mean what it says (None: it can)."""
    if "connect" in names and topic is not None:
        return ("'connect' with a 'topic' never applies: CONNECT has no topic (leave 'topic' out to cover "
                "connecting and every topic, or put connect in a rule of its own)")
    if effect == "allow" and raw.get("reason_code") is not None:
        return "'reason_code' is what a deny rule answers with; an allow rule has none"
    for key in ("username", "client_id", "principal"):
        if raw.get(key) is not None and not str(raw[key]):
            return f"'{key}' is empty: no client has an empty {key.replace('_', ' ')}"
    if raw.get("username") is not None and "?" in str(raw["username"]):
        return ("'username' contains '?': rules see the login name, the part before '?' "
                "(AWS SDKs append '?SDK=...' metadata), so this rule would never match")
    if raw.get("anonymous") is True:
        if raw.get("username") is not None or raw.get("principal") is not None:
            return "'anonymous = true' with 'username' or 'principal': anonymous clients have neither"
        if topic is not None and "%u" in topic:
            return "'anonymous = true' with '%u' in 'topic': anonymous clients have no user name"
    return None


def parse_rule(raw: Mapping[str, Any], index: int = 0) -> Rule:
    where = f"access rule {index + 1}"
    if not isinstance(raw, Mapping):
        raise ValueError(f"{where}: expected a table/dict, got {type(raw).__name__}")
    where = f"access rule {index + 1} ({_describe(raw)})"
    unknown = set(raw) - _KEYS
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}")
    effect = str(raw.get("effect", "")).lower()
    if effect not in ("allow", "deny"):
        raise ValueError(f"{where}: 'effect' must be 'allow' or 'deny'")
    actions, names = _parse_actions(raw.get("action", "all"), where)
    topic = raw.get("topic")
    if topic is not None:
        topic = str(topic)
        if not valid_filter(topic):
            raise ValueError(f"{where}: {topic!r} is not a valid MQTT topic filter")
        if topic.startswith(SHARE_PREFIX):
            raise ValueError(
                f"{where}: write the filter without '$share/<group>/': shared subscriptions are "
                "checked against the filter they share"
            )
    reason = raw.get("reason_code")
    if reason is None:
        reason = int(ReasonCode.NOT_AUTHORIZED)
    try:
        reason = int(reason, 0) if isinstance(reason, str) else int(reason)
    except (TypeError, ValueError):
        raise ValueError(f"{where}: 'reason_code' must be an integer") from None
    if effect == "deny" and not 0x80 <= reason <= 0xFF:
        raise ValueError(f"{where}: 'reason_code' of a deny rule must be between 0x80 and 0xFF")
    anonymous = raw.get("anonymous")
    if anonymous is not None and not isinstance(anonymous, bool):
        raise ValueError(f"{where}: 'anonymous' must be true or false")
    why = _never_matches(raw, names, topic, effect)
    if why is not None:
        raise ValueError(f"{where}: {why}")

    def opt(key: str) -> str | None:
        v = raw.get(key)
        return None if v is None else str(v)

    return Rule(
        effect=effect,
        actions=actions,
        topic=topic,
        username=opt("username"),
        client_id=opt("client_id"),
        principal=opt("principal"),
        anonymous=anonymous,
        reason_code=reason if effect == "deny" else 0,
    )


def parse_rules(rules: Iterable[Mapping[str, Any]] | None) -> list[Rule]:
    """Validate configuration rules; ``ValueError`` names the first bad rule."""
    return [parse_rule(r, i) for i, r in enumerate(rules or ())]


# -- compilation ---------------------------------------------------------------------------

_Check = Callable[[Identity, str | None, list[str] | None], bool]


def _pieces(topic: str) -> tuple[str, ...]:
    """A topic split around its ``%c`` / ``%u`` placeholders, so substitution is one pass."""
    out: list[str] = []
    rest = topic
    while True:
        at = min((i for i in (rest.find("%c"), rest.find("%u")) if i >= 0), default=-1)
        if at < 0:
            out.append(rest)
            return tuple(out)
        out += [rest[:at], rest[at : at + 2]]
        rest = rest[at + 2 :]


def _value(value: str | None) -> str | None:
    """A client id or user name as it may stand in a filter (None: a rule that needs it cannot match)."""
    if not value or "+" in value or "#" in value or "/" in value:
        return None
    return value


def _substitute(pieces: tuple[str, ...], identity: Identity) -> list[str] | None:
    out: list[str] = []
    for piece in pieces:
        if piece == "%c" or piece == "%u":
            value = _value(identity.client_id if piece == "%c" else identity.username)
            if value is None:
                return None
            out.append(value)
        else:
            out.append(piece)
    return "".join(out).split("/")


def _compile(rule: Rule, action: Action) -> _Check:
    """A predicate (identity, topic, topic levels) -> does this rule apply."""
    conds: list[Callable[[Identity], bool]] = []
    if rule.username is not None:
        conds.append(lambda i, v=rule.username: i.username == v)
    if rule.client_id is not None:
        conds.append(lambda i, v=rule.client_id: i.client_id == v)
    if rule.principal is not None:
        conds.append(lambda i, v=rule.principal: i.principal == v)
    if rule.anonymous is not None:
        conds.append(lambda i, v=rule.anonymous: i.anonymous == v)

    def who(identity: Identity) -> bool:
        return all(c(identity) for c in conds)

    topic = rule.topic
    if topic is None:
        if not conds:
            return lambda identity, t, levels: True
        return lambda identity, t, levels: who(identity)

    match = filter_covers if action is Action.SUBSCRIBE else levels_match
    if rule.substitutes:
        pieces = _pieces(topic)

        def check_sub(identity: Identity, t: str | None, levels: list[str] | None) -> bool:
            if levels is None or not who(identity):
                return False
            flt = _substitute(pieces, identity)
            return flt is not None and match(flt, levels)

        return check_sub

    flt = tuple(topic.split("/"))
    if not conds:
        return lambda identity, t, levels: levels is not None and match(flt, levels)
    return lambda identity, t, levels: levels is not None and who(identity) and match(flt, levels)


def allow_all(identity: Identity, action: Action, topic: str | None) -> int:
    """The authorizer used when there are no rules: every MQTT action is allowed; managing the server
    (``Action.MANAGE``) only to administrators."""
    if action is Action.MANAGE and not identity.administrator:
        return _NOT_AUTHORIZED
    return 0


def is_trivial(authorizer: Authorizer | None) -> bool:
    """Whether an authorizer allows every MQTT action (the broker can then skip calling it for topics)."""
    return authorizer is None or authorizer is allow_all or getattr(authorizer, "mqtt_trivial", False)


def build_authorizer(
    rules: Iterable[Mapping[str, Any] | Rule] | None, *, cache_size: int = 65_536
) -> Authorizer:
    """Compile access rules (dicts as in configuration, or :class:`Rule`) into an Authorizer."""
    parsed = [r if isinstance(r, Rule) else parse_rule(r, i) for i, r in enumerate(rules or ())]
    if not parsed:
        return allow_all

    by_action: dict[Action, list[tuple[_Check, int]]] = {}
    for action in Action:
        compiled = [(_compile(r, action), r.reason_code) for r in parsed if action in r.actions]
        # Trailing allow rules of MQTT actions change nothing (no match means allow): drop them.
        while compiled and compiled[-1][1] == 0 and action is not Action.MANAGE:
            compiled.pop()
        if compiled:
            by_action[action] = compiled
    if not by_action:
        return allow_all

    needs_identity = any(
        r.username is not None
        or r.client_id is not None
        or r.principal is not None
        or r.anonymous is not None
        or r.substitutes
        for r in parsed
    )
    cache: dict[tuple[Any, ...], int] = {}

    def decide(checks: list[tuple[_Check, int]], identity: Identity, action: Action, topic: str | None) -> int:
        if topic is None:
            levels = None
        elif action is Action.SUBSCRIBE and topic.startswith(SHARE_PREFIX):
            # $share/<group>/<filter>: the rules apply to <filter>.
            levels = topic.split("/")[2:] or topic.split("/")
        else:
            levels = topic.split("/")
        for check, code in checks:
            if check(identity, topic, levels):
                return code
        return allow_all(identity, action, topic)  # no rule matched: the default of the action

    def authorize(identity: Identity, action: Action, topic: str | None) -> int:
        checks = by_action.get(action)
        if checks is None:
            return allow_all(identity, action, topic)
        if action is _MANAGE:  # rare, and its default depends on the caller: never cached
            return decide(checks, identity, action, topic)
        key = (action, topic)
        if needs_identity:  # the verdict depends on who asks: remembered on the identity itself
            mine = identity.verdicts
            if mine is None:
                mine = identity.verdicts = {}
            result = mine.get(key)
            if result is not None:
                return result
            result = decide(checks, identity, action, topic)
            if len(mine) >= IDENTITY_CACHE_SIZE:
                mine.clear()
            mine[key] = result
            return result
        result = cache.get(key)
        if result is not None:
            return result
        result = decide(checks, identity, action, topic)
        if len(cache) >= cache_size:
            # Evict the oldest entry (dicts keep insertion order).
            try:
                del cache[next(iter(cache))]
            except (StopIteration, KeyError):
                pass
        cache[key] = result
        return result

    authorize.rules = parsed  # type: ignore[attr-defined]
    authorize.mqtt_trivial = not any(a in by_action for a in MQTT_ACTIONS)  # type: ignore[attr-defined]
    authorize.cache = cache  # type: ignore[attr-defined]
    return authorize


__all__ = [
    "Rule",
    "allow_all",
    "build_authorizer",
    "filter_covers",
    "is_trivial",
    "parse_rule",
    "parse_rules",
    "topic_matches",
    "valid_filter",
]
