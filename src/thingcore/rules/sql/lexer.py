"""Tokens of AWS IoT SQL. Hand-written: one pass over the text, positions kept for error messages."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .errors import SqlError

# Reserved words. VALUE and SET are contextual (only right after SELECT / at the very start), so
# payload attributes called ``value`` or ``set`` keep working.
KEYWORDS = frozenset({
    "SELECT", "FROM", "WHERE", "AS", "AND", "OR", "NOT", "IN", "CASE", "WHEN", "THEN", "ELSE", "END",
    "TRUE", "FALSE", "NULL",
})

# Token kinds
IDENT = "identifier"
KEYWORD = "keyword"
NUMBER = "number"
STRING = "string"
VARIABLE = "variable"
OP = "operator"
EOF = "end of statement"

_TWO_CHAR_OPS = {"<>", "<=", ">=", "!=", "==", "||"}
_ONE_CHAR_OPS = set("()[]{},.*+-/%=<>:")
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "b": "\b", "f": "\f", "/": "/", "\\": "\\", "'": "'", '"': '"'}


@dataclass(slots=True)
class Token:
    kind: str
    value: Any  # keyword in upper case, identifier as written, number, unescaped string, operator text
    pos: int
    end: int

    def describe(self) -> str:
        if self.kind == EOF:
            return "the end of the statement"
        if self.kind == STRING:
            return f"string '{self.value}'"
        if self.kind == KEYWORD:
            return f"keyword {self.value}"
        if self.kind == OP:
            return f"'{self.value}'"
        if self.kind == VARIABLE:
            return f"variable @{self.value}"
        return f"{self.kind} '{self.value}'"


def _is_ident_start(c: str) -> bool:
    return c.isalpha() or c == "_"


def _is_ident_char(c: str) -> bool:
    return c.isalnum() or c == "_"


class Lexer:
    """Produces tokens on demand from ``text`` starting at ``pos`` (templates lex an expression in
    the middle of a longer string and stop at its closing brace)."""

    def __init__(self, text: str, pos: int = 0) -> None:
        self.text = text
        self.pos = pos

    def error(self, message: str, pos: int, expected: list[str] | None = None) -> SqlError:
        return SqlError(message, pos, self.text, expected)

    def next(self) -> Token:
        text = self.text
        n = len(text)
        i = self.pos
        while i < n and text[i].isspace():
            i += 1
        if i >= n:
            self.pos = i
            return Token(EOF, None, i, i)
        c = text[i]
        start = i
        if _is_ident_start(c):
            i += 1
            while i < n and _is_ident_char(text[i]):
                i += 1
            word = text[start:i]
            self.pos = i
            upper = word.upper()
            if upper in KEYWORDS:
                return Token(KEYWORD, upper, start, i)
            return Token(IDENT, word, start, i)
        if c.isdigit() or (c == "." and i + 1 < n and text[i + 1].isdigit()):
            return self._number(start)
        if c == "'" or c == '"':
            return self._string(start)
        if c == "@":
            i += 1
            while i < n and _is_ident_char(text[i]):
                i += 1
            name = text[start + 1:i]
            if not name or not _is_ident_start(name[0]):
                raise self.error("a variable name must follow '@' (letters, digits, underscore)", start,
                                 ["@name"])
            self.pos = i
            return Token(VARIABLE, name, start, i)
        two = text[i:i + 2]
        if two in _TWO_CHAR_OPS:
            self.pos = i + 2
            return Token(OP, two, start, i + 2)
        if c in _ONE_CHAR_OPS:
            self.pos = i + 1
            return Token(OP, c, start, i + 1)
        raise self.error(f"unexpected character {c!r}", start)

    def _number(self, start: int) -> Token:
        text = self.text
        n = len(text)
        i = start
        while i < n and text[i].isdigit():
            i += 1
        is_decimal = False
        if i < n and text[i] == "." and i + 1 < n and text[i + 1].isdigit():
            is_decimal = True
            i += 1
            while i < n and text[i].isdigit():
                i += 1
        if i < n and text[i] in "eE":
            j = i + 1
            if j < n and text[j] in "+-":
                j += 1
            if j < n and text[j].isdigit():
                is_decimal = True
                i = j
                while i < n and text[i].isdigit():
                    i += 1
        if i < n and _is_ident_char(text[i]):
            raise self.error(f"malformed number {text[start:i + 1]!r}", start)
        literal = text[start:i]
        self.pos = i
        value: Any = float(literal) if is_decimal else int(literal)
        return Token(NUMBER, value, start, i)

    def _string(self, start: int) -> Token:
        text = self.text
        n = len(text)
        quote = text[start]
        i = start + 1
        out: list[str] = []
        while True:
            if i >= n:
                raise self.error(f"unterminated string (missing closing {quote})", start, [quote])
            c = text[i]
            if c == quote:
                if i + 1 < n and text[i + 1] == quote:  # SQL-style doubled quote
                    out.append(quote)
                    i += 2
                    continue
                i += 1
                break
            if c == "\\" and i + 1 < n:
                e = text[i + 1]
                if e in _ESCAPES:
                    out.append(_ESCAPES[e])
                    i += 2
                    continue
                if e == "u" and i + 6 <= n:
                    digits = text[i + 2:i + 6]
                    try:
                        out.append(chr(int(digits, 16)))
                        i += 6
                        continue
                    except ValueError:
                        pass
                # Unknown escapes stay as written, so regular expressions such as '\d+' keep working.
                out.append(c)
                i += 1
                continue
            out.append(c)
            i += 1
        self.pos = i
        return Token(STRING, "".join(out), start, i)
