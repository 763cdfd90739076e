"""Pacing, backoff and poll schedules: pure arithmetic with the clock passed in."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from batchkling.errors import UsageError
from batchkling.schedule import Pacer, PollPlanner, Rate, backoff, parse_rate, retry_after_delay


@pytest.mark.parametrize(
    ("text", "count", "period"),
    [("2/s", 2, 1), ("1000/s", 1000, 1), ("30/min", 30, 60), ("5", 5, 1), ("0.5", 0.5, 1)],
)
def test_parse_rate(text: str, count: float, period: float) -> None:
    """N/s, N/min and a bare number per second are accepted."""
    rate = parse_rate(text)
    assert (rate.count, rate.period) == (count, period)


@pytest.mark.parametrize("text", ["", "fast", "0/s", "-1", "3/h"])
def test_parse_rate_rejects(text: str) -> None:
    """Anything else is a usage error."""
    with pytest.raises(UsageError):
        parse_rate(text)


def _max_in_window(times: list[float], window: float) -> int:
    best, lo = 0, 0
    for hi, t in enumerate(times):
        while t - times[lo] >= window:
            lo += 1
        best = max(best, hi - lo + 1)
    return best


@given(
    count=st.integers(min_value=1, max_value=200),
    arrivals=st.lists(st.floats(min_value=0, max_value=5), min_size=1, max_size=300),
)
def test_pacer_never_exceeds_rate_in_any_window(count: int, arrivals: list[float]) -> None:
    """Whatever the arrival pattern, no one-second window holds more than R requests."""
    pacer = Pacer(Rate(count=count, period=1.0))
    sent = [pacer.reserve(now) for now in sorted(arrivals)]
    assert sent == sorted(sent)
    assert all(s >= a for s, a in zip(sent, sorted(arrivals), strict=True))
    assert _max_in_window(sent, 1.0) <= count


def test_pacer_spaces_a_burst_evenly() -> None:
    """A burst of requests at once goes out one interval apart, not all together."""
    pacer = Pacer(Rate(count=10, period=1.0))
    sent = [pacer.reserve(0.0) for _ in range(5)]
    gaps = [b - a for a, b in itertools.pairwise(sent)]
    assert all(g == pytest.approx(0.1 * 1.02) for g in gaps)


def test_pacer_push_back() -> None:
    """A server-imposed pause moves the next slot."""
    pacer = Pacer(Rate(count=10, period=1.0))
    pacer.push_back(5.0)
    assert pacer.reserve(1.0) == 5.0


@given(st.integers(min_value=0, max_value=100), st.floats(min_value=0, max_value=0.999))
def test_backoff_is_full_jitter_capped(attempt: int, rand: float) -> None:
    """Backoff lies in [0, min(cap, base*2^attempt))."""
    d = backoff(attempt, base=1.0, cap=60.0, rand=rand)
    assert 0 <= d < min(60.0, 2.0**attempt) or d == 0


@given(st.floats(min_value=0, max_value=600), st.floats(min_value=0, max_value=0.999))
def test_retry_after_is_honoured_plus_positive_jitter(ra: float, rand: float) -> None:
    """Never earlier than Retry-After, and only a little later."""
    d = retry_after_delay(ra, rand=rand)
    assert ra <= d <= ra + 0.1 * max(1.0, ra) + 1e-9


def test_poll_planner_without_history_backs_off_within_bounds() -> None:
    """With nothing learned, delays grow geometrically and stay in [min, max]."""
    p = PollPlanner(1.0, 10.0)
    delays = [p.next_delay(("standard", 5.0), 0.0, n) for n in range(10)]
    assert delays[0] == 1.0 and delays == sorted(delays) and max(delays) == 10.0


def test_poll_planner_learns_and_polls_densely_near_finish() -> None:
    """After similar tasks finished at 100-120 s, polls are sparse before, dense within."""
    p = PollPlanner(1.0, 30.0)
    k = ("pro", 10.0)
    for d in (100, 105, 110, 115, 120):
        p.observe(k, d)
    assert p.next_delay(k, 0.0, 0) == 100.0  # straight to the earliest finish seen
    assert p.next_delay(k, 90.0, 3) == 10.0  # wake at the earliest finish seen
    assert p.next_delay(k, 105.0, 4) == 4.0  # a fifth of the spread
    assert 1.0 <= p.next_delay(k, 200.0, 9) <= 30.0
    other = ("standard", 5.0)
    assert p.next_delay(other, 0.0, 0) == 1.0  # a different class learned nothing


def test_poll_planner_pinned_interval_is_fixed() -> None:
    """MIN equal to MAX polls at exactly that pace, whatever was learned."""
    p = PollPlanner(10.0, 10.0)
    for d in (100, 105, 110):
        p.observe(("pro", 5.0), d)
    assert {p.next_delay(("pro", 5.0), e, n) for e, n in ((0, 0), (50, 3), (104, 9))} == {10.0}
