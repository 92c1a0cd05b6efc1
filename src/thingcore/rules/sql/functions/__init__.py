"""Every built-in function of AWS IoT SQL, registered by name in :data:`FUNCTIONS`.

Importing this package imports each module, and each module registers its functions.
"""

from __future__ import annotations

from . import documents, encoding, external, message, numeric, regexp, strings, timefmt  # noqa: F401
from .external import UNSUPPORTED_FUNCTIONS, UNSUPPORTED_REASONS
from .registry import FUNCTIONS, FunctionSpec

__all__ = ["FUNCTIONS", "UNSUPPORTED_FUNCTIONS", "UNSUPPORTED_REASONS", "FunctionSpec"]
