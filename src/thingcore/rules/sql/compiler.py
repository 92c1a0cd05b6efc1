"""Turns the syntax tree into nested Python closures, once per rule.

Every expression becomes ``fn(env) -> value``; constants are folded at compile time; common shapes
(an attribute path, a comparison with a constant) get specialised closures so a typical
``SELECT a, b FROM 'x/+' WHERE a > 30`` costs a handful of dict lookups per message.
"""

from __future__ import annotations

import difflib
import math
import operator
from collections.abc import Callable
from typing import Any

from . import ast
from .errors import SqlError, SqlRuntimeError
from .functions import FUNCTIONS, UNSUPPORTED_REASONS
from .functions.regexp import PATTERN_FUNCTIONS, pattern_error
from .functions.registry import V2015, V2016, FunctionSpec
from .limits import DEFAULT_LIMITS, MAX_FUNCTION_CALLS, MAX_NODES, STEP, Limits, Meter, SqlLimitError, weigh
from .operators import ARITHMETIC, BINARY, op_add, op_neg, op_not, op_pos
from .values import (
    UNDEFINED,
    parse_decimal_string,
    sql_equals,
    string_to_int,
    to_bool,
    to_string,
    whole_to_int,
)

Fn = Callable[[Any], Any]
VERSIONS = ("2015-10-08", "2016-03-23", "beta")
MAX_VARIABLE_NAME = 64
MAX_DEPTH = 200  # operator chains such as a + a + ... nest one level per operator


class Env:
    """Evaluation state for one message: the context, the whole payload (``root``), the document
    that bare names refer to (``row``: the payload, or an element inside a nested SELECT), SET
    variables, per-statement counters and the evaluation's :class:`~.limits.Meter`."""

    __slots__ = ("calls", "ctx", "meter", "root", "row", "v2", "variables", "version")

    def __init__(self, ctx: Any, root: Any, variables: dict[str, Any], version: str, v2: bool,
                 calls: list[int] | None = None, meter: Meter | None = None) -> None:
        self.ctx = ctx
        self.root = root
        self.row = root
        self.variables = variables
        self.version = version
        self.v2 = v2
        self.calls = calls if calls is not None else [0]
        self.meter = meter if meter is not None else DEFAULT_LIMITS.meter()

    def child(self) -> Env:
        return Env(self.ctx, self.root, self.variables, self.version, self.v2, self.calls, self.meter)


def _const(value: Any) -> Fn:
    def constant(env: Any) -> Any:
        return value
    constant.const_value = value  # type: ignore[attr-defined]
    return constant


NOT_CONST = object()


def const_of(fn: Fn) -> Any:
    return getattr(fn, "const_value", NOT_CONST)


class Compiler:
    def __init__(self, text: str, version: str, *, template: bool = False, limits: Limits = DEFAULT_LIMITS) -> None:
        self.text = text
        self.limits = limits
        self.fold_meter = limits.meter()  # constant folding is bounded like an evaluation
        self.nodes = 0  # expressions compiled: bounded by MAX_NODES, and what a nested SELECT costs per element
        self.calls = 0
        self.version = version
        self.v2 = version != V2015
        self.template = template
        self.needs_services = False
        self.uses_context = False  # some expression reads the message context (topic(), clientid(), ...)
        self.functions: set[str] = set()
        self.warnings: list[str] = []
        self.variables: set[str] = set()
        self.nested = 0
        self.depth = 0

    def error(self, message: str, pos: int, expected: list[str] | None = None) -> SqlError:
        return SqlError(message, pos, self.text, expected)

    def need_v2(self, what: str, pos: int) -> None:
        if not self.v2:
            raise self.error(f"{what} needs awsIotSqlVersion 2016-03-23 (this statement uses {self.version})", pos)

    # -- expressions ------------------------------------------------------------------------------

    def expr(self, node: ast.Node) -> Fn:
        self.depth += 1
        self.nodes += 1
        if self.depth > MAX_DEPTH:
            raise self.error(f"the statement's expressions are more than {MAX_DEPTH} levels deep", node.pos)
        if self.nodes > MAX_NODES:
            raise self.error(f"the statement has more than {MAX_NODES} expressions", node.pos)
        try:
            return getattr(self, "_" + type(node).__name__)(node)
        finally:
            self.depth -= 1

    def _Literal(self, node: ast.Literal) -> Fn:
        v = node.value
        return _const(whole_to_int(v) if self.v2 else v)

    def _Star(self, node: ast.Star) -> Fn:
        def star(env: Env) -> Any:
            return env.row
        return star

    def _Attribute(self, node: ast.Attribute) -> Fn:
        return self._path((node.name,))

    def _path(self, keys: tuple[str, ...]) -> Fn:
        """A name or dotted path read from the current document. Under 2016-03-23 a whole-number
        Decimal read this way is an Int (the output of containers is normalised in ``evaluate``)."""
        if self.v2:
            return _path_v2(keys)
        if len(keys) == 1:
            (k,) = keys

            def attr1(env: Env) -> Any:
                r = env.row
                return r.get(k, UNDEFINED) if type(r) is dict else UNDEFINED
            attr1.path_key = k  # type: ignore[attr-defined]  # comparisons with a constant read it inline
            return attr1
        if len(keys) == 2:
            k1, k2 = keys

            def attr2(env: Env) -> Any:
                r = env.row
                if type(r) is not dict:
                    return UNDEFINED
                r = r.get(k1)
                return r.get(k2, UNDEFINED) if type(r) is dict else UNDEFINED
            return attr2

        def attrn(env: Env) -> Any:
            v = env.row
            for k in keys:
                if type(v) is not dict:
                    return UNDEFINED
                v = v.get(k, UNDEFINED)
            return v
        return attrn

    def _Variable(self, node: ast.Variable) -> Fn:
        name = node.name
        if not self.template and name not in self.variables:
            raise self.error(f"variable @{name} is not defined (assign it in SET before it is used)", node.pos)

        def variable(env: Env) -> Any:
            return env.variables.get(name, UNDEFINED)
        return variable

    def _Member(self, node: ast.Member) -> Fn:
        keys: list[str] = [node.name]
        target = node.target
        while isinstance(target, ast.Member):
            keys.append(target.name)
            target = target.target
        if isinstance(target, ast.Attribute):
            keys.append(target.name)
            return self._path(tuple(reversed(keys)))
        base = self.expr(target)
        path = tuple(reversed(keys))
        c = const_of(base)
        if c is not NOT_CONST:
            return _const(_walk(c, path))

        if self.v2:
            def member_v2(env: Env) -> Any:
                v = _walk(base(env), path)
                return whole_to_int(v) if type(v) is float else v
            return member_v2

        def member(env: Env) -> Any:
            return _walk(base(env), path)
        return member

    def _Unary(self, node: ast.Unary) -> Fn:
        operand = self.expr(node.operand)
        op = {"NOT": op_not, "-": op_neg, "+": op_pos}[node.op]
        c = const_of(operand)
        if c is not NOT_CONST:
            return _const(op(c))

        def unary(env: Env) -> Any:
            return op(operand(env))
        return unary

    def _Binary(self, node: ast.Binary) -> Fn:
        left = self.expr(node.left)
        right = self.expr(node.right)
        op = BINARY[node.op]
        lc = const_of(left)
        rc = const_of(right)
        normalize = self.v2 and node.op in ARITHMETIC
        if lc is not NOT_CONST and rc is not NOT_CONST:
            r = op(lc, rc)
            if type(r) is str:
                self.fold(lambda m: m.size(len(r)), node.pos)
            return _const(whole_to_int(r) if normalize else r)
        if node.op == "+":
            return _add(left, right, normalize)
        if node.op in ("=", "<>", "IN") and (rc is NOT_CONST or type(rc) in (list, dict)):
            return _metered_compare(op, left, right, node.op == "IN")
        if normalize:
            def arith(env: Env) -> Any:
                r = op(left(env), right(env))
                return whole_to_int(r) if type(r) is float else r
            return arith
        if rc is not NOT_CONST:
            fast = _compare_const(node.op, left, rc)
            if fast is not None:
                return fast

            def binary_const(env: Env) -> Any:
                return op(left(env), rc)
            return binary_const

        def binary(env: Env) -> Any:
            return op(left(env), right(env))
        return binary

    def _Case(self, node: ast.Case) -> Fn:
        subject = self.expr(node.subject)
        whens = [(self.expr(t), self.expr(r)) for t, r in node.whens]
        default = self.expr(node.default) if node.default is not None else None

        def case(env: Env) -> Any:
            v = subject(env)
            if v is UNDEFINED:
                return UNDEFINED
            for test, result in whens:
                if sql_equals(v, test(env)) is True:
                    return result(env)
            return default(env) if default is not None else UNDEFINED
        return case

    def _ObjectLiteral(self, node: ast.ObjectLiteral) -> Fn:
        self.need_v2("an object literal", node.pos)
        items = [(k, self.expr(v)) for k, v in node.items]

        def obj(env: Env) -> Any:
            out = {}
            for k, f in items:
                v = f(env)
                if v is not UNDEFINED:
                    out[k] = v
            env.meter.container(out, "an object literal")
            return out
        return obj

    def _ArrayLiteral(self, node: ast.ArrayLiteral) -> Fn:
        self.need_v2("an array literal", node.pos)
        items = [self.expr(v) for v in node.items]

        def array(env: Env) -> Any:
            out = []
            for f in items:
                v = f(env)
                if v is not UNDEFINED:
                    out.append(v)
            env.meter.container(out, "an array literal")
            return out
        return array

    def _Cast(self, node: ast.Cast) -> Fn:
        target = node.target
        if target in ("decimal", "bool", "boolean"):
            self.need_v2(f"cast to {target.capitalize()}", node.target_pos)
        convert = _CASTS[target]
        value = self.expr(node.value)
        v2 = self.v2

        def cast(env: Env) -> Any:
            r = convert(value(env))
            return whole_to_int(r) if v2 and type(r) is float else r
        c = const_of(value)
        if c is not NOT_CONST:
            return _const(cast(None))
        return cast

    def _Select(self, node: ast.Select) -> Fn:
        """A nested SELECT over an array (one result per element, always an array), an object (one
        result), or ``*`` (the payload, as a one-element array)."""
        self.need_v2("a nested SELECT", node.pos)
        source = self.expr(node.source) if not isinstance(node.source, ast.Star) else None
        self.nested += 1
        before = self.nodes
        try:
            where = self.expr(node.where) if node.where is not None else None
            project = self.projection(node)
        finally:
            self.nested -= 1
        per_element = STEP * (1 + self.nodes - before)  # what evaluating one element costs, about
        # projecting one path of each element cannot make the output bigger than the source (plus a key per
        # element): only other projections are measured
        measure = not _projects_one_path(node)

        def nested(env: Env) -> Any:
            if source is None:
                elements: Any = (env.row,)
                wrap = True
            else:
                src = source(env)
                t = type(src)
                if t is list:
                    elements, wrap = src, True
                elif t is dict:
                    elements, wrap = (src,), False
                else:
                    return UNDEFINED
            inner = env.child()
            meter = env.meter
            meter.charge(per_element * len(elements))  # up front: a loop too long for the budget never starts
            out = []
            chars = 0  # of the strings in the output (numbers and the like are small)
            containers = False  # some item is an array or object: weighed after the loop
            for element in elements:
                inner.row = element
                if where is not None and where(inner) is not True:
                    continue
                v = project(inner)
                if v is not UNDEFINED:
                    out.append(v)
                    if measure:
                        tv = type(v)
                        if tv is str:
                            chars += len(v)
                        elif tv is dict or tv is list:
                            containers = True
            if containers:
                meter.container(out, "the array a nested SELECT builds")
            elif chars > meter.max_value_size:
                meter.size(chars, "the array a nested SELECT builds")
            if wrap:
                return out
            return out[0] if out else UNDEFINED
        return nested

    def _Call(self, node: ast.Call) -> Fn:
        name = node.name
        spec = FUNCTIONS.get(name)
        if spec is None:
            close = difflib.get_close_matches(name, FUNCTIONS, n=3)
            hint = f"; did you mean {', '.join(c + '()' for c in close)}" if close else ""
            raise self.error(f"unknown function {node.written}(){hint}", node.pos, [c + "()" for c in close])
        if name in UNSUPPORTED_REASONS:
            raise self.error(f"{UNSUPPORTED_REASONS[name]}; rules using it cannot run here", node.pos)
        if spec.since == V2016:
            self.need_v2(f"{name}()", node.pos)
        self.calls += 1
        if self.calls > MAX_FUNCTION_CALLS:
            raise self.error(f"the statement calls more than {MAX_FUNCTION_CALLS} functions", node.pos)
        self.functions.add(name)
        if spec.external:
            self.needs_services = True
        if spec.env or spec.external:
            self.uses_context = True
        n = len(node.args)
        if n < spec.min_args or (spec.max_args is not None and n > spec.max_args):
            want = (str(spec.min_args) if spec.max_args == spec.min_args else
                    f"{spec.min_args} or more" if spec.max_args is None else f"{spec.min_args} to {spec.max_args}")
            self.warnings.append(f"{name}() takes {want} arguments but is given {n}; AWS evaluates it as Undefined "
                                 f"(position {node.pos})")
            return _const(UNDEFINED)
        if name == "get_or_default":
            return self._get_or_default(node)
        if name == "decode" and n >= 2:
            scheme = const_of(self.expr(node.args[1]))
            if type(scheme) is str and scheme.lower() == "proto":
                raise self.error("decode(*, 'proto', ...) reads a protobuf descriptor from Amazon S3, which has no "
                                 "local counterpart in thingcore; rules using it cannot run here", node.pos)
        args = [self._argument(name, i, a) for i, a in enumerate(node.args)]
        if name in PATTERN_FUNCTIONS:
            pattern = const_of(args[PATTERN_FUNCTIONS[name]])
            problem = pattern_error(pattern) if type(pattern) is str else None
            if problem is not None:
                raise self.error(problem, node.args[PATTERN_FUNCTIONS[name]].pos)
        return self._call(spec, args, node.pos)

    def fold(self, compute: Callable[[Meter], Any], pos: int) -> Any:
        """Evaluate a constant expression now, within the limits an evaluation has (SqlError past them)."""
        try:
            return compute(self.fold_meter)
        except SqlRuntimeError as exc:
            raise self.error(f"this constant expression cannot be evaluated: {exc}", pos) from None

    def _argument(self, name: str, index: int, node: ast.Node) -> Fn:
        # encode(*, ...) reads the payload's raw bytes, JSON or not (a nested SELECT's * is its element).
        if name == "encode" and index == 0 and isinstance(node, ast.Star) and not self.nested:
            self.uses_context = True

            def raw_payload(env: Env) -> Any:
                return env.ctx.payload
            return raw_payload
        return self.expr(node)

    def _call(self, spec: FunctionSpec, args: list[Fn], pos: int = 0) -> Fn:
        impl = spec.impl
        v2 = self.v2
        consts = [const_of(a) for a in args]
        if spec.pure and all(c is not NOT_CONST for c in consts):
            metered = spec.metered
            r = self.fold(lambda m: impl(m, *consts) if metered else impl(*consts), pos)
            return _const(whole_to_int(r) if v2 else r)
        if spec.metered:
            return self._call_metered(impl, args)
        n = len(args)
        if spec.env:
            if n == 0:
                def call_env0(env: Env) -> Any:
                    r = impl(env)
                    return whole_to_int(r) if v2 and type(r) is float else r
                return call_env0
            if n == 1:
                (a,) = args

                def call_env1(env: Env) -> Any:
                    r = impl(env, a(env))
                    return whole_to_int(r) if v2 and type(r) is float else r
                return call_env1

            def call_env(env: Env) -> Any:
                r = impl(env, *[a(env) for a in args])
                return whole_to_int(r) if v2 and type(r) is float else r
            return call_env
        if n == 0:
            def call0(env: Env) -> Any:
                r = impl()
                return whole_to_int(r) if v2 and type(r) is float else r
            return call0
        if n == 1:
            (a,) = args

            def call1(env: Env) -> Any:
                r = impl(a(env))
                return whole_to_int(r) if v2 and type(r) is float else r
            return call1
        if n == 2:
            a, b = args

            def call2(env: Env) -> Any:
                r = impl(a(env), b(env))
                return whole_to_int(r) if v2 and type(r) is float else r
            return call2

        def call(env: Env) -> Any:
            r = impl(*[a(env) for a in args])
            return whole_to_int(r) if v2 and type(r) is float else r
        return call

    def _call_metered(self, impl: Callable[..., Any], args: list[Fn]) -> Fn:
        """A function that takes the evaluation's meter first (string, regexp, encoding functions)."""
        v2 = self.v2
        if len(args) == 1:
            (a,) = args

            def call_metered1(env: Env) -> Any:
                r = impl(env.meter, a(env))
                return whole_to_int(r) if v2 and type(r) is float else r
            return call_metered1
        if len(args) == 2:
            a, b = args

            def call_metered2(env: Env) -> Any:
                r = impl(env.meter, a(env), b(env))
                return whole_to_int(r) if v2 and type(r) is float else r
            return call_metered2

        def call_metered(env: Env) -> Any:
            r = impl(env.meter, *[a(env) for a in args])
            return whole_to_int(r) if v2 and type(r) is float else r
        return call_metered

    def _get_or_default(self, node: ast.Call) -> Fn:
        """``get_or_default(expr, default)``: the default when expr is Undefined, Null, or fails."""
        value = self.expr(node.args[0])
        default = self.expr(node.args[1])

        def get_or_default(env: Env) -> Any:
            try:
                v = value(env)
            except SqlLimitError:
                raise  # the evaluation is over budget: nothing may carry on
            except SqlRuntimeError:
                v = UNDEFINED
            return default(env) if v is UNDEFINED or v is None else v
        return get_or_default

    # -- SELECT output ----------------------------------------------------------------------------

    def projection(self, node: ast.Select) -> Fn:
        """The closure that builds a SELECT's output for the current row."""
        if node.value:
            item = node.items[0]
            return self.expr(item.expr) if item.expr is not None else self._Star(ast.Star(item.pos))
        steps: list[tuple[str, Any, Fn | None]] = []
        for index, item in enumerate(node.items, 1):
            if item.expr is None:
                steps.append(("*", None, None))
                continue
            fn = self.expr(item.expr)
            alias = item.alias or [_default_name(item.expr, index)]
            if len(alias) == 1:
                steps.append(("key", alias[0], fn))
            else:
                steps.append(("path", tuple(alias), fn))
        if len(steps) == 1 and steps[0][0] == "*":
            def select_star(env: Env) -> Any:
                return env.row
            select_star.is_star = True  # type: ignore[attr-defined]  # evaluate() reads the row itself
            return select_star
        if all(kind == "key" for kind, _, _ in steps):
            pairs = tuple((key, fn) for _, key, fn in steps)

            def select_keys(env: Env) -> Any:
                out = {}
                for key, fn in pairs:
                    v = fn(env)
                    if v is not UNDEFINED:
                        out[key] = v
                return out
            return select_keys
        frozen = tuple(steps)

        def select_items(env: Env) -> Any:
            out: dict[str, Any] = {}
            for kind, key, fn in frozen:
                if kind == "*":
                    row = env.row
                    if type(row) is dict:
                        out.update(row)
                    elif row != b"":
                        return row  # binary or array payloads pass through; nothing can be added to them
                    continue
                v = fn(env)  # type: ignore[misc]
                if v is UNDEFINED:
                    continue
                if kind == "key":
                    out[key] = v
                else:
                    _set_path(out, key, v)
            return out
        return select_items


def _add(left: Fn, right: Fn, normalize: bool) -> Fn:
    """``+``: numbers add; with a string on either side it concatenates, within max_value_size."""
    def add(env: Env) -> Any:
        r = op_add(left(env), right(env))
        t = type(r)
        if t is float:
            return whole_to_int(r) if normalize else r
        if t is str and len(r) > 4096:
            env.meter.size(len(r), "the string '+' builds")
        return r
    return add


def _projects_one_path(node: ast.Select) -> bool:
    """Whether a SELECT outputs, per element, one attribute path of it (``SELECT VALUE a.b``, ``SELECT a AS
    x``, ``SELECT *``)."""
    if len(node.items) != 1:
        return False
    expr = node.items[0].expr
    while isinstance(expr, ast.Member):
        expr = expr.target
    return expr is None or isinstance(expr, (ast.Attribute, ast.Star))


def _metered_compare(op: Callable[[Any, Any], Any], left: Fn, right: Fn, is_in: bool) -> Fn:
    """``=``, ``<>`` and ``IN`` compare arrays and objects item by item: that work is charged."""
    def compare(env: Env) -> Any:
        a = left(env)
        b = right(env)
        ta = type(a)
        tb = type(b)
        if ta is list or ta is dict or tb is list or tb is dict:
            _charge_compare(env.meter, a, b, is_in)
        return op(a, b)
    return compare


def _charge_compare(meter: Meter, a: Any, b: Any, is_in: bool) -> None:
    limit = meter.max_value_size
    walked = weigh(a, limit)[1]
    if is_in and type(b) is list:
        meter.charge(STEP * len(b) * walked)  # a compared with each item
    else:  # two walks to weigh them, one to compare
        meter.charge(3 * STEP * (walked + weigh(b, limit)[1]))


def _path_v2(keys: tuple[str, ...]) -> Fn:
    if len(keys) == 1:
        (k,) = keys

        def attr1(env: Env) -> Any:
            r = env.row
            if type(r) is not dict:
                return UNDEFINED
            v = r.get(k, UNDEFINED)
            return whole_to_int(v) if type(v) is float else v
        attr1.path_key = k  # type: ignore[attr-defined]
        return attr1

    def attrn(env: Env) -> Any:
        v = env.row
        for k in keys:
            if type(v) is not dict:
                return UNDEFINED
            v = v.get(k, UNDEFINED)
        return whole_to_int(v) if type(v) is float else v
    return attrn


def _walk(v: Any, path: tuple[str, ...]) -> Any:
    for k in path:
        if type(v) is not dict:
            return UNDEFINED
        v = v.get(k, UNDEFINED)
    return v


def _set_path(out: dict[str, Any], path: tuple[str, ...], v: Any) -> None:
    """``AS a.b.c`` builds nested objects; objects along the way are copied, never modified in place
    (they may belong to the payload)."""
    d = out
    for k in path[:-1]:
        nxt = d.get(k)
        nxt = dict(nxt) if type(nxt) is dict else {}
        d[k] = nxt
        d = nxt
    d[path[-1]] = v


def _default_name(expr: ast.Node, index: int) -> str:
    """Output key of an item without AS: an attribute's (last) name, a function's name, else ``_N``."""
    if isinstance(expr, ast.Attribute):
        return expr.name
    if isinstance(expr, ast.Member):
        return expr.name
    if isinstance(expr, ast.Call):
        return expr.written
    if isinstance(expr, ast.Variable):
        return expr.name
    return f"_{index}"


_ORDER = {">": operator.gt, ">=": operator.ge, "<": operator.lt, "<=": operator.le}


def _compare_const(op: str, left: Fn, c: Any) -> Fn | None:
    """Specialised closures for ``x > 30`` / ``x = 'on'``: numbers and strings compare inline."""
    tc = type(c)
    if (tc is int or tc is float) and op in _ORDER:
        slow = BINARY[op]
        cmp = _ORDER[op]
        key = getattr(left, "path_key", None)
        if key is not None:  # ``name > 30``: the attribute read inline (a whole float orders like its Int)
            def compare_key_number(env: Env) -> Any:
                r = env.row
                a = r.get(key, UNDEFINED) if type(r) is dict else UNDEFINED
                ta = type(a)
                if ta is int or ta is float:
                    return cmp(a, c)
                return slow(a, c)
            return compare_key_number

        def compare_number(env: Env) -> Any:
            a = left(env)
            ta = type(a)
            if ta is int or ta is float:
                return cmp(a, c)
            return slow(a, c)
        return compare_number
    if (tc is str or tc is int) and op in ("=", "<>"):
        slow = BINARY[op]
        equal = op == "="

        def compare_equal(env: Env) -> Any:
            a = left(env)
            if type(a) is tc:
                return (a == c) is equal
            return slow(a, c)
        return compare_equal
    return None


# -- cast ------------------------------------------------------------------------------------------

def _cast_decimal(v: Any) -> Any:
    t = type(v)
    if t is int or t is float:
        return v
    if t is bool:
        return 1.0 if v else 0.0
    if t is str:
        d = parse_decimal_string(v)
        if d is UNDEFINED:
            return UNDEFINED
        return int(v) if v.lstrip("-").isdigit() else d
    return UNDEFINED


def _cast_int(v: Any) -> Any:
    t = type(v)
    if t is int:
        return v
    if t is bool:
        return 1 if v else 0
    if t is float:
        return math.floor(v) if math.isfinite(v) else UNDEFINED
    if t is str:
        return string_to_int(v, "floor")
    return UNDEFINED


def _cast_bool(v: Any) -> Any:
    t = type(v)
    if t is bool:
        return v
    if t is int or t is float:
        return v != 0
    if t is str:
        return to_bool(v)
    return UNDEFINED


def _cast_string(v: Any) -> Any:
    return to_string(v)


_CASTS: dict[str, Callable[[Any], Any]] = {
    "string": _cast_string, "nvarchar": _cast_string, "text": _cast_string, "ntext": _cast_string,
    "varchar": _cast_string, "int": _cast_int, "integer": _cast_int, "double": _cast_decimal,
    "decimal": _cast_decimal, "bool": _cast_bool, "boolean": _cast_bool,
}


def check_version(version: str | None) -> str:
    if version is None:
        return V2016
    if version not in VERSIONS:
        raise SqlError(f"unsupported awsIotSqlVersion {version!r}; expected one of {', '.join(VERSIONS)}",
                       None, None, list(VERSIONS))
    return version
