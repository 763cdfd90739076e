"""Matching in-doubt creates to charges in the credits usage (pure)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

from batchkling.reconcile.match import Charge, in_doubt_windows, match, parse_ts, usage_since
from batchkling.state import fold

T0 = datetime(2026, 11, 24, 3, 0, 0, tzinfo=timezone.utc)


def iso(dt: datetime) -> str:
    return dt.isoformat().replace("+00:00", "Z")


def ev(event: str, job: str | None, at: float, **f: Any) -> dict[str, Any]:
    return {"ts": iso(T0 + timedelta(seconds=at)), "event": event, "job": job, **f}


def doubt(job: str, start: float, end: float, credits: int = 1000) -> list[dict[str, Any]]:
    return [
        ev("intent", job, start, credits=credits, fingerprint="f" * 64),
        ev("in_doubt", job, end, error="lost"),
    ]


def charge(cid: str, task: str, at: float, credits: float = 1000) -> Charge:
    return Charge(id=cid, task_id=task, credits=credits, at=T0 + timedelta(seconds=at))


NOW = T0 + timedelta(seconds=1000)
FROM = T0 - timedelta(minutes=2)


def test_parse_ts_accepts_z_and_offsets() -> None:
    """RFC 3339 with Z or an offset parses to the same UTC instant."""
    assert parse_ts("2026-11-24T03:00:00Z") == T0
    assert parse_ts("2026-11-24T04:00:00+01:00") == T0


def test_unique_charge_in_window_is_adopted() -> None:
    """One unclaimed charge of the right price inside the window is the job's task."""
    st = fold(doubt("a", 10, 11))
    r = match(st, [charge("u1", "t1", 10.5)], now=NOW, covered_from=FROM, settle=120)
    assert [(j, c.task_id) for j, c in r.adopted] == [("a", "t1")]
    assert r.orphans == () and r.not_created == ()


def test_known_task_is_settled_not_adopted() -> None:
    """A charge whose task id the ledger knows is settled; it matches nobody."""
    events = [
        ev("intent", "b", 5, credits=1000, fingerprint="f" * 64),
        ev("created", "b", 5.1, task_id="tb"),
        *doubt("a", 10, 11),
    ]
    r = match(fold(events), [charge("u0", "tb", 10.5)], now=NOW, covered_from=FROM, settle=120)
    assert r.settled == 1 and r.adopted == ()


def test_no_charge_after_settling_means_never_created() -> None:
    """With the usage covering the window and settled, the create never happened."""
    st = fold(doubt("a", 10, 11))
    r = match(st, [], now=NOW, covered_from=FROM, settle=120)
    assert r.not_created == ("a",)
    early = match(st, [], now=T0 + timedelta(seconds=60), covered_from=FROM, settle=120)
    assert early.not_created == () and early.waiting == ("a",)
    uncovered = match(st, [], now=NOW, covered_from=T0, settle=120)
    assert uncovered.not_created == ()


def test_two_simultaneous_same_price_stay_in_doubt() -> None:
    """Two jobs of one price with overlapping windows and two charges: ambiguous, both kept."""
    st = fold(doubt("a", 10, 12) + doubt("b", 10.5, 12.5))
    r = match(st, [charge("u1", "t1", 11), charge("u2", "t2", 11.5)], now=NOW, covered_from=FROM)
    assert r.adopted == ()
    assert {j for j, _ in r.ambiguous} == {"a", "b"}
    assert all(len(c) == 2 for _, c in r.ambiguous)


def test_price_separates_overlapping_jobs() -> None:
    """Overlapping windows are told apart by price."""
    st = fold(doubt("a", 10, 12, credits=1000) + doubt("b", 10, 12, credits=1500))
    r = match(
        st, [charge("u1", "t1", 11, 1500), charge("u2", "t2", 11, 1000)], now=NOW, covered_from=FROM
    )
    assert dict((j, c.task_id) for j, c in r.adopted) == {"a": "t2", "b": "t1"}


def test_unmatched_charge_is_an_orphan() -> None:
    """A charge no ledger line claims and no job fits is reported as an orphan."""
    st = fold(doubt("a", 10, 11))
    r = match(
        st, [charge("u1", "t1", 10.5), charge("u9", "t9", 500, 4500)], now=NOW, covered_from=FROM
    )
    assert [c.task_id for c in r.orphans] == ["t9"]
    assert [j for j, _ in r.adopted] == ["a"]


def test_refunds_and_other_tools_are_ignored() -> None:
    """Negative records (refunds) and other task types never match."""
    st = fold(doubt("a", 10, 11))
    other = Charge(
        id="x", task_id="tx", credits=1000, at=T0 + timedelta(seconds=10.5), task_type="tool_other"
    )
    r = match(st, [charge("r", "t1", 10.5, -1000), other], now=NOW, covered_from=FROM)
    assert r.adopted == () and r.not_created == ("a",)


def test_killed_mid_create_window_ends_at_next_run() -> None:
    """An intent with no outcome (process killed) has a window up to the next run's start."""
    events = [
        ev("run_started", None, 0, pid=1),
        ev("intent", "a", 10, credits=1000, fingerprint="f" * 64),
        ev("run_started", None, 50, pid=2),
    ]
    (w,) = in_doubt_windows(fold(events))
    assert w.end == T0 + timedelta(seconds=50)
    assert usage_since([w]) == T0 + timedelta(seconds=10) - timedelta(minutes=1)


def test_near_charge_blocks_never_created() -> None:
    """A same-price charge just outside the window keeps the job in doubt: never pay twice."""
    st = fold(doubt("a", 10, 11))
    r = match(st, [charge("u1", "t1", 30)], now=NOW, covered_from=FROM, settle=120)
    assert r.not_created == () and r.adopted == ()


def test_clock_offset_is_calibrated_from_known_tasks() -> None:
    """Known tasks pin the provider's clock; a skewed charge is then adopted exactly."""
    skew = 5.0  # the provider's clock runs 5 s behind ours
    events = [
        ev("intent", "k", 1, credits=1000, fingerprint="f" * 64),
        ev("created", "k", 1.01, task_id="tk"),
        *doubt("a", 10, 10.01),
        *doubt("b", 10.02, 10.03),
    ]
    st = fold(events)
    charges = [
        charge("u0", "tk", 1.005 - skew),
        charge("u1", "t1", 10.005 - skew),
        charge("u2", "t2", 10.025 - skew),
    ]
    r = match(st, charges, now=NOW, covered_from=FROM, slack=0.0)
    assert dict((j, c.task_id) for j, c in r.adopted) == {"a": "t1", "b": "t2"}
    uncalibrated = match(fold(events[2:]), charges[1:], now=NOW, covered_from=FROM, slack=1.0)
    assert uncalibrated.adopted == ()  # uncalibrated, a 5 s skew is outside the 1 s slack
