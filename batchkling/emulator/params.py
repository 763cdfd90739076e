"""The parameters of an API request, read as the reference describes them.

A bad value is a ``Refused`` with the reference's ``errorMsg`` naming it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from batchkling.emulator.state import INVALID_INPUT, Refused
from batchkling.emulator.usage import DEFAULT_LIMIT, MAX_LIMIT, parse_time

__all__ = ["page_limit", "request_params", "time_param"]


def request_params(method: str, body: bytes, query: Mapping[str, str]) -> dict[str, Any]:
    """Query parameters, overridden by the fields of a JSON body if there is one."""
    params: dict[str, Any] = dict(query)
    if method == "POST" and body.strip():
        try:
            fields = json.loads(body)
        except ValueError:
            raise Refused(INVALID_INPUT, "request body must be JSON") from None
        if not isinstance(fields, dict):
            raise Refused(INVALID_INPUT, "request body must be a JSON object")
        params.update(fields)
    return params


def page_limit(value: Any) -> int:
    """The ``limit`` of a usage page: the default when absent, at most ``MAX_LIMIT``."""
    if value is None or value == "":
        return DEFAULT_LIMIT
    try:
        limit = int(value)
    except (TypeError, ValueError):
        limit = 0
    if isinstance(value, (bool, float)) or limit < 1:
        raise Refused(INVALID_INPUT, f"limit must be an integer from 1 to {MAX_LIMIT}")
    return min(limit, MAX_LIMIT)


def time_param(params: Mapping[str, Any], name: str) -> int | None:
    """The RFC 3339 time parameter ``name`` in epoch milliseconds, or None when absent."""
    value = params.get(name)
    if value is None or value == "":
        return None
    try:
        return parse_time(str(value))
    except ValueError:
        raise Refused(INVALID_INPUT, f"{name} must be an RFC 3339 time") from None
