"""Fault injection and limits: the decisions, not the HTTP that carries them out.

Every random choice comes from one seeded generator that is separate from the
one drawing generation times, so switching a fault on mid-run does not change
how long the tasks take. The clock is always passed in.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import random
from collections import deque

__all__ = ["Faults", "RateLimiter", "UrlSigner", "max_in_window", "retry_after_header"]

SERVER_ERRORS = (500, 502, 503)


class Faults:
    """Seeded draws for the probabilistic faults."""

    def __init__(self, seed: int | None) -> None:
        self._rng = random.Random(None if seed is None else f"{seed}:faults")

    def _hit(self, rate: float) -> bool:
        return rate > 0.0 and self._rng.random() < rate

    def server_error(self, rate: float) -> int | None:
        """500, 502 or 503 with probability ``rate``, else None."""
        return self._rng.choice(SERVER_ERRORS) if self._hit(rate) else None

    def lose_response(self, rate: float) -> bool:
        """Whether to drop the connection instead of answering a create."""
        return self._hit(rate)

    def cut_download(self, rate: float) -> bool:
        """Whether to cut a video response off mid-body."""
        return self._hit(rate)

    def latency(self, low: float, high: float) -> float:
        """Seconds to hold an answer back."""
        if high <= 0.0:
            return 0.0
        return self._rng.uniform(low, high)


class RateLimiter:
    """At most N accepted requests per key in any sliding window of one second.

    A sliding log rather than a token bucket: it is the rule a client-side
    limiter is measured against (``max_in_window``), so the two agree exactly.
    Refused requests do not enter the log, so waiting out ``Retry-After`` works.
    """

    WINDOW = 1.0

    def __init__(self) -> None:
        self._logs: dict[str, deque[float]] = {}

    def check(self, key: str, now: float, limit: int | None) -> float | None:
        """None if the request is accepted (and logged), else the seconds until it would be."""
        if limit is None:
            return None
        log = self._logs.get(key)
        if log is None:
            log = self._logs[key] = deque()
        while log and log[0] <= now - self.WINDOW:
            log.popleft()
        if len(log) >= limit:
            return max(log[-limit] + self.WINDOW - now, 0.0)
        log.append(now)
        return None

    def reset(self) -> None:
        """Forget every key's log."""
        self._logs.clear()


def retry_after_header(seconds: float) -> str:
    """A Retry-After value: whole seconds, rounded up, at least 1."""
    return str(max(1, math.ceil(seconds)))


def max_in_window(times: list[float], window: float = 1.0) -> int:
    """The largest number of ``times`` inside any half-open window ``[t, t + window)``."""
    ordered = sorted(times)
    best = start = 0
    for end, t in enumerate(ordered):
        while ordered[start] <= t - window:
            start += 1
        best = max(best, end - start + 1)
    return best


class UrlSigner:
    """Expiring output URLs: ``exp`` (epoch milliseconds) and an HMAC over task and expiry.

    The secret is fixed: the point is that a client cannot extend a URL by
    editing ``exp``, not secrecy, and URLs stay valid across a restart.
    """

    _SECRET = b"batchkling-emulator-output-urls"

    def sign(self, task_id: str, exp_ms: int) -> str:
        """The signature of one task's URL expiring at ``exp_ms``."""
        msg = f"{task_id}:{exp_ms}".encode()
        return hmac.new(self._SECRET, msg, hashlib.sha256).hexdigest()[:32]

    def query(self, task_id: str, now: float, ttl: float) -> str:
        """The query string of a fresh URL valid for ``ttl`` seconds from ``now``."""
        exp_ms = math.ceil((now + ttl) * 1000)
        return f"exp={exp_ms}&sig={self.sign(task_id, exp_ms)}"

    def refusal(self, task_id: str, exp: str | None, sig: str | None, now: float) -> str | None:
        """Why a signed URL is refused, or None if it is valid now."""
        if exp is None or sig is None:
            return "this URL needs exp and sig"
        try:
            exp_ms = int(exp)
        except ValueError:
            return "exp is invalid"
        if not hmac.compare_digest(self.sign(task_id, exp_ms), sig):
            return "signature does not match"
        if now * 1000 > exp_ms:
            return "this URL has expired; query the task again for a fresh one"
        return None
