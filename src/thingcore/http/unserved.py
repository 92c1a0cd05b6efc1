"""AWS operations thingcore does not serve: named in a 501, not mistaken for a missing resource.

A request that no route serves used to get 404 ``ResourceNotFoundException``, which boto3 and the AWS
CLI report as "that thing does not exist". When its method and path are those of an operation in AWS's
``iot``, ``iot-data`` or ``iot-jobs-data`` API (the table in :mod:`thingcore.http.aws_operations`,
generated from botocore's models), the answer is ``501 NotImplementedException`` naming the operation.

Only requests that matched no served route get here (404, or 405 when a served path has other
methods), so served routes always win. The table is parsed on the first such request, not at start-up.
Where AWS uses one method and path for operations of two APIs (``GET /things/{thingName}/jobs`` is
``ListJobExecutionsForThing`` in ``iot`` and ``GetPendingJobExecutions`` in ``iot-jobs-data``), the
SigV4 signing name in the request's credential scope picks one; unsigned, both are named.
"""

from __future__ import annotations

import logging
import re
from functools import lru_cache

from starlette.requests import Request

from thingcore.broker.admission import RefusalLog
from thingcore.http.aws_operations import OPERATIONS

log = logging.getLogger("thingcore.http")
_refusals = RefusalLog(logger=log)
_SCOPE = re.compile(r"Credential=[^/,\s]+/\d{8}/[^/,\s]+/([^/,\s]+)/aws4_request")

ERROR_TYPE = "NotImplementedException"

# one template: (service, signing name, operation, segments); a segment is a literal, "" for a label, or
# "+" for a greedy label (the rest of the path, at least one segment)
Template = tuple[str, str, str, tuple[str, ...]]


@lru_cache(maxsize=1)
def _templates() -> dict[str, list[Template]]:
    """Parsed once, on the first unserved request: by method."""
    by_method: dict[str, list[Template]] = {}
    for (service, signing), rows in OPERATIONS.items():
        for row in rows.split("\n"):
            if not row:
                continue
            method, path, name = row.split(" ")
            segments = tuple("+" if s.endswith("+}") else "" if s.startswith("{") else s
                             for s in path.strip("/").split("/"))
            by_method.setdefault(method, []).append((service, signing, name, segments))
    return by_method


def _matches(segments: tuple[str, ...], parts: list[str]) -> int:
    """The number of literal segments that matched, or -1."""
    literal = 0
    for i, seg in enumerate(segments):
        if seg == "+":
            return literal if len(parts) > i and all(parts[i:]) else -1
        if i >= len(parts) or not parts[i]:
            return -1
        if seg:
            if seg != parts[i]:
                return -1
            literal += 1
    return literal if len(parts) == len(segments) else -1


def operations_for(method: str, path: str, signing: str | None = None) -> list[tuple[str, str]]:
    """(service, operation) of the AWS operations whose method and path template match, most specific first."""
    parts = path.strip("/").split("/")
    best = -1
    found: list[Template] = []
    for template in _templates().get(method.upper(), ()):
        score = _matches(template[3], parts)
        if score > best:
            best, found = score, [template]
        elif score == best and score >= 0:
            found.append(template)
    if signing and len(found) > 1:
        found = [t for t in found if t[1] == signing] or found
    return [(t[0], t[2]) for t in found]


def signing_name(request: Request) -> str | None:
    """The service named in a SigV4 credential scope (header or presigned query), if any."""
    credential = request.headers.get("authorization") or ""
    if not credential:
        query = request.query_params.get("X-Amz-Credential")
        credential = f"Credential={query}" if query else ""
    found = _SCOPE.search(credential)
    return found.group(1) if found else None


def unserved_message(request: Request) -> str | None:
    """The 501's message for a request naming an AWS operation thingcore does not serve (logged), else None."""
    ops = operations_for(request.method, request.url.path, signing_name(request))
    if not ops:
        return None
    if len({op for _service, op in ops}) == 1:
        named = ops[0][1]
    else:
        named = " or ".join(f"{op} ({service})" for service, op in ops)
    message = f"The operation {named} is not implemented by thingcore"
    client = request.client
    _refusals("%s %s from %s: %s", request.method, request.url.path[:200], client.host if client else "?",
              message)
    return message


__all__ = ["ERROR_TYPE", "operations_for", "signing_name", "unserved_message"]
