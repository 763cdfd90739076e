"""The gate every API request passes: even pacing, and one shared pause when pushed back."""

from __future__ import annotations

import random
import time
from collections.abc import Callable

import anyio

from batchkling.schedule import Pacer, Rate, retry_after_delay

__all__ = ["RequestGate"]


class RequestGate:
    """Evenly paced API requests, and one shared pause when the server pushes back.

    A 429 or 503 with ``Retry-After`` holds every request back until then (the
    limit is the account's, not one job's). Repeated 429/5xx answers without one
    open a breaker: one shared pause that doubles while failures continue.
    """

    def __init__(
        self,
        rate: Rate,
        *,
        clock: Callable[[], float] = time.monotonic,
        rand: Callable[[], float] = random.random,
        breaker_threshold: int = 3,
        breaker_cap: float = 60.0,
    ) -> None:
        self._pacer = Pacer(rate)
        self._clock = clock
        self._rand = rand
        self._paused_until = 0.0
        self._failures = 0
        self._threshold = breaker_threshold
        self._cap = breaker_cap
        self.calls = 0
        self.pauses = 0
        # What the run's summary and live display tell: answers that pushed back by
        # kind, and how long requests were held back for them in all.
        self.answers_429 = 0
        self.answers_5xx = 0
        self.paused_seconds = 0.0

    async def wait(self) -> None:
        """Return when the next API request may be sent; counts it."""
        while True:
            now = self._clock()
            if now < self._paused_until:
                await anyio.sleep(self._paused_until - now)
                continue
            at = self._pacer.reserve(now)
            if at > now:
                await anyio.sleep(at - now)
            if self._clock() >= self._paused_until:
                self.calls += 1
                return

    def succeeded(self) -> None:
        self._failures = 0

    def paused_for(self) -> float:
        """Seconds left of the shared pause (0 when requests may go)."""
        return max(0.0, self._paused_until - self._clock())

    def pushed_back(self, retry_after: float | None, status: int | None = None) -> None:
        """The server answered 429 or 5xx; ``retry_after`` is its Retry-After, if any."""
        self._failures += 1
        if status == 429:
            self.answers_429 += 1
        elif status is not None and status >= 500:
            self.answers_5xx += 1
        now = self._clock()
        pause = 0.0
        if retry_after is not None:
            pause = retry_after_delay(retry_after, rand=self._rand())
        elif self._failures >= self._threshold:
            step = min(self._cap, 2.0 ** (self._failures - self._threshold))
            pause = step / 2 + self._rand() * step / 2
        if pause > 0 and now + pause > self._paused_until:
            # Only the part not already covered by a pause under way adds to the total.
            self.paused_seconds += now + pause - max(now, self._paused_until)
            self._paused_until = now + pause
            self._pacer.push_back(self._paused_until)
            self.pauses += 1
