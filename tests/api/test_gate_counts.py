"""The gate counts the answers that pushed back, by kind, and the time it held requests for them."""

from __future__ import annotations

from batchkling.api.gate import RequestGate
from batchkling.schedule import Rate


class _Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _gate(clock: _Clock) -> RequestGate:
    return RequestGate(Rate(10, 1.0), clock=clock, rand=lambda: 0.0)


def test_429_and_5xx_are_counted_apart() -> None:
    gate = _gate(_Clock())
    gate.pushed_back(None, 429)
    gate.pushed_back(None, 503)
    gate.pushed_back(None, 500)
    gate.pushed_back(None, None)  # a transport failure is neither
    assert (gate.answers_429, gate.answers_5xx) == (1, 2)


def test_overlapping_pauses_count_once() -> None:
    clock = _Clock()
    gate = _gate(clock)
    gate.pushed_back(10.0, 429)
    assert gate.paused_seconds == 10.0  # no jitter with rand 0
    assert gate.paused_for() == 10.0
    clock.now += 4.0
    gate.pushed_back(8.0, 429)  # reaches 2 s past the pause under way: adds 2 s
    assert gate.paused_seconds == 12.0
    clock.now += 20.0
    assert gate.paused_for() == 0.0
    gate.pushed_back(10.0, 429)
    assert gate.paused_seconds == 22.0
