"""The emulator itself: its state, the path every API request takes, the files, the stats.

``Emulator`` decides every answer and knows no web framework: the routes hand
it what a request said (an ``ApiRequest``, or a file name and headers) and put
the ``Reply`` or ``FileReply`` it returns on the wire. The business rules live
in ``state``; this module applies the faults and limits around them and writes
the reference's JSON wrapper:

    {"success": true, "errorMsg": "", "error_code": 0, "data": {...}}
    {"success": false, "errorMsg": "image is required", "error_code": 400}
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

import anyio

from batchkling.emulator.clips import clip
from batchkling.emulator.config import EmulatorConfig
from batchkling.emulator.counters import Counters
from batchkling.emulator.dialects import (
    BAD_URL,
    padded,
    place_output_urls,
    query_refusal,
    rewrite_payload,
    status_value,
)
from batchkling.emulator.faults import Faults, RateLimiter, UrlSigner, retry_after_header
from batchkling.emulator.fetch import image_problem
from batchkling.emulator.frames import FRAME_NAME, render_frame
from batchkling.emulator.media import Answer, Blob, answer, gzipped, no_length, short_length
from batchkling.emulator.params import page_limit, request_params, time_param
from batchkling.emulator.persist import FileJournal, read_journal
from batchkling.emulator.state import INVALID_INPUT, INVALID_KEY, EmulatorState, Refused, Task
from batchkling.emulator.usage import api_number, decode_cursor, format_time, parse_time
from batchkling.emulator.usage_variants import defective_page
from batchkling.model import TOOL_TYPE

__all__ = [
    "ADMIN_PREFIX",
    "FRAME_PATH",
    "VIDEO_PATH",
    "ApiRequest",
    "Clock",
    "Emulator",
    "FileReply",
    "Reply",
]

# Where the files that answers link to are served.
ADMIN_PREFIX = "/__emulator"
VIDEO_PATH = "/files/{name}"
FRAME_PATH = ADMIN_PREFIX + "/frames/{name}"

Clock = Callable[[], float]
_DAY = 86400.0


@dataclass(frozen=True)
class ApiRequest:
    """What one API request said, as far as any endpoint cares."""

    key: str  # the Bearer token; "" when the request carried none
    method: str
    body: bytes
    query: Mapping[str, str]
    origin: str  # "scheme://host:port" the request was sent to, for the URLs it gets back


@dataclass(frozen=True)
class Reply:
    """The answer to one API request: JSON, a gateway's HTML page, or nothing at all."""

    status: int
    payload: Any = None  # the JSON body
    html: str | None = None  # sent instead of JSON when set
    headers: Mapping[str, str] | None = None
    error_code: int | None = None  # the functional error answered, for the counters
    lost: bool = False  # drop the connection instead of answering
    trickle: float | None = None  # send the body one byte at a time, this many seconds apart


@dataclass(frozen=True)
class FileReply:
    """The answer to one file request; ``cut`` sends half the body, then drops the connection.

    ``chunked``: sent without ``Content-Length`` (chunked transfer coding over HTTP/1.1).
    """

    status: int
    body: bytes
    headers: Mapping[str, str] | None = None
    media_type: str | None = None
    cut: bool = False
    chunked: bool = False


def _ok(data: Any, error_msg: str = "") -> Reply:
    return Reply(200, {"success": True, "errorMsg": error_msg, "error_code": 0, "data": data})


def _server_error(status: int) -> Reply:
    # What a proxy in front of an API sends: JSON from the app, HTML from the gateway.
    if status == 500:
        body = {"success": False, "errorMsg": "internal server error", "error_code": 500}
        return Reply(500, body)
    title = "503 Service Temporarily Unavailable" if status == 503 else f"{status} Bad Gateway"
    return Reply(status, html=f"<html><body><h1>{title}</h1></body></html>")


_LOST = Reply(200, lost=True)
_NOT_FOUND = FileReply(404, b"not found\n", media_type="text/plain")

_Handler = Callable[[ApiRequest, float], Reply]


class Emulator:
    """The state behind one app: settings, tasks, counters, fault generators, clock."""

    def __init__(self, config: EmulatorConfig, clock: Clock) -> None:
        journal = FileJournal(config.state_file) if config.state_file else None
        self.state = EmulatorState(config, journal=journal)
        if config.state_file:
            self.state.replay(read_journal(config.state_file))
        self.clock = clock
        self._faults = Faults(config.seed)
        self._limiter = RateLimiter()
        self._counters = Counters()
        self._signer = UrlSigner()
        self._started_at = clock()
        # By the length and size served, made on first use.
        self._videos: dict[tuple[float, tuple[int, int]], Blob] = {}
        self._task_order: dict[str, int] = {}  # task id -> its place in creation order
        self._frames: dict[str, Blob] = {}
        self._urlless: dict[str, int] = {}  # task -> queries answered with no URL after it finished
        # By the last part of the endpoint's path.
        self._handlers: dict[str, _Handler] = {
            "create_tool_task": self._create_task,
            "query_tool_task_status": self._query_task,
            "query_account_status": self._account_status,
            "query_credits_usage": self._usage,
        }

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
        self._counters = Counters()
        self._limiter.reset()
        self._urlless.clear()

    def stats(self) -> dict[str, Any]:
        """Counters, tasks and accounts, as ``GET /__emulator/stats`` answers.

        ``requests``: {endpoint: {status: n}} where status is an HTTP status, "lost"
        (connection dropped after a create) or "cut" (video cut off mid-body);
        ``error_codes``: {endpoint: {error_code: n}} of functional errors;
        ``faults``: {name: n}; ``request_times``: {key: [clock seconds]} of every
        API request; ``max_requests_per_second``: {key: n} over any 1 s window;
        ``max_running`` / ``running``: {key: n}; ``credits_charged`` /
        ``credits_refunded`` / ``balances``: {key: credits}.
        """
        now = self.clock()
        state = self.state
        state.advance(now)
        accounts = state.accounts.values()
        return {
            "now": now,
            "config": state.config.to_json(),
            **self._counters.to_json(),
            "tasks_created": len(state.tasks),
            "tasks": state.tasks_json(now),
            "running": {a.key: a.running for a in accounts},
            "max_running": {a.key: a.max_running for a in accounts},
            "credits_charged": {a.key: api_number(a.charged) for a in accounts},
            "credits_refunded": {a.key: api_number(a.refunded) for a in accounts},
            "balances": {
                a.key: None if a.balance is None else api_number(a.balance) for a in accounts
            },
        }

    # -- the API ------------------------------------------------------------

    async def call(self, endpoint: str, request: ApiRequest) -> Reply:
        """Answer one API request with everything every API request goes through.

        Count it, maybe inject a server error, check the key, apply the rate limit,
        process finished tasks, run the endpoint, maybe hold the answer back.
        """
        if endpoint == "create_tool_task" and self._fetches(request):
            problem = await image_problem(request.body)
            if problem is not None:
                self._counters.arrival(request.key, self.clock())
                self._counters.fault("image_unfetchable")
                reply = self._refusal(Refused(INVALID_INPUT, problem))
                self._counters.answer(endpoint, reply.status, reply.error_code)
                return reply
        # From the clock reading to the answer nothing awaits, so requests are
        # handled in clock order and running counts and record times never go
        # back in time.
        now = self.clock()
        self._counters.arrival(request.key, now)
        reply = self._answer(self._handlers[endpoint], request, now)
        config = self.config
        reply = replace(
            reply, payload=rewrite_payload(reply.payload, config), trickle=config.trickle
        )
        delay = self._faults.latency(*self.config.latency)
        if delay > 0:
            await anyio.sleep(delay)
        self._counters.answer(endpoint, "lost" if reply.lost else reply.status, reply.error_code)
        return reply

    def _fetches(self, request: ApiRequest) -> bool:
        """Whether a create's images are fetched first: asked for, and the key is accepted."""
        config = self.config
        keys = config.api_keys
        return config.fetch_images and bool(request.key) and (not keys or request.key in keys)

    def _answer(self, handler: _Handler, request: ApiRequest, now: float) -> Reply:
        config = self.config
        server_error = self._faults.server_error(config.error_rate)
        if server_error is not None:
            self._counters.fault("server_error")
            return _server_error(server_error)
        key = request.key
        try:
            if not key or (config.api_keys and key not in config.api_keys):
                raise Refused(INVALID_KEY, "invalid API key")
            wait = self._limiter.check(key, now, config.rate_limit)
            if wait is not None:
                self._counters.fault("rate_limited")
                return self._too_many("rate limit exceeded", wait)
            self.state.advance(now)
            self.state.account(key)  # every accepted key shows in the stats
            return handler(request, now)
        except Refused as refusal:
            return self._refusal(refusal)

    def _too_many(self, message: str, wait: float) -> Reply:
        headers = {"retry-after": retry_after_header(wait)} if self.config.retry_after else None
        payload = {"success": False, "errorMsg": message, "error_code": 429}
        return Reply(429, payload, headers=headers)

    def _refusal(self, refusal: Refused) -> Reply:
        if refusal.reason:
            self._counters.fault(refusal.reason)
        status = 200
        if refusal.always_http or self.config.errors_as_http:
            status = refusal.http_status
        headers = None
        if status == 429 and refusal.retry_after is not None and self.config.retry_after:
            headers = {"retry-after": retry_after_header(refusal.retry_after)}
        payload = {"success": False, "errorMsg": refusal.message, "error_code": refusal.code}
        return Reply(status, payload, headers=headers, error_code=refusal.code)

    def _create_task(self, request: ApiRequest, now: float) -> Reply:
        """``create_tool_task``: validate, charge, create; maybe lose the answer."""
        try:
            body = json.loads(request.body)
        except ValueError:
            raise Refused(INVALID_INPUT, "request body must be JSON") from None
        task = self.state.create(request.key, body, now)
        if self._faults.lose_response(self.config.lost_response_rate):
            self._counters.fault("lost_response")
            return _LOST
        return _ok({"task_id": task.id})

    def _query_task(self, request: ApiRequest, now: float) -> Reply:
        """``query_tool_task_status``: the task's status, output URLs or error."""
        config = self.config
        refusal = query_refusal(config, request.origin)
        if refusal is not None:
            status_code, payload, headers = refusal
            return Reply(status_code, payload, headers=headers, error_code=payload["error_code"])
        params = request_params(request.method, request.body, request.query)
        task = self.state.find(request.key, params.get("task_id"))
        status = task.status(now, config)
        data: dict[str, Any] = {
            "task_id": task.id,
            "status": status_value(status, config),
            "task_type": TOOL_TYPE,
        }
        urls = []
        if status == 1:
            seen = self._urlless.get(task.id, 0)
            if seen < config.no_url_polls:
                self._urlless[task.id] = seen + 1
            else:
                urls = self._output_urls(request.origin, task, now)
        place_output_urls(data, urls, config)
        error_msg = ""
        if task.failed and now >= task.finish_at and task.error:
            reason = padded(task.error, config.error_msg_size)
            if config.failure_field == "errorMsg":
                error_msg = reason
            else:
                data[config.failure_field] = reason
        return _ok(data, error_msg)

    def _output_urls(self, origin: str, task: Task, now: float) -> list[str]:
        video = origin + VIDEO_PATH.format(name=f"{task.id}.mp4")
        if self.config.bad_output_url:
            video = BAD_URL
        ttl = self.config.output_url_ttl
        if ttl is not None:
            video += "?" + self._signer.query(task.id, now, ttl)
        if self.config.cover_url:
            return [origin + FRAME_PATH.format(name=f"{task.id}.png"), video]
        return [video]

    def _account_status(self, request: ApiRequest, now: float) -> Reply:
        """``query_account_status``: balance and subscription."""
        account = self.state.account(request.key)
        subscription = None
        if not self.config.no_membership:
            start = self._started_at - 10 * _DAY
            subscription = {
                "tier": "pro",
                "status": "active",
                "current_period_start": format_time(int(start * 1000)),
                "current_period_end": format_time(int((start + 30 * _DAY) * 1000)),
            }
        return _ok(
            {
                "email": "emulator@example.com",
                "name": "batchkling emulator",
                "balances": api_number(account.shown_balance()),
                "subscription": subscription,
            }
        )

    def _usage(self, request: ApiRequest, now: float) -> Reply:
        """``query_credits_usage``: one page of the account's records, newest first."""
        params = request_params(request.method, request.body, request.query)
        limit = page_limit(params.get("limit"))
        cursor = params.get("cursor") or None
        start, end = time_param(params, "start_time"), time_param(params, "end_time")
        task_type = params.get("task_type") or None
        lag = self.config.usage_lag
        defect = self.config.usage_defect
        # The provider's clock runs ``offset`` ahead: its times, and its filters, are its own.
        offset = round(self.config.usage_clock_offset * 1000)
        if defect == "ignore-start":
            start = None
        try:
            position = decode_cursor(str(cursor)) if cursor is not None else None
        except ValueError:
            raise Refused(INVALID_INPUT, "cursor is invalid") from None
        records, next_cursor = self.state.account(request.key).book.page(
            limit=limit,
            cursor=position,
            start_ms=None if start is None else start - offset,
            end_ms=None if end is None else end - offset,
            task_type=None if task_type is None else str(task_type),
            visible_until_ms=int((now - lag) * 1000) if lag > 0 else None,
        )
        rows = [r.to_api() for r in records]
        if offset:
            for row in rows:
                row["create_time"] = format_time(parse_time(row["create_time"]) + offset)
        data = defective_page(
            rows,
            self.config.cursor_field,
            next_cursor,
            defect,
            parse=parse_time,
            first_page=position is None,
        )
        return _ok(data)

    # -- files --------------------------------------------------------------

    def video(
        self, name: str, query: Mapping[str, str], method: str, headers: Mapping[str, str]
    ) -> FileReply:
        """``GET /files/TASK_ID.mp4``: a completed task's video, at the URL its query gave."""
        now = self.clock()
        config = self.config
        counters = self._counters
        task = self.state.tasks.get(name.removesuffix(".mp4")) if name.endswith(".mp4") else None
        if task is None or task.status(now, config) != 1:
            counters.answer("files", 404)
            return _NOT_FOUND
        if config.output_url_ttl is not None:
            why = self._signer.refusal(task.id, query.get("exp"), query.get("sig"), now)
            if why is not None:
                counters.answer("files", 403)
                return FileReply(403, (why + "\n").encode(), media_type="text/plain")
        blob = self._video_for(task)
        if blob.content_type != config.download_content_type:
            blob = replace(blob, content_type=config.download_content_type)
        ans = self._spoiled(method, answer(blob, headers))
        if (
            method == "GET"
            and ans.status in (200, 206)
            and len(ans.body) >= 2
            and self._faults.cut_download(config.download_fail_rate)
        ):
            counters.fault("download_cut")
            counters.answer("files", "cut")
            return FileReply(ans.status, ans.body, ans.headers, cut=True)
        counters.answer("files", ans.status)
        return FileReply(ans.status, ans.body, ans.headers, chunked=ans.chunked)

    def _video_for(self, task: Task) -> Blob:
        """The clip of ``task``: the length it asked, ``--video-duration-offset`` added, at
        the size ``--clip-size`` (or ``--clip-sizes``, by the order tasks were created) says."""
        config = self.config
        seconds = max(task.duration + config.video_duration_offset, 0.0)
        if config.clip_sizes:
            size = config.clip_size_of(self._order_of(task.id))
        else:
            size = config.clip_size
        blob = self._videos.get((seconds, size))
        if blob is None:
            body = clip(seconds, size)
            blob = self._videos[(seconds, size)] = Blob.of(body, "video/mp4", self._started_at)
        return blob

    def _order_of(self, task_id: str) -> int:
        """Where ``task_id`` stands among the tasks, in the order they were created."""
        order = self._task_order.get(task_id)
        if order is None:
            self._task_order = {tid: n for n, tid in enumerate(self.state.tasks)}
            order = self._task_order.get(task_id, 0)
        return order

    def _spoiled(self, method: str, ans: Answer) -> Answer:
        """A whole-video answer made wrong the ways the settings ask (``download_gzip``, ...)."""
        config = self.config
        if method != "GET" or ans.status != 200:
            return ans
        for wanted, name, spoil in (
            (config.download_gzip, "download_gzip", gzipped),
            (config.download_short_length, "download_short_length", short_length),
            (config.download_no_length, "download_no_length", no_length),
        ):
            if wanted:
                self._counters.fault(name)
                ans = spoil(ans)
        return ans

    def frame(self, name: str, headers: Mapping[str, str]) -> FileReply:
        """``GET /__emulator/frames/NAME.png``: a sample first or last frame for the demo."""
        stem = name.removesuffix(".png")
        if not name.endswith(".png") or not FRAME_NAME.fullmatch(stem):
            self._counters.answer("frames", 404)
            return _NOT_FOUND
        blob = self._frames.get(stem)
        if blob is None:
            blob = self._frames[stem] = Blob.of(render_frame(stem), "image/png", self._started_at)
        ans = answer(blob, headers)
        self._counters.answer("frames", ans.status)
        return FileReply(ans.status, ans.body, ans.headers)
