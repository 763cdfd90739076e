"""The HTTP face of the emulator: the sjinn endpoints, video files and sample frames.

Every API request goes through one path (``Emulator.api``): count it, maybe
inject a server error, check the key, apply the rate limit, process finished
tasks, run the endpoint, maybe hold the answer back. The business rules live in
``state``; this module only turns them into the reference's JSON wrapper:

    {"success": true, "errorMsg": "", "error_code": 0, "data": {...}}
    {"success": false, "errorMsg": "image is required", "error_code": 400}
"""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

import anyio
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from batchkling.emulator import admin, files
from batchkling.emulator.assets import sample_video
from batchkling.emulator.config import EmulatorConfig
from batchkling.emulator.faults import Faults, RateLimiter, UrlSigner, retry_after_header
from batchkling.emulator.media import Blob
from batchkling.emulator.persist import FileJournal, read_journal
from batchkling.emulator.state import INVALID_INPUT, INVALID_KEY, EmulatorState, Refused, Task
from batchkling.emulator.stats import Counters
from batchkling.emulator.usage import (
    DEFAULT_LIMIT,
    MAX_LIMIT,
    decode_cursor,
    format_time,
    parse_time,
)
from batchkling.emulator.wire import DroppingApp, SilentResponse
from batchkling.model import TOOL_TYPE

__all__ = ["API_PREFIX", "FRAMES_PATH", "Clock", "Emulator", "EmulatorApp", "create_app"]

API_PREFIX = "/api/un-api/"
FRAMES_PATH = admin.PREFIX + "/frames/{name}"
FRAMES_PATH = admin.PREFIX + "/frames/{name}"
Clock = Callable[[], float]
Handler = Callable[[Request, str, float], Awaitable[dict[str, Any]]]
_JSON = "application/json"
_DAY = 86400.0


class _Lose(Exception):
    """Raised by a handler after it did its work, to lose the answer."""


def _json(payload: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    body = json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()
    return Response(body, status, headers, _JSON)


def _ok(data: dict[str, Any], error_msg: str = "") -> Response:
    return _json({"success": True, "errorMsg": error_msg, "error_code": 0, "data": data})


class _Answer(dict[str, Any]):
    """An endpoint's ``data`` that also sets the wrapper's ``errorMsg`` (a failed task's reason)."""

    error_msg = ""


def _num(value: float) -> float:
    return int(value) if float(value).is_integer() else value


def _bearer(request: Request) -> str:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


async def _params(request: Request) -> dict[str, Any]:
    """Query parameters, overridden by the fields of a JSON body if there is one."""
    params: dict[str, Any] = dict(request.query_params)
    if request.method == "POST":
        raw = await request.body()
        if raw.strip():
            try:
                body = json.loads(raw)
            except ValueError:
                raise Refused(INVALID_INPUT, "request body must be JSON") from None
            if not isinstance(body, dict):
                raise Refused(INVALID_INPUT, "request body must be a JSON object")
            params.update(body)
    return params


def _server_error(status: int) -> Response:
    # What a proxy in front of an API sends: JSON from the app, HTML from the gateway.
    if status == 500:
        return _json(
            {"success": False, "errorMsg": "internal server error", "error_code": 500}, 500
        )
    html = f"<html><body><h1>{status} Bad Gateway</h1></body></html>"
    if status == 503:
        html = "<html><body><h1>503 Service Temporarily Unavailable</h1></body></html>"
    return Response(html, status, media_type="text/html")


class Emulator:
    """The state behind one app: settings, tasks, counters, fault generators, clock."""

    def __init__(self, config: EmulatorConfig, clock: Clock) -> None:
        journal = FileJournal(config.state_file) if config.state_file else None
        self.state = EmulatorState(config, journal=journal)
        if config.state_file:
            self.state.replay(read_journal(config.state_file))
        self.clock = clock
        self.faults = Faults(config.seed)
        self.limiter = RateLimiter()
        self.counters = Counters()
        self.signer = UrlSigner()
        self.started_at = clock()
        self.video_blob = Blob.of(sample_video(), "video/mp4", self.started_at)
        self.frames: dict[str, Blob] = {}

    @property
    def config(self) -> EmulatorConfig:
        """The settings in force."""
        return self.state.config

    def set_config(self, **changes: Any) -> EmulatorConfig:
        """Change settings at run time (JSON values, as ``POST /__emulator/config`` takes)."""
        self.state.config = self.state.config.with_changes(changes)
        return self.state.config

    def reset(self) -> None:
        """Forget tasks, records, accounts, counters and rate-limit logs."""
        self.state.reset()
        self.counters = Counters()
        self.limiter.reset()

    def stats(self) -> dict[str, Any]:
        """What ``GET /__emulator/stats`` answers."""
        return admin.stats(self)

    # -- the API ------------------------------------------------------------

    async def api(self, request: Request, endpoint: str, handler: Handler) -> Response:
        """Run one API endpoint with everything every API request goes through."""
        # Read the body first (Starlette keeps it): from here to the answer
        # nothing awaits, so requests are handled in clock order and the
        # running counts and record times never go back in time.
        await request.body()
        now = self.clock()
        key = _bearer(request)
        self.counters.arrival(key, now)
        config = self.config
        error_code: int | None = None
        lost = False
        server_error = self.faults.server_error(config.error_rate)
        if server_error is not None:
            self.counters.fault("server_error")
            response = _server_error(server_error)
        else:
            try:
                if not key or (config.api_keys and key not in config.api_keys):
                    raise Refused(INVALID_KEY, "invalid API key")
                wait = self.limiter.check(key, now, config.rate_limit)
                if wait is not None:
                    self.counters.fault("rate_limited")
                    response = self._too_many("rate limit exceeded", wait)
                else:
                    self.state.advance(now)
                    self.state.account(key)  # every accepted key shows in the stats
                    data = await handler(request, key, now)
                    response = _ok(data, getattr(data, "error_msg", ""))
            except Refused as refusal:
                error_code = refusal.code
                response = self._refusal(refusal)
            except _Lose:
                self.counters.fault("lost_response")
                lost = True
                response = SilentResponse()
        delay = self.faults.latency(*config.latency)
        if delay > 0:
            await anyio.sleep(delay)
        self.counters.answer(endpoint, "lost" if lost else response.status_code, error_code)
        return response

    def _too_many(self, message: str, wait: float) -> Response:
        headers = {"retry-after": retry_after_header(wait)} if self.config.retry_after else None
        payload = {"success": False, "errorMsg": message, "error_code": 429}
        return _json(payload, 429, headers)

    def _refusal(self, refusal: Refused) -> Response:
        if refusal.reason:
            self.counters.fault(refusal.reason)
        status = 200
        if refusal.always_http or self.config.errors_as_http:
            status = refusal.http_status
        headers = None
        if status == 429 and refusal.retry_after is not None and self.config.retry_after:
            headers = {"retry-after": retry_after_header(refusal.retry_after)}
        payload = {"success": False, "errorMsg": refusal.message, "error_code": refusal.code}
        return _json(payload, status, headers)

    async def create_task(self, request: Request, key: str, now: float) -> dict[str, Any]:
        """``create_tool_task``: validate, charge, create; maybe lose the answer."""
        try:
            body = json.loads(await request.body())
        except ValueError:
            raise Refused(INVALID_INPUT, "request body must be JSON") from None
        task = self.state.create(key, body, now)
        if self.faults.lose_response(self.config.lost_response_rate):
            raise _Lose
        return {"task_id": task.id}

    async def query_task(self, request: Request, key: str, now: float) -> dict[str, Any]:
        """``query_tool_task_status``: the task's status, output URLs or error."""
        params = await _params(request)
        task = self.state.find(key, params.get("task_id"))
        config = self.config
        status = task.status(now, config)
        data = _Answer(task_id=task.id, status=status, task_type=TOOL_TYPE, output_urls=[])
        if status == 1:
            data["output_urls"] = self._output_urls(request, task, now)
        if task.failed and now >= task.finish_at and task.error:
            if config.failure_field == "errorMsg":
                data.error_msg = task.error
            else:
                data[config.failure_field] = task.error
        return data

    def _output_urls(self, request: Request, task: Task, now: float) -> list[str]:
        origin = f"{request.url.scheme}://{request.url.netloc}"
        video = f"{origin}/files/{task.id}.mp4"
        ttl = self.config.output_url_ttl
        if ttl is not None:
            video += "?" + self.signer.query(task.id, now, ttl)
        if self.config.cover_url:
            return [f"{origin}{admin.PREFIX}/frames/{task.id}.png", video]
        return [video]

    async def account_status(self, request: Request, key: str, now: float) -> dict[str, Any]:
        """``query_account_status``: balance and subscription."""
        account = self.state.account(key)
        subscription = None
        if not self.config.no_membership:
            start = self.started_at - 10 * _DAY
            subscription = {
                "tier": "pro",
                "status": "active",
                "current_period_start": format_time(int(start * 1000)),
                "current_period_end": format_time(int((start + 30 * _DAY) * 1000)),
            }
        return {
            "email": "emulator@example.com",
            "name": "batchkling emulator",
            "balances": _num(account.shown_balance()),
            "subscription": subscription,
        }

    async def credits_usage(self, request: Request, key: str, now: float) -> dict[str, Any]:
        """``query_credits_usage``: one page of the account's records, newest first."""
        params = await _params(request)
        limit = _limit(params.get("limit"))
        cursor = params.get("cursor") or None
        start, end = _time_param(params, "start_time"), _time_param(params, "end_time")
        task_type = params.get("task_type") or None
        lag = self.config.usage_lag
        try:
            position = decode_cursor(str(cursor)) if cursor is not None else None
        except ValueError:
            raise Refused(INVALID_INPUT, "cursor is invalid") from None
        records, next_cursor = self.state.account(key).book.page(
            limit=limit,
            cursor=position,
            start_ms=start,
            end_ms=end,
            task_type=None if task_type is None else str(task_type),
            visible_until_ms=int((now - lag) * 1000) if lag > 0 else None,
        )
        return {"records": [r.to_api() for r in records], self.config.cursor_field: next_cursor}


def _limit(value: Any) -> int:
    if value is None or value == "":
        return DEFAULT_LIMIT
    try:
        limit = int(value)
    except (TypeError, ValueError):
        limit = 0
    if isinstance(value, (bool, float)) or limit < 1:
        raise Refused(INVALID_INPUT, f"limit must be an integer from 1 to {MAX_LIMIT}")
    return min(limit, MAX_LIMIT)


def _time_param(params: dict[str, Any], name: str) -> int | None:
    value = params.get(name)
    if value is None or value == "":
        return None
    try:
        return parse_time(str(value))
    except ValueError:
        raise Refused(INVALID_INPUT, f"{name} must be an RFC 3339 time") from None


class EmulatorApp(DroppingApp):
    """The emulator's ASGI app; ``emulator`` holds its state."""

    emulator: Emulator


def create_app(config: EmulatorConfig | None = None, *, clock: Clock = time.time) -> EmulatorApp:
    """The emulator as an ASGI app. ``clock`` gives epoch seconds; tests pass a fake one.

    One clock serves generation times, rate limits, record times and URL
    expiry, so a fake clock moves them all, and persisted tasks keep their
    meaning across a restart.
    """
    emulator = Emulator(config or EmulatorConfig(), clock)

    def api(endpoint: str, handler: Handler) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint_fn(request: Request) -> Response:
            return await emulator.api(request, endpoint, handler)

        return endpoint_fn

    both = ["GET", "POST"]
    routes = [
        Route(
            API_PREFIX + "create_tool_task",
            api("create_tool_task", emulator.create_task),
            methods=["POST"],
        ),
        Route(
            API_PREFIX + "query_tool_task_status",
            api("query_tool_task_status", emulator.query_task),
            methods=both,
        ),
        Route(
            API_PREFIX + "query_account_status",
            api("query_account_status", emulator.account_status),
            methods=both,
        ),
        Route(
            API_PREFIX + "query_credits_usage",
            api("query_credits_usage", emulator.credits_usage),
            methods=both,
        ),
        Route("/files/{name}", partial(files.serve_video, emulator), methods=["GET"]),
        Route(FRAMES_PATH, partial(files.serve_frame, emulator), methods=["GET"]),
        *admin.routes(emulator),
    ]
    app = EmulatorApp(routes=routes)
    app.emulator = emulator
    app.state.emulator = emulator
    return app
