"""The sjinn API client: one send path, and one table from failed answers to exceptions.

Every API request (never a download) first passes the ``RequestGate``, which
paces requests evenly (GCRA) and holds everyone back together when the server
says it is overloaded. Foreign exceptions are translated here, at the boundary,
into the tree of ``batchkling.errors``; the translation decides the one thing
that matters for money: whether a failed create may have been charged.

    could not connect, pool timeout     TransientError     provably not sent
    any other failure while sending     InDoubtError       it may have arrived
    no whole answer before the deadline InDoubtError       it may have arrived
    an answer larger than 8 MB          InDoubtError       it may have arrived
    an answer that is not a success     the table in ``failures``

Every API request has an overall deadline (``Deadlines``), not only a timeout
per read, so a server that sends a byte every few seconds cannot hold a call
for ever: 60 s, except a create, which is waited for while its connection lives,
up to 10 minutes, because its answer records money.

The API key goes into the ``Authorization`` header and nowhere else: no message
built here contains a header, and every message raised from here has the key
removed (``batchkling.api.key.redact``), in case a transport or the server
echoes it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json as _json
import math
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
import httpx

from batchkling.api import answers, failures
from batchkling.api.gate import Priority
from batchkling.api.key import redact, redact_exception
from batchkling.errors import (
    BatchklingError,
    ConcurrencyLimitError,
    InDoubtError,
    RefusedError,
    TransientError,
)
from batchkling.model import USAGE_TASK_TYPE

if TYPE_CHECKING:
    from batchkling.api.gate import RequestGate

__all__ = [
    "API_POOL_CEILING",
    "CREATE_PATH",
    "DEFAULT_TIMEOUT",
    "MAX_ANSWER_BYTES",
    "ApiPool",
    "Deadlines",
    "SjinnClient",
    "make_http_client",
    "make_transport",
    "pool_size",
]

CREATE_PATH = "/api/un-api/create_tool_task"
QUERY_PATH = "/api/un-api/query_tool_task_status"
ACCOUNT_PATH = "/api/un-api/query_account_status"
USAGE_PATH = "/api/un-api/query_credits_usage"

# Connect fast (a refused connection is provably not a charge); allow the API
# time to answer a create; never wait forever for anything.
DEFAULT_TIMEOUT = httpx.Timeout(30.0, connect=10.0, pool=60.0)
# No API answer is anywhere near this; a larger one is a broken or hostile server.
MAX_ANSWER_BYTES = 8 * 1024 * 1024


@dataclass(frozen=True)
class Deadlines:
    """How long an API request may take in all, from sending to the last byte of its answer.

    ``api`` for queries, account and usage calls; ``create`` for a create, whose
    answer records money: it is waited for while its connection lives (its
    per-read timeout is the same), up to this long. ``read`` is the per-read
    timeout of the others. ``max_answer_bytes`` caps an answer's (decoded) size.
    """

    api: float = 60.0
    create: float = 600.0
    read: float = DEFAULT_TIMEOUT.read or 30.0
    max_answer_bytes: int = MAX_ANSWER_BYTES

    def timeouts(self, *, create: bool) -> dict[str, float | None]:
        """The httpx timeouts (connect, read, write, pool) of one request."""
        read = self.create if create else self.read
        return httpx.Timeout(
            read, connect=DEFAULT_TIMEOUT.connect, pool=DEFAULT_TIMEOUT.pool
        ).as_dict()


# httpcore scans every pooled connection on each request, so a pool far larger
# than the requests actually in flight costs CPU on every call. API requests are
# paced by the gate, so the requests in flight are about the rate times the time
# an answer takes (Little's law): the pool starts at that for half a second, at
# least ``API_MAX_CONNECTIONS``, and grows with the slowest answer seen, up to
# ``API_POOL_CEILING``. A pool too small makes creates wait for a connection
# behind polls after the gate let them go. Downloads and image checks use a pool
# of their own, so a slow CDN never holds up a create or a poll.
API_MAX_CONNECTIONS = 8
API_POOL_CEILING = 64
DEFAULT_MAX_CONNECTIONS = 16
_FIRST_GUESS = 0.5  # seconds an answer is taken to need before any is seen


def pool_size(per_second: float, slowest: float) -> int:
    """Connections for ``per_second`` requests whose answers take up to ``slowest`` seconds.

    Two spare, rounded up to a power of two (so the pool is rebuilt a few times at
    most), within ``API_MAX_CONNECTIONS`` and ``API_POOL_CEILING``.
    """
    need = math.ceil(max(per_second, 0.0) * max(slowest, 0.0)) + 2
    size = API_MAX_CONNECTIONS
    while size < need and size < API_POOL_CEILING:
        size *= 2
    return min(size, API_POOL_CEILING)


def _limits(connections: int) -> httpx.Limits:
    return httpx.Limits(max_connections=connections, max_keepalive_connections=connections)


class ApiPool(httpx.AsyncBaseTransport):
    """The API requests' connection pool, which can grow while requests are in flight.

    httpx fixes a pool's size when it is made, so growing means a new, larger
    pool for the requests to come; an outgrown one is closed once the answers
    it carries have been read.
    """

    def __init__(self, connections: int = API_MAX_CONNECTIONS) -> None:
        self.size = connections
        self._pool = httpx.AsyncHTTPTransport(limits=_limits(connections))
        self._busy: dict[httpx.AsyncHTTPTransport, int] = {self._pool: 0}

    def fit(self, connections: int) -> None:
        """Hold at least ``connections`` (never more than ``API_POOL_CEILING``)."""
        connections = min(connections, API_POOL_CEILING)
        if connections <= self.size:
            return
        self.size = connections
        self._pool = httpx.AsyncHTTPTransport(limits=_limits(connections))
        self._busy[self._pool] = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        pool = self._pool
        for old in [p for p, n in self._busy.items() if p is not pool and n == 0]:
            await self._close(old)  # outgrown while idle
        self._busy[pool] += 1
        try:
            resp = await pool.handle_async_request(request)
        except BaseException:
            await self._done(pool)
            raise
        resp.stream = _Counted(resp.stream, lambda: self._done(pool))
        return resp

    async def _done(self, pool: httpx.AsyncHTTPTransport) -> None:
        self._busy[pool] -= 1
        if pool is not self._pool and self._busy[pool] == 0:
            await self._close(pool)

    async def _close(self, pool: httpx.AsyncHTTPTransport) -> None:
        del self._busy[pool]
        await pool.aclose()

    async def aclose(self) -> None:
        pools = list(self._busy)
        self._busy = {self._pool: 0}
        for pool in pools:
            await pool.aclose()

    @property
    def pools(self) -> int:
        """Pools still open: the current one, and outgrown ones still reading answers."""
        return len(self._busy)


class _Counted(httpx.AsyncByteStream):
    """An answer's body that tells its pool when it is closed."""

    def __init__(self, stream: Any, done: Callable[[], Awaitable[None]]) -> None:
        self._stream = stream
        self._done = done

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in self._stream:
            yield chunk

    async def aclose(self) -> None:
        try:
            await self._stream.aclose()
        finally:
            await self._done()


def make_transport(*, max_connections: int = API_MAX_CONNECTIONS) -> ApiPool:
    """The pooled transport a run's API requests share (``SjinnClient`` sizes it)."""
    return ApiPool(max_connections)


def make_http_client(*, transport: httpx.AsyncBaseTransport | None = None) -> httpx.AsyncClient:
    """The one client a run uses, on ``transport`` (closed with the client)."""
    return httpx.AsyncClient(
        transport=transport
        if transport is not None
        else make_transport(max_connections=DEFAULT_MAX_CONNECTIONS),
        timeout=DEFAULT_TIMEOUT,
        follow_redirects=True,
        headers={"User-Agent": "batchkling"},
    )


@dataclass(frozen=True)
class _Endpoint:
    """One endpoint of the Tool API, and its table of what an HTTP error status means."""

    path: str
    table: failures.Table

    @property
    def name(self) -> str:
        """The last part of the path: how messages name the endpoint."""
        return self.path.rsplit("/", 1)[-1]


_CREATE = _Endpoint(CREATE_PATH, failures.CREATE_TABLE)
_QUERY = _Endpoint(QUERY_PATH, failures.QUERY_TABLE)
_ACCOUNT = _Endpoint(ACCOUNT_PATH, failures.API_TABLE)
_USAGE = _Endpoint(USAGE_PATH, failures.API_TABLE)


# -- sending ------------------------------------------------------------------------


_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout, httpx.UnsupportedProtocol)
# What ``_call`` returns when ``before_send`` withheld the request.
_WITHHELD = object()


class _ThroughClient(httpx.AsyncBaseTransport):
    """Sends through an ``httpx.AsyncClient``, with its proxies, as a transport.

    Redirects are not followed, as on the pooled transport: a redirected POST
    would be resent as a GET, and an API request has no business elsewhere.
    """

    def __init__(self, http: httpx.AsyncClient) -> None:
        self._http = http

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        return await self._http.send(request, stream=True, follow_redirects=False)


class SjinnClient:
    """Typed calls to the sjinn Tool API.

    API requests go to ``transport`` when one is given: straight to the pool,
    without the client's cookie, auth and redirect machinery, which costs CPU on
    every poll and is not needed here. Without one they go through ``http``.
    Downloads always go through ``http``.
    """

    def __init__(
        self,
        http: httpx.AsyncClient,
        *,
        base_url: str,
        api_key: str,
        gate: RequestGate | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        deadlines: Deadlines | None = None,
    ) -> None:
        self._http = http
        self._transport = transport if transport is not None else _ThroughClient(http)
        self._base = base_url.rstrip("/")
        self._key = api_key
        self._headers = {
            "Authorization": f"Bearer {api_key}",
            "Content-Type": "application/json",
            "User-Agent": "batchkling",
        }
        self.deadlines = deadlines if deadlines is not None else Deadlines()
        self.gate = gate
        self.slowest = 0.0  # seconds, the slowest API answer seen, which sizes the pool
        self._fit_pool(_FIRST_GUESS)

    def _fit_pool(self, seconds: float) -> None:
        """An answer took ``seconds``: let the pool carry the rate at that latency."""
        self.slowest = max(self.slowest, seconds)
        if isinstance(self._transport, ApiPool) and self.gate is not None:
            rate = self.gate.rate
            self._transport.fit(pool_size(rate.count / rate.period, self.slowest))

    @property
    def http(self) -> httpx.AsyncClient:
        """The pooled HTTP client for requests that carry no API key (videos, images)."""
        return self._http

    async def _call(
        self,
        endpoint: _Endpoint,
        body: Mapping[str, Any],
        before_send: Callable[[], Awaitable[bool]] | None = None,
    ) -> Any:
        """The answer's wrapper (``{"success": true, "data": ...}``), or ``_WITHHELD``."""
        try:
            return await self._exchange(endpoint, body, before_send)
        except BatchklingError as exc:
            redact_exception(exc, self._key)
            raise

    async def _exchange(
        self,
        endpoint: _Endpoint,
        body: Mapping[str, Any],
        before_send: Callable[[], Awaitable[bool]] | None,
    ) -> Any:
        create = endpoint is _CREATE
        # Built before the gate, so that only ``before_send`` stands between the
        # rate slot and the request leaving.
        request = httpx.Request(
            "POST",
            self._base + endpoint.path,
            content=_json.dumps(body, separators=(",", ":")).encode("utf-8"),
            headers=self._headers,
            extensions={"timeout": self.deadlines.timeouts(create=create)},
        )
        if self.gate is not None:
            # A create fills a free slot: it goes before the polls waiting already.
            await self.gate.wait(Priority.CREATE if create else Priority.POLL)
        if before_send is not None and not await before_send():
            return _WITHHELD
        deadline = self.deadlines.create if create else self.deadlines.api
        resp = await self._send(request, endpoint.name, deadline)
        try:
            answer = failures.unwrap(resp, endpoint.name, endpoint.table)
        except (TransientError, InDoubtError) as exc:
            # The server answered that it is overloaded or failing: everyone waits. A
            # refusal for too many tasks generating is not about the pace of requests:
            # the runner lowers its concurrency instead, and polls go on.
            if (
                self.gate is not None
                and exc.overloaded
                and not isinstance(exc, ConcurrencyLimitError)
            ):
                self.gate.pushed_back(exc.retry_after, exc.status_code)
            raise
        if self.gate is not None:
            self.gate.succeeded()
        return answer

    async def _send(self, request: httpx.Request, what: str, deadline: float) -> httpx.Response:
        """The whole answer, read within ``deadline`` seconds and at most ``max_answer_bytes``."""
        started = time.monotonic()
        try:
            with anyio.fail_after(deadline):
                resp = await self._transport.handle_async_request(request)
                try:
                    content = await self._read(resp, what)
                finally:
                    await resp.aclose()
            self._fit_pool(time.monotonic() - started)
        except BatchklingError:
            raise
        except TimeoutError:
            raise InDoubtError(f"{what}: no whole answer within {deadline:g} s.") from None
        except _NOT_SENT as exc:
            raise TransientError(f"{what}: could not connect ({type(exc).__name__}).") from exc
        except httpx.HTTPError as exc:
            detail = answers.clip(redact(str(exc), self._key), 500)
            raise InDoubtError(f"{what}: no answer ({type(exc).__name__}: {detail}).") from exc
        except Exception as exc:  # a transport that fails in a way httpx does not wrap
            raise InDoubtError(f"{what}: no answer ({type(exc).__name__}).") from exc
        # Decoded already: the copy carries the body as it was read, and no encoding.
        headers = [
            (k, v)
            for k, v in resp.headers.multi_items()
            if k.lower() not in ("content-encoding", "content-length", "transfer-encoding")
        ]
        return httpx.Response(resp.status_code, headers=headers, content=content, request=request)

    async def _read(self, resp: httpx.Response, what: str) -> bytes:
        cap = self.deadlines.max_answer_bytes
        too_large = InDoubtError(
            f"{what}: the answer is larger than {cap / 1024 / 1024:g} MB; it was not read.",
            status_code=resp.status_code,
        )
        declared = resp.headers.get("Content-Length", "")
        if declared.isdigit() and int(declared) > cap:
            raise too_large
        chunks: list[bytes] = []
        size = 0
        async for chunk in resp.aiter_bytes():
            size += len(chunk)
            if size > cap:
                raise too_large
            chunks.append(chunk)
        return b"".join(chunks)

    # -- endpoints ---------------------------------------------------------------

    async def create(
        self,
        body: Mapping[str, Any],
        *,
        before_send: Callable[[], Awaitable[bool]] | None = None,
    ) -> str | None:
        """Create a task; return its id. ``InDoubtError`` means it may have been charged.

        ``before_send`` is awaited once the request has its rate slot, just before
        it is sent: the moment to record the intent to create. If it returns False
        nothing is sent and ``create`` returns None.
        """
        answer = await self._call(_CREATE, body, before_send)
        if answer is _WITHHELD:
            return None
        data = answer.get("data")
        task_id = data.get("task_id") if isinstance(data, dict) else None
        if not isinstance(task_id, str) or not task_id:
            raise InDoubtError("create_tool_task: a success without a task id.")
        return task_id

    async def query(self, task_id: str) -> answers.TaskStatus:
        """The status of one task."""
        answer = await self._call(_QUERY, {"task_id": task_id})
        data = answer.get("data")
        if not isinstance(data, dict):
            raise TransientError("query_tool_task_status: a success without data.")
        status = answers.TaskStatus.from_data(data, task_id, message=failures.message_of(answer))
        if status.error is not None and redact(status.error, self._key) != status.error:
            status = dataclasses.replace(status, error=redact(status.error, self._key))
        return status

    async def account(self) -> answers.Account:
        """The account's balance and subscription (free of charge)."""
        data = (await self._call(_ACCOUNT, {})).get("data")
        return answers.Account.from_data(data if isinstance(data, dict) else {})

    async def credits_usage(
        self,
        *,
        limit: int = 200,
        cursor: str | None = None,
        start_time: str | None = None,
        end_time: str | None = None,
        task_type: str | None = USAGE_TASK_TYPE,
    ) -> answers.UsagePage:
        """One page of the account's credits usage, newest first."""
        params: dict[str, Any] = {"limit": limit}
        for key, value in (
            ("cursor", cursor),
            ("start_time", start_time),
            ("end_time", end_time),
            ("task_type", task_type),
        ):
            if value is not None:
                params[key] = value
        data = (await self._call(_USAGE, params)).get("data")
        return answers.UsagePage.from_data(data)

    async def download(self, url: str, dest: Path) -> tuple[int, str]:
        """Stream ``url`` into ``dest``; verify against Content-Length; return (bytes, sha256).

        ``RefusedError`` means the URL no longer works (query the task again for a
        fresh one); ``TransientError`` means try again.
        """
        digest = hashlib.sha256()
        size = 0
        try:
            async with self._http.stream("GET", url) as resp:
                if resp.status_code in (401, 403, 404, 410):
                    raise RefusedError(
                        f"download: HTTP {resp.status_code} (the URL expired).",
                        status_code=resp.status_code,
                    )
                if resp.status_code != 200:
                    raise TransientError(
                        f"download: HTTP {resp.status_code}.", status_code=resp.status_code
                    )
                expected = resp.headers.get("Content-Length")
                with open(dest, "wb") as fh:
                    async for chunk in resp.aiter_raw():
                        fh.write(chunk)
                        digest.update(chunk)
                        size += len(chunk)
                    fh.flush()
                    os.fsync(fh.fileno())
        except httpx.InvalidURL as exc:
            raise RefusedError(f"download: the output URL is not valid ({exc}).") from None
        except httpx.HTTPError as exc:
            raise TransientError(f"download: interrupted ({type(exc).__name__}).") from exc
        if expected is not None and expected.isdigit() and int(expected) != size:
            raise TransientError(f"download: got {size} of {expected} bytes.")
        if size == 0:
            raise TransientError("download: an empty file.")
        return size, digest.hexdigest()
