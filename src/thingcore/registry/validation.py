"""Names and attributes as the AWS `iot` service model constrains them (botocore shapes).

Checked here, not only in the HTTP models, so every caller of the registry (CLI, rules, tests)
gets the same clear error and nothing invalid reaches storage.
"""

from __future__ import annotations

import re

from thingcore.registry.errors import InvalidRequest

_NAME = re.compile(r"[a-zA-Z0-9:_-]+")
_ATTR_NAME = re.compile(r"[a-zA-Z0-9_.,@/:#-]+")
_ATTR_VALUE = re.compile(r"[a-zA-Z0-9_.,@/:#=\[\]-]*")
_PRINTABLE = re.compile(r"[\x20-\x7e\u00a0-\U0010ffff]*")

MAX_ATTRIBUTES_UNTYPED = 3  # AWS quota: attributes of a thing without a thing type
MAX_ATTRIBUTES_TYPED = 50  # ... and with one
MAX_SEARCHABLE_ATTRIBUTES = 3
MAX_DESCRIPTION = 2028


def check_name(value: str, what: str) -> str:
    """Thing and thing type names: 1-128 of ``[a-zA-Z0-9:_-]``."""
    if not isinstance(value, str) or not 1 <= len(value) <= 128 or not _NAME.fullmatch(value):
        raise InvalidRequest(f"{what} must be 1-128 characters of a-z, A-Z, 0-9, ':', '_' and '-' (got {value!r})")
    return value


def check_attribute_name(name: str) -> str:
    if not isinstance(name, str) or not 1 <= len(name) <= 128 or not _ATTR_NAME.fullmatch(name):
        raise InvalidRequest(
            f"attribute name {name!r} must be 1-128 characters of a-z, A-Z, 0-9 and _ . , @ / : # -"
        )
    return name


def check_attribute_value(name: str, value: str) -> str:
    if not isinstance(value, str) or len(value) > 800 or not _ATTR_VALUE.fullmatch(value):
        raise InvalidRequest(
            f"value of attribute {name!r} must be at most 800 characters of a-z, A-Z, 0-9 and _ . , @ / : # = [ ] -"
        )
    return value


def check_attributes(attributes: dict[str, str]) -> dict[str, str]:
    for name, value in attributes.items():
        check_attribute_name(name)
        check_attribute_value(name, value)
    return attributes


def check_attribute_count(attributes: dict[str, str], typed: bool) -> None:
    limit = MAX_ATTRIBUTES_TYPED if typed else MAX_ATTRIBUTES_UNTYPED
    if len(attributes) > limit:
        kind = "with a thing type" if typed else "without a thing type"
        raise InvalidRequest(f"a thing {kind} can have at most {limit} attributes (got {len(attributes)})")


def check_description(value: str) -> str:
    if len(value) > MAX_DESCRIPTION or not _PRINTABLE.fullmatch(value):
        raise InvalidRequest(f"thingTypeDescription must be at most {MAX_DESCRIPTION} printable characters")
    return value
