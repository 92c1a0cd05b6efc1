"""AWS IoT SQL: parse a rule's statement once, compile it to closures, evaluate it per message.

Pure code (no I/O, no asyncio). The rules engine uses::

    q = compile_sql("SELECT temp, device FROM 'sensors/+' WHERE temp > 30", "2016-03-23")
    r = q.evaluate(MessageContext(topic="sensors/1", payload=b'{"temp": 31, "device": "d1"}'))
    r.matched, r.output            # True, {'temp': 31, 'device': 'd1'}
    output_to_bytes(r.output)      # b'{"temp":31,"device":"d1"}'

and ``compile_template("${topic()}/out").render(ctx, r.output)`` for action parameters.
See docs/sql.md for the dialect as implemented.
"""

from __future__ import annotations

from .context import MessageContext, QueryResult
from .errors import SqlError, SqlRuntimeError
from .functions import FUNCTIONS, UNSUPPORTED_FUNCTIONS
from .query import CompiledQuery, compile_sql
from .template import Template, compile_template
from .values import UNDEFINED, output_to_bytes

__all__ = [
    "FUNCTIONS",
    "UNDEFINED",
    "UNSUPPORTED_FUNCTIONS",
    "CompiledQuery",
    "MessageContext",
    "QueryResult",
    "SqlError",
    "SqlRuntimeError",
    "Template",
    "compile_sql",
    "compile_template",
    "output_to_bytes",
]
