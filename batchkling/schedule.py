"""When to send, when to retry, when to poll: pure arithmetic, the clock passed in.

- ``Pacer``: GCRA with a burst of one. Requests are spaced evenly, so any window
  of the rate's period holds at most R of them, as a token bucket (which lets R
  through at once and then refills, nearly 2R in one window) does not.
- ``backoff``: exponential backoff with full jitter.
- ``RetryPolicy``: the one retry policy: how many attempts, and the wait before
  each retry (the server's ``Retry-After`` when it sent one, else backoff).
- ``PollPlanner``: when to poll a running task next, learning how long tasks of
  the same mode and duration take in this run.
"""

from __future__ import annotations

import bisect
import math
import re
from dataclasses import dataclass, field

from batchkling.errors import UsageError

__all__ = [
    "DOWNLOAD_GRACE",
    "DOWNLOAD_MIN_RATE",
    "PACING_MARGIN",
    "Pacer",
    "PollPlanner",
    "Rate",
    "RetryPolicy",
    "backoff",
    "backoff_step",
    "download_behind",
    "download_deadline",
    "parse_rate",
    "retry_after_delay",
]

# Spacing requests a little wider than period/R keeps the count in any window at
# or under R even when requests reach the server with a few milliseconds of jitter:
# the margin over R requests (2% of the window: 20 ms for one second) absorbs it.
PACING_MARGIN = 0.02


@dataclass(frozen=True)
class Rate:
    """At most ``count`` requests in any window of ``period`` seconds."""

    count: float
    period: float

    @property
    def interval(self) -> float:
        """The even spacing between two requests, with the safety margin."""
        return self.period / self.count * (1.0 + PACING_MARGIN)

    def __str__(self) -> str:
        unit = "s" if self.period == 1 else "min"
        count = int(self.count) if float(self.count).is_integer() else self.count
        return f"{count}/{unit}"


_RATE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(?:/\s*(s|sec|second|m|min|minute))?\s*$", re.I)


def parse_rate(text: str) -> Rate:
    """Parse ``N/s``, ``N/min`` or a bare number (per second)."""
    m = _RATE_RE.match(text)
    if m is None or float(m.group(1)) <= 0:
        raise UsageError(
            f"--rate {text!r} is not a rate.", hint="Use N/s, N/min or a number per second."
        )
    unit = (m.group(2) or "s").lower()
    return Rate(count=float(m.group(1)), period=1.0 if unit.startswith("s") else 60.0)


@dataclass
class Pacer:
    """GCRA pacing state: ``reserve(now)`` says when the next request may go.

    The theoretical arrival time (TAT) advances by one interval per request, so
    requests that queue up go out one interval apart, never together.
    """

    rate: Rate
    tat: float = -math.inf

    def reserve(self, now: float) -> float:
        """Book the next slot and return the time at which it may be used (>= now)."""
        at = max(now, self.tat)
        self.tat = at + self.rate.interval
        return at

    def push_back(self, until: float) -> None:
        """Nothing may go before ``until`` (the server asked us to wait)."""
        self.tat = max(self.tat, until)


def backoff_step(attempt: int, *, base: float = 1.0, cap: float = 60.0) -> float:
    """The exponential step of attempt ``attempt`` (from 0): ``min(cap, base * 2**attempt)``."""
    return min(cap, base * (2.0 ** min(attempt, 62)))


def backoff(attempt: int, *, base: float = 1.0, cap: float = 60.0, rand: float) -> float:
    """Full-jitter exponential backoff: a delay in [0, min(cap, base * 2**attempt)).

    ``attempt`` counts from 0; ``rand`` is a uniform draw in [0, 1).
    """
    return rand * backoff_step(attempt, base=base, cap=cap)


def retry_after_delay(retry_after: float, *, rand: float, spread: float = 0.25) -> float:
    """Honour ``Retry-After`` plus a small positive jitter so waiters do not all wake at once."""
    return max(0.0, retry_after) + rand * spread * max(1.0, retry_after) * 0.4


@dataclass(frozen=True)
class RetryPolicy:
    """How many attempts an operation that provably had no effect gets, and the waits between.

    The wait before retry ``n`` (from 0) honours the server's ``Retry-After`` when
    the failure carried one. Otherwise it is exponential backoff: with
    ``full_jitter``, a uniform draw below the step, which keeps the many jobs of
    a run from retrying in step; without, the whole step plus a small spread,
    for a lone call that should not come back sooner than the step.
    """

    attempts: int
    base: float = 1.0
    cap: float = 60.0
    full_jitter: bool = True

    def delay(self, retry: int, *, retry_after: float | None = None, rand: float) -> float:
        """Seconds to wait before retry ``retry``; ``rand`` is a uniform draw in [0, 1)."""
        if retry_after is not None:
            return retry_after_delay(retry_after, rand=rand)
        if self.full_jitter:
            return backoff(retry, base=self.base, cap=self.cap, rand=rand)
        return retry_after_delay(backoff_step(retry, base=self.base, cap=self.cap), rand=rand)


@dataclass
class PollPlanner:
    """Chooses the delay before the next poll of a running task.

    Without history the delays grow geometrically from ``min_interval`` to
    ``max_interval``. Once tasks of the same class (mode and duration) have
    finished in this run, polls are sparse until the fastest of them would have
    finished, dense through the range where most of them finished, and back off
    again after it. Every delay is at least ``min_interval``; only the wait until
    the earliest finish seen may exceed ``max_interval``.
    """

    min_interval: float
    max_interval: float
    growth: float = 1.5
    _history: dict[tuple[str, float], list[float]] = field(default_factory=dict)
    _running: dict[tuple[str, float], dict[str, float]] = field(default_factory=dict)

    def observe(self, klass: tuple[str, float], duration: float) -> None:
        """Record how long a finished task of this class took (created to finished)."""
        bisect.insort(self._history.setdefault(klass, []), duration)

    def started(self, klass: tuple[str, float], key: str, created: float) -> None:
        """A task of this class is running since ``created`` (clock time)."""
        self._running.setdefault(klass, {})[key] = created

    def stopped(self, klass: tuple[str, float], key: str) -> None:
        """The task is no longer followed."""
        self._running.get(klass, {}).pop(key, None)

    def _bounds(self, klass: tuple[str, float], now: float | None) -> tuple[float, float] | None:
        seen = self._history.get(klass)
        if not seen or len(seen) < 3:
            return None
        lo = seen[int(0.05 * (len(seen) - 1))]
        hi = seen[math.ceil(0.95 * (len(seen) - 1))]
        running = self._running.get(klass)
        if now is not None and running:
            # Tasks still running are longer than their age: without this, the
            # first finishers alone would make every slower task look overdue.
            hi = max(hi, now - min(running.values()))
        return lo, hi

    def _clamp(self, delay: float) -> float:
        return min(self.max_interval, max(self.min_interval, delay))

    def next_delay(
        self, klass: tuple[str, float], elapsed: float, polls: int, *, now: float | None = None
    ) -> float:
        """Seconds to wait before the next poll, ``elapsed`` seconds after creation."""
        if self.min_interval >= self.max_interval:
            return self.min_interval  # the user pinned the interval: poll at a fixed pace
        bounds = self._bounds(klass, now)
        if bounds is None:
            return self._clamp(self.min_interval * self.growth**polls)
        lo, hi = bounds
        # About five polls across the range where most tasks of the class finished:
        # detection lags a tenth of that range on average, at a bounded cost.
        dense = self._clamp((hi - lo) / 5.0)
        if elapsed < lo:
            # Nothing of this class has finished this early: sleep until it might,
            # even past the upper bound (which caps the wait for a finishing task).
            return max(self.min_interval, lo - elapsed)
        if elapsed <= hi:
            return dense
        # Slower than almost all before it: back off in proportion to the overshoot.
        return self._clamp(max(dense, (elapsed - hi) / 2.0))


# A download may take a minute whatever its size, then must average 64 KiB/s: slow
# enough for any real link, fast enough that a server sending a byte every few
# seconds cannot hold a job for ever.
DOWNLOAD_GRACE = 60.0
DOWNLOAD_MIN_RATE = 64 * 1024  # bytes per second


def download_deadline(size: int) -> float:
    """Seconds a download of ``size`` bytes may take in all (its ``Content-Length``)."""
    return DOWNLOAD_GRACE + max(size, 0) / DOWNLOAD_MIN_RATE


def download_behind(elapsed: float, received: int) -> bool:
    """Whether a download of unknown size has fallen behind the rate it must keep.

    ``elapsed`` seconds since it started, ``received`` bytes so far: behind once
    the bytes no longer cover ``download_deadline`` of themselves.
    """
    return elapsed > download_deadline(received)
