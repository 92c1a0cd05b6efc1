"""compile_sql(): a statement parsed and compiled once, then evaluated per message."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ...mqtt.reason_codes import MQTTError
from ...mqtt.topics import topic_matches, validate_topic_filter
from . import ast
from .compiler import MAX_VARIABLE_NAME, Compiler, Env, check_version
from .context import MessageContext, QueryResult
from .errors import SqlError
from .limits import DEFAULT_LIMITS, MAX_SQL_LENGTH, Limits, SqlLimitError, weigh
from .parser import parse_statement
from .values import UNDEFINED, normalize_v2

#: SELECT lists with more items than this have their output's size checked per message; shorter ones
#: cannot produce more than this many values of at most max_value_size (or the payload's size) each
UNCHECKED_ITEMS = 8

_NOT_MATCHED = QueryResult(False, None)
NO_MATCH = object()  #: what ``CompiledQuery.run`` returns when WHERE is not true


class CompiledQuery:
    """A compiled statement. ``evaluate`` does not look at the topic: the rules engine routes
    messages by ``topic_filter`` (``matches`` applies AWS's matching when a caller needs it)."""

    __slots__ = ("_assignments", "_check_output", "_loop_env", "_project", "_star", "_v2", "_value", "_where",
                 "functions", "limits", "needs_services", "sql", "topic_filter", "uses_context", "version", "warnings")

    def __init__(self, sql: str, version: str, topic_filter: str, needs_services: bool, uses_context: bool,
                 assignments: list[tuple[str, Callable[[Env], Any]]], where: Callable[[Env], Any] | None,
                 project: Callable[[Env], Any], value: bool, functions: frozenset[str], warnings: list[str],
                 limits: Limits = DEFAULT_LIMITS, items: int = 1) -> None:
        self.sql = sql
        self.limits = limits
        self._check_output = items > UNCHECKED_ITEMS
        self.version = version
        self.topic_filter = topic_filter
        self.needs_services = needs_services
        #: whether evaluation reads the message context (topic(), clientid(), SET, ...): without it the
        #: engine builds the context only if an action needs it
        self.uses_context = uses_context or needs_services or bool(assignments)
        self.functions = functions  # names of the functions the statement calls
        self.warnings = warnings  # things AWS accepts but evaluates as Undefined (wrong argument counts)
        self._assignments = assignments
        self._where = where
        self._project = project
        self._star = getattr(project, "is_star", False)  # plain ``SELECT *``: the output is the row
        self._value = value
        self._v2 = version != "2015-10-08"
        self._loop_env: Env | None = None

    def __repr__(self) -> str:
        return f"CompiledQuery({self.sql!r}, version={self.version!r})"

    def matches(self, topic: str) -> bool:
        """Whether FROM selects ``topic``; as on AWS, ``'a/#'`` does not match ``a``."""
        f = self.topic_filter
        if not f:
            return False
        if f.endswith("/#") and topic == f[:-2]:
            return False
        return topic_matches(f, topic)

    def evaluate(self, ctx: MessageContext) -> QueryResult:
        """Run SET, WHERE, then SELECT against one message (from any thread). Raises SqlRuntimeError
        when an external function fails (the rule fails, as on AWS)."""
        doc = ctx.document()
        out = self.run(ctx, doc, Env(ctx, doc, {}, self.version, self._v2, meter=self.limits.meter()))
        return _NOT_MATCHED if out is NO_MATCH else QueryResult(True, out)

    def run(self, ctx: MessageContext | None, doc: Any, env: Env | None = None) -> Any:
        """:meth:`evaluate` for the event loop's message path: the SELECT output, or ``NO_MATCH`` when WHERE
        fails. ``doc`` is the parsed payload; ``ctx`` may be None when the statement does not
        ``uses_context``. Without ``env`` it reuses one Env per statement, which is safe in the loop: a
        statement evaluated there calls no external function, so nothing can re-enter it before it
        returns (nested SELECTs make their own); its meter starts afresh for each message. Raises
        :class:`~.limits.SqlLimitError` when the evaluation goes past the statement's limits."""
        if env is None:
            env = self._loop_env
            if env is None:
                env = self._loop_env = Env(ctx, doc, {}, self.version, self._v2, meter=self.limits.meter())
            env.ctx = ctx
            env.root = env.row = doc
            env.meter.left = env.meter.max_cost
        if self._assignments:
            variables = env.variables = {}
            for name, fn in self._assignments:
                variables[name] = fn(env)
            ctx._variables = variables
        elif ctx is not None and ctx._variables is not None:  # evaluated by an earlier statement with SET
            ctx._variables = None
        where = self._where
        if where is not None and where(env) is not True:
            return NO_MATCH
        out = env.row if self._star else self._project(env)
        if out is UNDEFINED:
            return b""
        if self._check_output:
            limit = self.limits.max_value_size + (len(ctx.payload) if ctx is not None else 0)
            if weigh(out, limit)[0] > limit:
                raise SqlLimitError(f"the SELECT output is larger than {limit:,} characters when serialized "
                                    "([rules] max_value_size)")
        if self._v2:
            t = type(out)
            if t is dict:  # most objects hold no float and no container: nothing to normalize, no call
                for x in out.values():
                    tx = type(x)
                    if tx is float or tx is dict or tx is list:
                        return _normalized(out)
            elif t is list or t is float:
                return _normalized(out)
        return out


def _normalized(out: Any) -> Any:
    try:
        return normalize_v2(out)
    except RecursionError:  # a document nested ~1000 deep: output it as parsed
        return out


def compile_sql(sql: str, version: str | None = "2016-03-23", limits: Limits = DEFAULT_LIMITS) -> CompiledQuery:
    """Parse and compile ``sql`` for ``version``; raises SqlError naming the position and what was
    expected. ``version=None`` means the default, 2016-03-23 (AWS's API default when
    ``awsIotSqlVersion`` is omitted is 2015-10-08: callers that mirror the API pass that). ``limits``
    bound each evaluation (and the constants folded now)."""
    if not isinstance(sql, str):
        raise SqlError("the SQL statement must be a string")
    if len(sql) > MAX_SQL_LENGTH:
        raise SqlError(f"the SQL statement is {len(sql):,} characters long; at most {MAX_SQL_LENGTH:,} are accepted")
    version = check_version(version)
    try:
        return _compile(sql, version, limits)
    except RecursionError:  # the parser and compiler bound nesting; this is the backstop
        raise SqlError("the SQL statement nests too deeply to be compiled") from None


def _compile(sql: str, version: str, limits: Limits) -> CompiledQuery:
    tree = parse_statement(sql)
    compiler = Compiler(sql, version, limits=limits)
    topic_filter = ""
    if tree.topic_filter is not None:
        topic_filter = tree.topic_filter
        try:
            validate_topic_filter(topic_filter)
        except MQTTError as e:
            raise SqlError(f"invalid topic filter in FROM: {e}", tree.topic_pos, sql) from None
        if topic_filter.startswith("$share/"):
            raise SqlError("FROM cannot use a shared subscription ($share/...)", tree.topic_pos, sql)
    assignments = _assignments(compiler, tree)
    where = compiler.expr(tree.where) if tree.where is not None else None
    project = compiler.projection(tree)
    return CompiledQuery(sql, version, topic_filter, compiler.needs_services, compiler.uses_context, assignments,
                         where, project, tree.value, frozenset(compiler.functions), compiler.warnings, limits,
                         sum(1 for item in tree.items if item.expr is not None) + 1)


def _assignments(compiler: Compiler, tree: ast.Select) -> list[tuple[str, Callable[[Env], Any]]]:
    out = []
    for name, node, pos in tree.assignments:
        if len(name) > MAX_VARIABLE_NAME:
            raise compiler.error(f"variable name @{name} is longer than {MAX_VARIABLE_NAME} characters", pos)
        if name in compiler.variables:
            raise compiler.error(f"variable @{name} is assigned twice (SET variables are immutable)", pos)
        fn = compiler.expr(node)  # compiled before the name is defined: self-reference is an error
        compiler.variables.add(name)
        out.append((name, fn))
    return out
