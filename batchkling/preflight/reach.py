"""Whether the API could be reached at all, and if not, why, in words a user can act on.

A request that failed to connect (refused, a name that does not resolve, a
connect timeout) never left this machine: nothing was sent, so nothing can have
been charged. ``unreached_reason`` names such a failure from the exception chain
httpx raises; ``ReachWatch`` sits in front of a run's transport and remembers
whether any API request got an answer, so that a run that never reached the API
can say so instead of leaving every job pending without a word.
"""

from __future__ import annotations

import errno
import socket
import time
from collections.abc import Callable

import httpx

from batchkling.api.client import QUERY_PATH

__all__ = ["ReachWatch", "unreached_reason"]

_CONNECT_FAILURES = (httpx.ConnectError, httpx.ConnectTimeout)


def _chain(exc: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in seen:
        seen.append(current)
        current = current.__cause__ or current.__context__
    return seen


def unreached_reason(exc: BaseException) -> str | None:
    """Why a request could not connect (``connection refused``, ...), or None if it did."""
    chain = _chain(exc)
    if not any(isinstance(e, _CONNECT_FAILURES) for e in chain):
        return None
    for e in chain:
        if isinstance(e, (httpx.ConnectTimeout, TimeoutError, socket.timeout)):
            return "connection timed out"
        if isinstance(e, socket.gaierror):
            return "the host name could not be resolved"
        if isinstance(e, ConnectionRefusedError) or (
            isinstance(e, OSError) and e.errno == errno.ECONNREFUSED
        ):
            return "connection refused"
    if any(isinstance(e, httpx.ConnectTimeout) for e in chain):
        return "connection timed out"
    return "could not connect"


class ReachWatch(httpx.AsyncBaseTransport):
    """A transport that passes every request on and counts what reached the API.

    ``answered`` counts answers of any status, ``not_found`` the 404s of endpoints that
    name no task (a base URL with a wrong path answers nothing else; a query's 404 may
    be a task gone from the account); ``unreached`` the requests that could
    not connect, ``reason`` the latest such failure and ``since`` when the first one
    happened (``clock`` time). It passes requests on to the transport given to
    ``wrap``; closing it closes nothing: the caller owns that transport.
    """

    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._inner: httpx.AsyncBaseTransport | None = None
        self._clock = clock
        self.answered = 0
        self.not_found = 0
        self.unreached = 0
        self.reason: str | None = None
        self.since: float | None = None
        self.last: float | None = None

    def wrap(self, inner: httpx.AsyncBaseTransport) -> ReachWatch:
        """Watch the requests sent through ``inner``; returns itself, the transport to use."""
        self._inner = inner
        return self

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if self._inner is None:
            raise RuntimeError("ReachWatch.wrap was not called")
        try:
            response = await self._inner.handle_async_request(request)
        except Exception as exc:
            reason = unreached_reason(exc)
            if reason is not None:
                now = self._clock()
                self.unreached += 1
                self.reason = reason
                self.since = now if self.since is None else self.since
                self.last = now
            raise
        self.answered += 1
        if response.status_code == 404 and not request.url.path.endswith(QUERY_PATH):
            self.not_found += 1
        return response

    @property
    def never_reached(self) -> bool:
        """Requests were tried and none of them got an answer."""
        return self.answered == 0 and self.unreached > 0

    @property
    def only_not_found(self) -> bool:
        """Every answer was a 404: no API at this base URL."""
        return self.answered > 0 and self.not_found == self.answered

    @property
    def tried_for(self) -> float:
        """Seconds from the first failure to connect to the last one."""
        if self.since is None or self.last is None:
            return 0.0
        return self.last - self.since
