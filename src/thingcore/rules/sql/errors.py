"""The one error the SQL package raises for statements it cannot accept."""

from __future__ import annotations


class SqlError(ValueError):
    """A statement (or substitution template) that cannot be compiled.

    ``position`` is the 0-based character offset of the offending token (None when the problem is
    not tied to one place), ``line``/``column`` are 1-based, and ``expected`` lists what would have
    been accepted there, so an API can answer like AWS's ``SqlParseException`` and a CLI can point
    at the spot.
    """

    def __init__(self, message: str, position: int | None = None, text: str | None = None,
                 expected: list[str] | None = None) -> None:
        self.message = message
        self.position = position
        self.expected = list(expected or [])
        self.line: int | None = None
        self.column: int | None = None
        if position is not None and text is not None:
            before = text[:position]
            self.line = before.count("\n") + 1
            self.column = position - (before.rfind("\n") + 1) + 1
        where = f" at line {self.line}, column {self.column}" if self.line is not None else ""
        super().__init__(f"{message}{where}")


class SqlRuntimeError(RuntimeError):
    """A statement failed while evaluating a message in a way AWS reports as a rule failure
    (not as Undefined): an external function without a local counterpart, or one that failed."""
