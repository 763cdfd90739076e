"""The admin endpoints under ``/__emulator``: counters, live settings, test fixtures.

They are outside ``/api`` and need no key: they exist for tests and
benchmarks, which read what the server saw and change faults mid-run.

    GET  /__emulator/stats      counters, tasks, accounts (see ``stats``)
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
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from batchkling.emulator.state import to_ms
from batchkling.emulator.usage import parse_time
from batchkling.model import USAGE_TASK_TYPE

if TYPE_CHECKING:
    from batchkling.emulator.app import Emulator

__all__ = ["PREFIX", "routes", "stats"]

PREFIX = "/__emulator"


class _BadRequest(Exception):
    pass


def _json(payload: Any, status: int = 200) -> Response:
    body = json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()
    return Response(body, status, media_type="application/json")


def _num(value: float | None) -> float | None:
    if value is None:
        return None
    return int(value) if float(value).is_integer() else value


def stats(emulator: Emulator) -> dict[str, Any]:
    """Counters, tasks and accounts, as ``GET /__emulator/stats`` answers.

    ``requests``: {endpoint: {status: n}} where status is an HTTP status, "lost"
    (connection dropped after a create) or "cut" (video cut off mid-body);
    ``error_codes``: {endpoint: {error_code: n}} of functional errors;
    ``faults``: {name: n}; ``request_times``: {key: [clock seconds]} of every
    API request; ``max_requests_per_second``: {key: n} over any 1 s window;
    ``max_running`` / ``running``: {key: n}; ``credits_charged`` /
    ``credits_refunded`` / ``balances``: {key: credits}.
    """
    now = emulator.clock()
    state = emulator.state
    state.advance(now)
    accounts = state.accounts.values()
    return {
        "now": now,
        "config": state.config.to_json(),
        **emulator.counters.to_json(),
        "tasks_created": len(state.tasks),
        "tasks": state.tasks_json(now),
        "running": {a.key: a.running for a in accounts},
        "max_running": {a.key: a.max_running for a in accounts},
        "credits_charged": {a.key: _num(a.charged) for a in accounts},
        "credits_refunded": {a.key: _num(a.refunded) for a in accounts},
        "balances": {a.key: _num(a.balance) for a in accounts},
    }


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


def routes(emulator: Emulator) -> list[Route]:
    """The admin routes of one emulator."""

    async def get_stats(request: Request) -> Response:
        return _json(stats(emulator))

    async def config(request: Request) -> Response:
        if request.method == "POST":
            try:
                emulator.set_config(**await _body(request))
            except (_BadRequest, ValueError) as exc:
                return _json({"error": str(exc)}, 400)
        return _json(emulator.config.to_json())

    async def reset(request: Request) -> Response:
        emulator.reset()
        return _json({"ok": True})

    async def usage(request: Request) -> Response:
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
            return _json({"error": str(exc)}, 400)
        record = emulator.state.add_charge(key, float(cost), task_id, ms, task_type)
        return _json({"key": key, **record.to_api()})

    async def balance(request: Request) -> Response:
        try:
            body = await _body(request)
            key = _key(emulator, body)
            value = body.get("balance")
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, (int, float))
            ):
                raise _BadRequest("balance must be a number or null")
        except _BadRequest as exc:
            return _json({"error": str(exc)}, 400)
        emulator.state.set_balance(key, None if value is None else float(value))
        return _json({"key": key, "balance": _num(emulator.state.account(key).balance)})

    return [
        Route(PREFIX + "/stats", get_stats, methods=["GET"]),
        Route(PREFIX + "/config", config, methods=["GET", "POST"]),
        Route(PREFIX + "/reset", reset, methods=["POST"]),
        Route(PREFIX + "/usage", usage, methods=["POST"]),
        Route(PREFIX + "/balance", balance, methods=["POST"]),
    ]
