"""The sjinn API client: one send path, and one table from failed answers to exceptions.

Every API request (never a download) first passes the ``RequestGate``, which
paces requests evenly (GCRA) and holds everyone back together when the server
says it is overloaded. Foreign exceptions are translated here, at the boundary,
into the tree of ``batchkling.errors``; the translation decides the one thing
that matters for money: whether a failed create may have been charged.

    could not connect, pool timeout     TransientError     provably not sent
    any other failure while sending     InDoubtError       it may have arrived
    an answer that is not a success     the table in ``failures``

The API key goes into the ``Authorization`` header and nowhere else: no message
built here contains a header.
"""

from __future__ import annotations

import hashlib
import json as _json
import os
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

from batchkling.api import answers, failures
from batchkling.errors import InDoubtError, RefusedError, TransientError
from batchkling.model import USAGE_TASK_TYPE

if TYPE_CHECKING:
    from batchkling.api.gate import RequestGate

__all__ = [
    "CREATE_PATH",
    "DEFAULT_TIMEOUT",
    "SjinnClient",
    "make_http_client",
    "make_transport",
]

CREATE_PATH = "/api/un-api/create_tool_task"
QUERY_PATH = "/api/un-api/query_tool_task_status"
ACCOUNT_PATH = "/api/un-api/query_account_status"
USAGE_PATH = "/api/un-api/query_credits_usage"

# Connect fast (a refused connection is provably not a charge); allow the API
# time to answer a create; never wait forever for anything.
DEFAULT_TIMEOUT = httpx.Timeout(30.0, connect=10.0, pool=60.0)


# httpcore scans every pooled connection on each request, so a pool far larger
# than the requests actually in flight costs CPU on every call. API requests are
# short and paced by the gate: this many connections carry 16 requests per second
# even at half a second of latency. Downloads and image checks use a pool of
# their own, so a slow CDN never holds up a create or a poll.
API_MAX_CONNECTIONS = 8
DEFAULT_MAX_CONNECTIONS = 16


def make_transport(*, max_connections: int = API_MAX_CONNECTIONS) -> httpx.AsyncHTTPTransport:
    """The pooled transport a run's requests share."""
    limits = httpx.Limits(
        max_connections=max_connections, max_keepalive_connections=max_connections
    )
    return httpx.AsyncHTTPTransport(limits=limits)


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
    by_status: Mapping[int, failures.Meaning]

    @property
    def name(self) -> str:
        """The last part of the path: how messages name the endpoint."""
        return self.path.rsplit("/", 1)[-1]


_CREATE = _Endpoint(CREATE_PATH, failures.CREATE_BY_STATUS)
_QUERY = _Endpoint(QUERY_PATH, failures.BY_STATUS)
_ACCOUNT = _Endpoint(ACCOUNT_PATH, failures.BY_STATUS)
_USAGE = _Endpoint(USAGE_PATH, failures.BY_STATUS)


# -- sending ------------------------------------------------------------------------


_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout, httpx.UnsupportedProtocol)
# What ``_call`` returns when ``before_send`` withheld the request.
_WITHHELD = object()


class _ThroughClient(httpx.AsyncBaseTransport):
    """Sends through an ``httpx.AsyncClient``, with its proxies and redirects, as a transport."""

    def __init__(self, http: httpx.AsyncClient) -> None:
        self._http = http

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        return await self._http.send(request)


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
    ) -> None:
        self._http = http
        self._transport = transport if transport is not None else _ThroughClient(http)
        self._base = base_url.rstrip("/")
        self._headers = {
            "Authorization": f"Bearer {api_key}",
            "Content-Type": "application/json",
            "User-Agent": "batchkling",
        }
        self._timeout = DEFAULT_TIMEOUT.as_dict()
        self.gate = gate

    async def _call(
        self,
        endpoint: _Endpoint,
        body: Mapping[str, Any],
        before_send: Callable[[], Awaitable[bool]] | None = None,
    ) -> Any:
        # Built before the gate, so that only ``before_send`` stands between the
        # rate slot and the request leaving.
        request = httpx.Request(
            "POST",
            self._base + endpoint.path,
            content=_json.dumps(body, separators=(",", ":")).encode("utf-8"),
            headers=self._headers,
            extensions={"timeout": self._timeout},
        )
        if self.gate is not None:
            await self.gate.wait()
        if before_send is not None and not await before_send():
            return _WITHHELD
        resp = await self._send(request, endpoint.name)
        try:
            data = failures.unwrap(resp, endpoint.name, endpoint.by_status)
        except (TransientError, InDoubtError) as exc:
            # The server answered that it is overloaded or failing: everyone waits.
            if self.gate is not None and exc.status_code is not None:
                self.gate.pushed_back(exc.retry_after)
            raise
        if self.gate is not None:
            self.gate.succeeded()
        return data

    async def _send(self, request: httpx.Request, what: str) -> httpx.Response:
        try:
            resp = await self._transport.handle_async_request(request)
            try:
                await resp.aread()
            finally:
                await resp.aclose()
        except _NOT_SENT as exc:
            raise TransientError(f"{what}: could not connect ({type(exc).__name__}).") from exc
        except httpx.HTTPError as exc:
            raise InDoubtError(f"{what}: no answer ({type(exc).__name__}: {exc}).") from exc
        except Exception as exc:  # a transport that fails in a way httpx does not wrap
            raise InDoubtError(f"{what}: no answer ({type(exc).__name__}).") from exc
        return resp

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
        data = await self._call(_CREATE, body, before_send)
        if data is _WITHHELD:
            return None
        task_id = data.get("task_id") if isinstance(data, dict) else None
        if not isinstance(task_id, str) or not task_id:
            raise InDoubtError("create_tool_task: a success without a task id.")
        return task_id

    async def query(self, task_id: str) -> answers.TaskStatus:
        """The status of one task."""
        data = await self._call(_QUERY, {"task_id": task_id})
        if not isinstance(data, dict):
            raise TransientError("query_tool_task_status: a success without data.")
        return answers.TaskStatus.from_data(data, task_id)

    async def account(self) -> answers.Account:
        """The account's balance and subscription (free of charge)."""
        data = await self._call(_ACCOUNT, {})
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
        data = await self._call(_USAGE, params)
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
        except httpx.HTTPError as exc:
            raise TransientError(f"download: interrupted ({type(exc).__name__}).") from exc
        if expected is not None and expected.isdigit() and int(expected) != size:
            raise TransientError(f"download: got {size} of {expected} bytes.")
        if size == 0:
            raise TransientError("download: an empty file.")
        return size, digest.hexdigest()
