"""The sjinn API client on one ``httpx.AsyncClient``: request bodies, answers, error mapping.

Every API request (never a download) first passes the ``RequestGate``, which
paces requests evenly (GCRA) and holds everyone back together when the server
says it is overloaded. Foreign exceptions are translated here, at the boundary,
into the tree of ``batchkling.errors``; the translation decides the one thing
that matters for money: whether a failed create may have been charged.

The API key goes into the ``Authorization`` header and nowhere else: no message
built here contains a header.
"""

from __future__ import annotations

import email.utils
import hashlib
import json as _json
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import httpx

from batchkling.api.answers import Account, TaskStatus, UsagePage, UsageRecord, pick_video
from batchkling.api.gate import RequestGate
from batchkling.errors import (
    AuthError,
    InDoubtError,
    InsufficientBalanceError,
    MembershipError,
    RefusedError,
    TaskNotFoundError,
    TransientError,
)
from batchkling.model import USAGE_TASK_TYPE

__all__ = [
    "CREATE_PATH",
    "DEFAULT_TIMEOUT",
    "Account",
    "RequestGate",
    "SjinnClient",
    "TaskStatus",
    "UsagePage",
    "UsageRecord",
    "make_http_client",
    "make_transport",
    "parse_retry_after",
    "pick_video",
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


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or an HTTP date)."""
    if value is None:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


# -- the client ------------------------------------------------------------------


_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout, httpx.UnsupportedProtocol)


class SjinnClient:
    """Typed calls to the sjinn Tool API."""

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
        # API calls go straight to the transport when given: the client's cookie,
        # auth and redirect machinery costs CPU on every poll and is not needed here.
        self._transport = transport
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
        method: str,
        path: str,
        *,
        json: Mapping[str, Any] | None = None,
        create: bool = False,
        gated: bool = False,
    ) -> Any:
        if self.gate is not None and not gated:
            await self.gate.wait()
        what = path.rsplit("/", 1)[-1]
        try:
            resp = await self._send(method, path, json or {})
        except _NOT_SENT as exc:
            raise TransientError(f"{what}: could not connect ({type(exc).__name__}).") from exc
        except httpx.HTTPError as exc:
            raise InDoubtError(f"{what}: no answer ({type(exc).__name__}: {exc}).") from exc
        except Exception as exc:  # a transport that fails in a way httpx does not wrap
            raise InDoubtError(f"{what}: no answer ({type(exc).__name__}).") from exc
        try:
            return self._unwrap(resp, what, create=create)
        except TransientError as exc:
            if self.gate is not None:
                self.gate.pushed_back(exc.retry_after)
            raise
        except InDoubtError as exc:
            if self.gate is not None and exc.status_code is not None:
                self.gate.pushed_back(exc.retry_after)
            raise

    async def _send(self, method: str, path: str, body: Mapping[str, Any]) -> httpx.Response:
        request = httpx.Request(
            method,
            self._base + path,
            content=_json.dumps(body, separators=(",", ":")).encode("utf-8"),
            headers=self._headers,
            extensions={"timeout": self._timeout},
        )
        if self._transport is None:
            return await self._http.send(request)
        response = await self._transport.handle_async_request(request)
        try:
            await response.aread()
        finally:
            await response.aclose()
        return response

    def _unwrap(self, resp: httpx.Response, what: str, *, create: bool) -> Any:
        code = resp.status_code
        retry_after = parse_retry_after(resp.headers.get("Retry-After"))
        body: Any = None
        try:
            body = resp.json()
        except ValueError:
            body = None
        wrapped = isinstance(body, dict) and "success" in body
        if code == 200 and wrapped and body.get("success") is True:
            if self.gate is not None:
                self.gate.succeeded()
            return body.get("data")
        if wrapped and body.get("success") is False and code not in (429, 500, 502, 503, 504):
            self._functional(body, what, code, retry_after)
        kind = f"{what}: HTTP {code}"
        if code == 429:
            raise TransientError(
                f"{kind} (rate limited).", status_code=code, retry_after=retry_after
            )
        if code == 503 and retry_after is not None:
            raise TransientError(
                f"{kind} (unavailable).", status_code=code, retry_after=retry_after
            )
        if code == 408:
            raise TransientError(f"{kind} (request timeout).", status_code=code)
        if code in (401, 403):
            raise AuthError(
                f"The API key was not accepted (HTTP {code}).",
                hint="Check SJINN_API_KEY or --api-key-file.",
            )
        if code == 402:
            raise InsufficientBalanceError("The account's balance is too low (HTTP 402).")
        if code >= 500 or code == 200:
            # The server may have acted before failing: a create may be charged.
            raise InDoubtError(
                f"{kind} (no usable answer).", status_code=code, retry_after=retry_after
            )
        if code == 404 and not create:
            raise TaskNotFoundError(f"{kind} (not found).", status_code=code)
        raise RefusedError(f"{kind} (refused).", status_code=code)

    @staticmethod
    def _functional(
        body: Mapping[str, Any], what: str, code: int, retry_after: float | None
    ) -> None:
        err = body.get("error_code")
        msg = str(body.get("errorMsg") or "").strip() or "no message"
        if err == 401:
            raise AuthError(
                f"The API key was not accepted ({msg}).",
                hint="Check SJINN_API_KEY or --api-key-file.",
            )
        if err == 101:
            raise MembershipError(
                f"The account has no active membership ({msg}).",
                hint="Task creation needs an active subscription.",
            )
        if err == 100:
            raise InsufficientBalanceError(
                f"The account's balance is too low ({msg}).",
                hint="Top up the account, then run again to resume.",
            )
        if "not found" in msg.lower():
            raise TaskNotFoundError(f"{what}: {msg}.", status_code=code, error_code=err)
        if err == 400:
            raise RefusedError(
                f"{what}: the API refused the input: {msg}.", status_code=code, error_code=400
            )
        # Any other refusal (a limit, an unknown code) created nothing: retry later.
        raise TransientError(
            f"{what}: refused with error {err}: {msg}.",
            status_code=code,
            error_code=err if isinstance(err, int) else None,
            retry_after=retry_after,
        )

    # -- endpoints ---------------------------------------------------------------

    async def pass_gate(self) -> None:
        """Wait for a request slot now, for a request that follows at once (``gated=True``)."""
        if self.gate is not None:
            await self.gate.wait()

    async def create(self, body: Mapping[str, Any], *, gated: bool = False) -> str:
        """Create a task; return its id. ``InDoubtError`` means it may have been charged.

        ``gated``: the caller already passed the gate (``pass_gate``) just before.
        """
        data = await self._call("POST", CREATE_PATH, json=body, create=True, gated=gated)
        task_id = data.get("task_id") if isinstance(data, dict) else None
        if not isinstance(task_id, str) or not task_id:
            raise InDoubtError("create_tool_task: a success without a task id.")
        return task_id

    async def query(self, task_id: str) -> TaskStatus:
        """The status of one task."""
        data = await self._call("POST", QUERY_PATH, json={"task_id": task_id})
        if not isinstance(data, dict):
            raise TransientError("query_tool_task_status: a success without data.")
        raw_status = data.get("status")
        status = raw_status if isinstance(raw_status, int) else None
        urls = data.get("output_urls") or ()
        error = data.get("error") or data.get("error_msg")
        return TaskStatus(
            task_id=str(data.get("task_id") or task_id),
            status=status,
            output_urls=tuple(str(u) for u in urls if isinstance(u, str)),
            error=str(error) if error else None,
        )

    async def account(self) -> Account:
        """The account's balance and subscription (free of charge)."""
        data = await self._call("POST", ACCOUNT_PATH, json={})
        data = data if isinstance(data, dict) else {}
        balance = data.get("balances")
        return Account(
            email=data.get("email"),
            name=data.get("name"),
            balance=float(balance) if isinstance(balance, (int, float)) else None,
            subscription=data.get("subscription")
            if isinstance(data.get("subscription"), dict)
            else None,
        )

    async def credits_usage(
        self,
        *,
        limit: int = 200,
        cursor: str | None = None,
        start_time: str | None = None,
        end_time: str | None = None,
        task_type: str | None = USAGE_TASK_TYPE,
    ) -> UsagePage:
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
        data = await self._call("POST", USAGE_PATH, json=params)
        data = data if isinstance(data, dict) else {}
        records = []
        for rec in data.get("records") or ():
            if not isinstance(rec, dict):
                continue
            records.append(
                UsageRecord(
                    id=str(rec.get("id")),
                    task_type=str(rec.get("task_type")),
                    task_id=rec.get("task_id"),
                    cost_credits=float(rec.get("cost_credits") or 0),
                    create_time=str(rec.get("create_time")),
                )
            )
        nxt = data.get("next_cursor") or data.get("nextCursor") or data.get("cursor")
        return UsagePage(records=tuple(records), next_cursor=str(nxt) if nxt else None)

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
