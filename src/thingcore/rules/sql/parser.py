"""Recursive-descent parser for AWS IoT SQL statements and ``${...}`` template expressions.

Precedence, loosest first (AWS documents none; this is conventional SQL): OR, AND, NOT,
comparisons (= <> < <= > >= IN), + -, * / %, unary - +, member access ``a.b``.
"""

from __future__ import annotations

from collections.abc import Callable

from . import ast
from .errors import SqlError
from .lexer import EOF, IDENT, KEYWORD, NUMBER, OP, STRING, VARIABLE, Lexer, Token

CAST_TYPES = ("string", "nvarchar", "text", "ntext", "varchar", "int", "integer", "double", "decimal", "bool",
              "boolean")
_COMPARISONS = {"=", "<>", "<", "<=", ">", ">="}
MAX_NESTING = 64  # parenthesised / argument levels; keeps parsing and evaluation far from Python's stack limit
_HINTS = {
    "!=": "'!=' is not AWS IoT SQL; use '<>'",
    "==": "'==' is not AWS IoT SQL; use '='",
    "||": "'||' is not AWS IoT SQL; concatenate with '+' or concat()",
}


class Parser:
    def __init__(self, text: str, pos: int = 0) -> None:
        self.text = text
        self.lexer = Lexer(text, pos)
        self.tok: Token = self.lexer.next()
        self._peeked: Token | None = None
        self.depth = 0

    # -- token helpers ----------------------------------------------------------------------------

    def advance(self) -> Token:
        t = self.tok
        if self._peeked is not None:
            self.tok = self._peeked
            self._peeked = None
        else:
            self.tok = self.lexer.next()
        return t

    def peek(self) -> Token:
        if self._peeked is None:
            self._peeked = self.lexer.next()
        return self._peeked

    def is_op(self, op: str) -> bool:
        return self.tok.kind == OP and self.tok.value == op

    def is_kw(self, kw: str) -> bool:
        return self.tok.kind == KEYWORD and self.tok.value == kw

    def fail(self, expected: list[str], message: str | None = None, tok: Token | None = None) -> SqlError:
        tok = tok or self.tok
        if message is None:
            message = f"expected {_or_list(expected)} but found {tok.describe()}"
        return SqlError(message, tok.pos, self.text, expected)

    def expect_op(self, op: str) -> Token:
        if not self.is_op(op):
            raise self.fail([f"'{op}'"])
        return self.advance()

    def expect_kw(self, kw: str) -> Token:
        if not self.is_kw(kw):
            raise self.fail([kw])
        return self.advance()

    # -- statements -------------------------------------------------------------------------------

    def statement(self) -> ast.Select:
        start = self.tok.pos
        assignments: list[tuple[str, ast.Node, int]] = []
        if self.tok.kind == IDENT and self.tok.value.upper() == "SET":
            self.advance()
            assignments = self._assignments()
        if not self.is_kw("SELECT"):
            raise self.fail(["SELECT"] if assignments else ["SELECT", "SET"])
        select = self._select(nested=False)
        select.pos = start
        select.assignments = assignments
        if self.tok.kind != EOF:
            if select.where is not None or select.topic_filter is not None:
                expected = ["WHERE", "the end of the statement"] if select.where is None else \
                    ["an operator", "the end of the statement"]
            else:
                expected = ["','", "AS", "FROM", "WHERE", "the end of the statement"]
            raise self.fail(expected)
        return select

    def _assignments(self) -> list[tuple[str, ast.Node, int]]:
        out: list[tuple[str, ast.Node, int]] = []
        while True:
            if self.tok.kind != VARIABLE:
                raise self.fail(["@variable"])
            var = self.advance()
            self.expect_op("=")
            out.append((var.value, self.expression(), var.pos))
            if not self.is_op(","):
                return out
            self.advance()

    def _select(self, nested: bool) -> ast.Select:
        pos = self.expect_kw("SELECT").pos
        value = False
        if self.tok.kind == IDENT and self.tok.value.upper() == "VALUE" and _starts_value_expr(self.peek()):
            self.advance()
            value = True
        items = self._select_items(value)
        select = ast.Select(pos, value, items)
        if nested:
            if not self.is_kw("FROM"):
                raise self.fail(["FROM"], "a nested SELECT needs FROM (an attribute, or * for the whole payload)")
            self.advance()
            select.source = self.unary()
        elif self.is_kw("FROM"):
            self.advance()
            tok = self.tok
            if tok.kind != STRING:
                raise self.fail(["a quoted topic filter"],
                                f"the FROM topic filter must be quoted, e.g. FROM 'a/b', but found {tok.describe()}")
            self.advance()
            select.topic_filter = tok.value
            select.topic_pos = tok.pos
        if self.is_kw("WHERE"):
            self.advance()
            select.where = self.expression()
        return select

    def _select_items(self, value: bool) -> list[ast.SelectItem]:
        items: list[ast.SelectItem] = []
        while True:
            pos = self.tok.pos
            if self.is_op("*") and not (self.peek().kind == OP and self.peek().value == "."):
                self.advance()
                items.append(ast.SelectItem(pos, None))
            else:
                expr = self.expression()
                alias = None
                if self.is_kw("AS"):
                    if value:
                        raise self.fail([], "SELECT VALUE outputs a bare value; it takes no AS alias")
                    self.advance()
                    alias = self._alias()
                items.append(ast.SelectItem(pos, expr, alias))
            if not self.is_op(","):
                break
            if value:
                raise self.fail([], "SELECT VALUE takes a single expression")
            self.advance()
        return items

    def _alias(self) -> list[str]:
        parts = [self._name("an alias")]
        while self.is_op("."):
            self.advance()
            parts.append(self._name("an alias part"))
        return parts

    def _name(self, what: str) -> str:
        tok = self.tok
        if tok.kind == IDENT or (tok.kind == KEYWORD and tok.value not in ("FROM", "WHERE")):
            self.advance()
            return tok.value if tok.kind == IDENT else self.text[tok.pos:tok.end]
        raise self.fail([what])

    # -- expressions ------------------------------------------------------------------------------

    def expression(self) -> ast.Node:
        self.depth += 1
        if self.depth > MAX_NESTING:
            raise self.fail([], f"the statement nests expressions more than {MAX_NESTING} levels deep")
        try:
            return self._or()
        finally:
            self.depth -= 1

    def _nested(self, parse: Callable[[], ast.Node]) -> ast.Node:
        """A prefix operator's operand (``- - x``, ``NOT NOT x``): counted like a parenthesised level."""
        self.depth += 1
        if self.depth > MAX_NESTING:
            raise self.fail([], f"the statement nests expressions more than {MAX_NESTING} levels deep")
        try:
            return parse()
        finally:
            self.depth -= 1

    def _or(self) -> ast.Node:
        left = self._and()
        while self.is_kw("OR"):
            pos = self.advance().pos
            left = ast.Binary(pos, "OR", left, self._and())
        return left

    def _and(self) -> ast.Node:
        left = self._not()
        while self.is_kw("AND"):
            pos = self.advance().pos
            left = ast.Binary(pos, "AND", left, self._not())
        return left

    def _not(self) -> ast.Node:
        if self.is_kw("NOT"):
            pos = self.advance().pos
            return ast.Unary(pos, "NOT", self._nested(self._not))
        return self._comparison()

    def _comparison(self) -> ast.Node:
        left = self._additive()
        while True:
            tok = self.tok
            if tok.kind == OP and tok.value in _COMPARISONS:
                self.advance()
                left = ast.Binary(tok.pos, tok.value, left, self._additive())
            elif tok.kind == KEYWORD and tok.value == "IN":
                self.advance()
                left = ast.Binary(tok.pos, "IN", left, self._additive())
            elif tok.kind == OP and tok.value in _HINTS:
                raise self.fail([], _HINTS[tok.value])
            else:
                return left

    def _additive(self) -> ast.Node:
        left = self._multiplicative()
        while self.tok.kind == OP and self.tok.value in ("+", "-"):
            tok = self.advance()
            left = ast.Binary(tok.pos, tok.value, left, self._multiplicative())
        return left

    def _multiplicative(self) -> ast.Node:
        left = self.unary()
        while self.tok.kind == OP and self.tok.value in ("*", "/", "%"):
            tok = self.advance()
            left = ast.Binary(tok.pos, tok.value, left, self.unary())
        return left

    def unary(self) -> ast.Node:
        if self.tok.kind == OP and self.tok.value in ("-", "+"):
            tok = self.advance()
            operand = self._nested(self.unary)
            if isinstance(operand, ast.Literal) and type(operand.value) in (int, float):
                return ast.Literal(tok.pos, -operand.value if tok.value == "-" else operand.value)
            return ast.Unary(tok.pos, tok.value, operand)
        return self._postfix()

    def _postfix(self) -> ast.Node:
        node = self._primary()
        while True:
            if self.is_op("."):
                self.advance()
                name = self._member_name()
                node = ast.Member(node.pos, node, name)
            elif self.is_op("["):
                raise self.fail([], "bracket indexing is not AWS IoT SQL; use get(array, index)")
            elif self.tok.kind == NUMBER and self.text[self.tok.pos] == ".":
                raise self.fail([], "an attribute name cannot start with a digit; use get(object, \"name\")")
            else:
                return node

    def _member_name(self) -> str:
        tok = self.tok
        if tok.kind == IDENT:
            self.advance()
            return tok.value
        if tok.kind == KEYWORD:
            self.advance()
            return self.text[tok.pos:tok.end]
        raise self.fail(["an attribute name"],
                        f"expected an attribute name after '.' but found {tok.describe()} "
                        "(names with '-' or leading digits need get(object, \"name\"))")

    def _primary(self) -> ast.Node:
        tok = self.tok
        kind = tok.kind
        if kind in (NUMBER, STRING):
            self.advance()
            return ast.Literal(tok.pos, tok.value)
        if kind == IDENT:
            self.advance()
            if self.is_op("("):
                return self._call(tok)
            return ast.Attribute(tok.pos, tok.value)
        if kind == VARIABLE:
            self.advance()
            return ast.Variable(tok.pos, tok.value)
        if kind == KEYWORD:
            if tok.value in ("TRUE", "FALSE"):
                self.advance()
                return ast.Literal(tok.pos, tok.value == "TRUE")
            if tok.value == "NULL":
                self.advance()
                return ast.Literal(tok.pos, None)
            if tok.value == "CASE":
                return self._case()
            if tok.value == "SELECT":
                return self._select(nested=True)
        if kind == OP:
            if tok.value == "*":
                self.advance()
                return ast.Star(tok.pos)
            if tok.value == "(":
                self.advance()
                inner = self._select(nested=True) if self.is_kw("SELECT") else self.expression()
                self.expect_op(")")
                return inner
            if tok.value == "{":
                return self._object()
            if tok.value == "[":
                return self._array()
        raise self.fail(["an expression"])

    def _call(self, name_tok: Token) -> ast.Node:
        name = name_tok.value.lower()
        self.expect_op("(")
        if name == "cast":
            value = self.expression()
            self.expect_kw("AS")
            type_tok = self.tok
            if type_tok.kind not in (IDENT, KEYWORD) or self.text[type_tok.pos:type_tok.end].lower() not in CAST_TYPES:
                raise self.fail([t.capitalize() for t in CAST_TYPES],
                                f"unknown cast type {type_tok.describe()}; expected one of "
                                f"{', '.join(t.capitalize() for t in CAST_TYPES)}")
            self.advance()
            self.expect_op(")")
            return ast.Cast(name_tok.pos, value, self.text[type_tok.pos:type_tok.end].lower(), type_tok.pos)
        args: list[ast.Node] = []
        if not self.is_op(")"):
            while True:
                args.append(self._select(nested=True) if self.is_kw("SELECT") else self.expression())
                if self.is_op(","):
                    self.advance()
                    continue
                if not self.is_op(")"):
                    raise self.fail(["','", "')'"])
                break
        self.advance()
        return ast.Call(name_tok.pos, name, args, name_tok.value)

    def _case(self) -> ast.Node:
        pos = self.advance().pos
        if self.is_kw("WHEN"):
            raise self.fail([], "AWS IoT SQL supports only the simple CASE form: CASE value WHEN constant THEN "
                                "result ... END (compare with WHEN values, not conditions)")
        subject = self.expression()
        whens: list[tuple[ast.Node, ast.Node]] = []
        while self.is_kw("WHEN"):
            self.advance()
            test = self.expression()
            self.expect_kw("THEN")
            whens.append((test, self.expression()))
        if not whens:
            raise self.fail(["WHEN"], f"CASE needs at least one WHEN clause but found {self.tok.describe()}")
        default = None
        if self.is_kw("ELSE"):
            self.advance()
            default = self.expression()
        if not self.is_kw("END"):
            raise self.fail(["WHEN", "ELSE", "END"])
        self.advance()
        return ast.Case(pos, subject, whens, default)

    def _object(self) -> ast.Node:
        pos = self.advance().pos
        items: list[tuple[str, ast.Node]] = []
        if not self.is_op("}"):
            while True:
                key = self.tok
                if key.kind != STRING:
                    raise self.fail(["a quoted key"], f"object literal keys must be quoted strings, found "
                                                      f"{key.describe()}")
                self.advance()
                self.expect_op(":")
                items.append((key.value, self.expression()))
                if self.is_op(","):
                    self.advance()
                    continue
                if not self.is_op("}"):
                    raise self.fail(["','", "'}'"])
                break
        self.advance()
        return ast.ObjectLiteral(pos, items)

    def _array(self) -> ast.Node:
        pos = self.advance().pos
        items: list[ast.Node] = []
        if not self.is_op("]"):
            while True:
                items.append(self.expression())
                if self.is_op(","):
                    self.advance()
                    continue
                if not self.is_op("]"):
                    raise self.fail(["','", "']'"])
                break
        self.advance()
        return ast.ArrayLiteral(pos, items)


def _starts_value_expr(tok: Token) -> bool:
    """Whether the token after ``SELECT value`` begins an expression, making ``value`` the keyword."""
    if tok.kind in (IDENT, NUMBER, STRING, VARIABLE):
        return True
    if tok.kind == KEYWORD:
        return tok.value in ("TRUE", "FALSE", "NULL", "NOT", "CASE", "SELECT")
    if tok.kind == OP:
        return tok.value in ("(", "[", "{", "*")
    return False


def _or_list(items: list[str]) -> str:
    if not items:
        return "something else"
    if len(items) == 1:
        return items[0]
    return ", ".join(items[:-1]) + " or " + items[-1]


def parse_statement(text: str) -> ast.Select:
    if not text or not text.strip():
        raise SqlError("empty SQL statement; expected SELECT", 0, text or "", ["SELECT"])
    return Parser(text).statement()


def parse_template_expression(text: str, pos: int) -> tuple[ast.Node, int]:
    """Parse the expression of a ``${...}`` starting at ``pos``; return it and the offset after ``}``."""
    parser = Parser(text, pos)
    if parser.is_op("}"):
        raise parser.fail(["an expression"], "empty substitution template ${}")
    node = parser.expression()
    if not parser.is_op("}"):
        raise parser.fail(["'}'"])
    return node, parser.tok.end
