"""The admin routes under ``/__emulator``: counters, live settings, test fixtures.

They are outside ``/api`` and need no key: they exist for tests and
benchmarks, which read what the server saw and change faults mid-run.

    GET  /__emulator/stats      counters, tasks, accounts (see ``Emulator.stats``)
    GET  /__emulator/config     the settings in force
    POST /__emulator/config     {"field": value, ...}: change settings now
    POST /__emulator/reset      forget tasks, records, accounts and counters
    POST /__emulator/usage      {"key", "cost_credits", "task_id", "create_time", "task_type"}:
                                add a charge the client never saw (an orphan)
    POST /__emulator/balance    {"key", "balance"}: set one key's balance (null: unlimited)
"""

from __future__ import annotations

import json
import uuid
from functools import partial
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from batchkling.emulator.responses import json_response
from batchkling.emulator.service import ADMIN_PREFIX, Emulator
from batchkling.emulator.state import to_ms
from batchkling.emulator.usage import api_number, parse_time
from batchkling.model import USAGE_TASK_TYPE

__all__ = ["routes"]


class _BadRequest(Exception):
    pass


def routes(emulator: Emulator) -> list[Route]:
    """The admin routes of one emulator."""
    return [
        Route(ADMIN_PREFIX + "/stats", partial(_stats, emulator), methods=["GET"]),
        Route(ADMIN_PREFIX + "/config", partial(_config, emulator), methods=["GET", "POST"]),
        Route(ADMIN_PREFIX + "/reset", partial(_reset, emulator), methods=["POST"]),
        Route(ADMIN_PREFIX + "/usage", partial(_usage, emulator), methods=["POST"]),
        Route(ADMIN_PREFIX + "/balance", partial(_balance, emulator), methods=["POST"]),
    ]


async def _body(request: Request) -> dict[str, Any]:
    raw = await request.body()
    try:
        body = json.loads(raw) if raw.strip() else {}
    except ValueError:
        raise _BadRequest("body must be JSON") from None
    if not isinstance(body, dict):
        raise _BadRequest("body must be a JSON object")
    return body


def _key(emulator: Emulator, body: dict[str, Any]) -> str:
    key = body.get("key")
    keys = emulator.config.api_keys
    if key is None and len(keys) == 1:
        return keys[0]
    if not isinstance(key, str) or not key:
        raise _BadRequest("key is required (the API key whose account to change)")
    return key


def _bad(exc: Exception) -> Response:
    return json_response({"error": str(exc)}, 400)


async def _stats(emulator: Emulator, request: Request) -> Response:
    return json_response(emulator.stats())


async def _config(emulator: Emulator, request: Request) -> Response:
    if request.method == "POST":
        try:
            emulator.set_config(**await _body(request))
        except (_BadRequest, ValueError) as exc:
            return _bad(exc)
    return json_response(emulator.config.to_json())


async def _reset(emulator: Emulator, request: Request) -> Response:
    emulator.reset()
    return json_response({"ok": True})


async def _usage(emulator: Emulator, request: Request) -> Response:
    try:
        body = await _body(request)
        key = _key(emulator, body)
        cost = body.get("cost_credits")
        if isinstance(cost, bool) or not isinstance(cost, (int, float)):
            raise _BadRequest("cost_credits must be a number")
        task_id = body.get("task_id", str(uuid.uuid4()))
        when = body.get("create_time")
        try:
            ms = to_ms(emulator.clock()) if when is None else parse_time(str(when))
        except ValueError:
            raise _BadRequest("create_time must be an RFC 3339 time") from None
        task_type = str(body.get("task_type", USAGE_TASK_TYPE))
    except _BadRequest as exc:
        return _bad(exc)
    record = emulator.state.add_charge(key, float(cost), task_id, ms, task_type)
    return json_response({"key": key, **record.to_api()})


async def _balance(emulator: Emulator, request: Request) -> Response:
    try:
        body = await _body(request)
        key = _key(emulator, body)
        value = body.get("balance")
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
            raise _BadRequest("balance must be a number or null")
    except _BadRequest as exc:
        return _bad(exc)
    emulator.state.set_balance(key, None if value is None else float(value))
    balance = emulator.state.account(key).balance
    return json_response({"key": key, "balance": None if balance is None else api_number(balance)})
