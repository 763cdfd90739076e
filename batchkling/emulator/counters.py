"""Request counters: what the server saw, per endpoint, status and key (read by the stats)."""

from __future__ import annotations

from collections import defaultdict, deque
from typing import Any

from batchkling.emulator.faults import max_in_window

__all__ = ["MAX_TIMES_PER_KEY", "Counters"]

# Enough for any test or benchmark run; a long-lived demo server stays bounded.
MAX_TIMES_PER_KEY = 100_000


class Counters:
    """Counts of requests, answers and injected faults."""

    def __init__(self) -> None:
        self.requests: defaultdict[str, defaultdict[str, int]] = defaultdict(
            lambda: defaultdict(int)
        )
        self.error_codes: defaultdict[str, defaultdict[str, int]] = defaultdict(
            lambda: defaultdict(int)
        )
        self.faults: defaultdict[str, int] = defaultdict(int)
        self.request_times: dict[str, deque[float]] = {}

    def arrival(self, key: str, now: float) -> None:
        """An API request arrived with this key ("" when it carried none)."""
        times = self.request_times.get(key)
        if times is None:
            times = self.request_times[key] = deque(maxlen=MAX_TIMES_PER_KEY)
        times.append(now)

    def answer(self, endpoint: str, status: int | str, error_code: int | None = None) -> None:
        """One answer: an HTTP status, or "lost" / "cut" for a dropped connection."""
        self.requests[endpoint][str(status)] += 1
        if error_code is not None:
            self.error_codes[endpoint][str(error_code)] += 1

    def fault(self, name: str) -> None:
        """One injected fault or enforced limit, by name."""
        self.faults[name] += 1

    def to_json(self) -> dict[str, Any]:
        """The counters as JSON."""
        times = {key: list(values) for key, values in self.request_times.items()}
        return {
            "requests": {e: dict(s) for e, s in self.requests.items()},
            "error_codes": {e: dict(c) for e, c in self.error_codes.items()},
            "faults": dict(self.faults),
            "request_times": times,
            "max_requests_per_second": {key: max_in_window(t) for key, t in times.items()},
        }
