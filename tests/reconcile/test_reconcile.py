"""Matching in-doubt creates to charges in the credits usage (pure)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from batchkling.reconcile.match import (
    LOOKBACK,
    Charge,
    Listing,
    in_doubt_windows,
    match,
    parse_ts,
    usage_since,
)
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
FROM = T0 - timedelta(minutes=20)


def listing(charges: list[Charge], **kw: Any) -> Listing:
    """A read of the usage from FROM, read at NOW, complete unless told otherwise."""
    return Listing(charges=tuple(charges), since=kw.pop("since", FROM), read_at=NOW, **kw)


def known(job: str, task: str, start: float, credits: int = 1000) -> list[dict[str, Any]]:
    """A create whose answer arrived: a known task."""
    return [
        ev("intent", job, start, credits=credits, fingerprint="f" * 64),
        ev("created", job, start + 0.01, task_id=task),
    ]


# A known task before and one after the window at 10..11, both in the usage: the
# clock is measured, the span is complete, and the watermark is past the window.
AROUND = known("k1", "tk1", 5) + known("k2", "tk2", 20)
AROUND_CHARGES = [charge("uk1", "tk1", 5.005), charge("uk2", "tk2", 20.005)]


def test_parse_ts_accepts_z_and_offsets() -> None:
    """RFC 3339 with Z or an offset parses to the same UTC instant."""
    assert parse_ts("2026-11-24T03:00:00Z") == T0
    assert parse_ts("2026-11-24T04:00:00+01:00") == T0


def test_unique_charge_in_window_is_adopted() -> None:
    """One unclaimed charge of the right price inside the window is the job's task."""
    st = fold(doubt("a", 10, 11))
    r = match(st, listing([charge("u1", "t1", 10.5)], since=FROM), now=NOW, settle=120)
    assert [(j, c.task_id) for j, c in r.adopted] == [("a", "t1")]
    assert r.orphans == () and r.not_created == ()


def test_known_task_is_settled_not_adopted() -> None:
    """A charge whose task id the ledger knows is settled; it matches nobody."""
    events = [
        ev("intent", "b", 5, credits=1000, fingerprint="f" * 64),
        ev("created", "b", 5.1, task_id="tb"),
        *doubt("a", 10, 11),
    ]
    r = match(fold(events), listing([charge("u0", "tb", 10.5)], since=FROM), now=NOW, settle=120)
    assert r.settled == 1 and r.adopted == ()


def test_no_charge_in_a_proven_complete_usage_means_never_created() -> None:
    """With known tasks around the window in the usage and the window settled: never created."""
    st = fold(AROUND + doubt("a", 10, 11))
    r = match(st, listing(AROUND_CHARGES), now=NOW, settle=120)
    assert r.not_created == ("a",)
    early = match(st, listing(AROUND_CHARGES), now=T0 + timedelta(seconds=60), settle=120)
    assert early.not_created == () and early.waiting == ("a",)
    assert "settle" in early.reasons["a"]
    uncovered = match(st, listing(AROUND_CHARGES, since=T0 + timedelta(seconds=10.5)), now=NOW)
    assert uncovered.not_created == ()


def test_two_simultaneous_same_price_stay_in_doubt() -> None:
    """Two jobs of one price with overlapping windows and two charges: ambiguous, both kept."""
    st = fold(doubt("a", 10, 12) + doubt("b", 10.5, 12.5))
    r = match(st, listing([charge("u1", "t1", 11), charge("u2", "t2", 11.5)], since=FROM), now=NOW)
    assert r.adopted == ()
    assert {j for j, _ in r.ambiguous} == {"a", "b"}
    assert all(len(c) == 2 for _, c in r.ambiguous)


def test_price_separates_overlapping_jobs() -> None:
    """Overlapping windows are told apart by price."""
    st = fold(doubt("a", 10, 12, credits=1000) + doubt("b", 10, 12, credits=1500))
    r = match(
        st,
        listing([charge("u1", "t1", 11, 1500), charge("u2", "t2", 11, 1000)], since=FROM),
        now=NOW,
    )
    assert dict((j, c.task_id) for j, c in r.adopted) == {"a": "t2", "b": "t1"}


def test_unmatched_charge_is_an_orphan() -> None:
    """A charge no ledger line claims and no job fits is reported as an orphan."""
    st = fold(doubt("a", 10, 11))
    r = match(
        st, listing([charge("u1", "t1", 10.5), charge("u9", "t9", 500, 4500)], since=FROM), now=NOW
    )
    assert [c.task_id for c in r.orphans] == ["t9"]
    assert [j for j, _ in r.adopted] == ["a"]


def test_refunds_and_other_tools_are_ignored() -> None:
    """Negative records (refunds) and other task types never match."""
    st = fold(doubt("a", 10, 11))
    other = Charge(
        id="x", task_id="tx", credits=1000, at=T0 + timedelta(seconds=10.5), task_type="tool_other"
    )
    st = fold(AROUND + doubt("a", 10, 11))
    r = match(st, listing([*AROUND_CHARGES, charge("r", "t1", 10.5, -1000), other]), now=NOW)
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
    assert usage_since([w]) == T0 + timedelta(seconds=10) - LOOKBACK


def test_near_charge_blocks_never_created() -> None:
    """A same-price charge just outside the window keeps the job in doubt: never pay twice."""
    st = fold(AROUND + doubt("a", 10, 11))
    r = match(st, listing([*AROUND_CHARGES, charge("u1", "t1", 30)]), now=NOW, settle=120)
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
    r = match(st, listing(charges, since=FROM), now=NOW, slack=0.0)
    assert dict((j, c.task_id) for j, c in r.adopted) == {"a": "t1", "b": "t2"}
    uncalibrated = match(fold(events[2:]), listing(charges[1:], since=FROM), now=NOW, slack=1.0)
    assert uncalibrated.adopted == ()  # uncalibrated, a 5 s skew is outside the 1 s slack


def test_parse_ts_reads_the_variants_and_refuses_garbage() -> None:
    """Epoch seconds and milliseconds, a space for T, no zone: one instant; garbage raises."""
    assert parse_ts("2026-11-24 03:00:00") == T0
    assert parse_ts(T0.timestamp()) == T0
    assert parse_ts(int(T0.timestamp() * 1000)) == T0
    assert parse_ts(str(int(T0.timestamp() * 1000))) == T0
    for bad in ("yesterday", "", "nan", -5, True):
        with pytest.raises(ValueError):
            parse_ts(bad)  # type: ignore[arg-type]


def test_a_fractional_duration_matches_the_exact_product() -> None:
    """7.5 s standard reserves 1,600 but may be billed 1,500: that charge is the job's."""
    events = [
        ev("intent", "a", 10, credits=1600, fingerprint="f" * 64, mode="standard", duration=7.5),
        ev("in_doubt", "a", 11, error="lost"),
    ]
    r = match(fold(events), listing([charge("u1", "t1", 10.5, 1500)]), now=NOW)
    assert [(j, c.task_id) for j, c in r.adopted] == [("a", "t1")]
    low = match(fold(events), listing([charge("u1", "t1", 10.5, 1400)]), now=NOW)
    assert low.adopted == ()


@pytest.mark.parametrize("skew", [-600.0, -90.0, 90.0, 600.0])
def test_a_provider_clock_minutes_off_is_measured_not_assumed(skew: float) -> None:
    """Minutes of clock offset either way: the lost create is adopted, never declared absent."""
    st = fold(AROUND + doubt("a", 10, 11))
    shifted = [
        Charge(id=c.id, task_id=c.task_id, credits=c.credits, at=c.at - timedelta(seconds=skew))
        for c in [*AROUND_CHARGES, charge("u1", "t1", 10.5)]
    ]
    r = match(st, listing(shifted), now=NOW, slack=0.0)
    assert [(j, c.task_id) for j, c in r.adopted] == [("a", "t1")]
    assert r.not_created == ()


@pytest.mark.parametrize(
    ("events", "charges", "extra", "reason"),
    [
        (doubt("a", 10, 11), [], {}, "measure the provider's clock"),
        (known("k1", "tk1", 5) + doubt("a", 10, 11), AROUND_CHARGES[:1], {}, "created after it"),
        (
            known("k0", "tk0", 2) + AROUND + doubt("a", 10, 11),
            AROUND_CHARGES,
            {},
            "tk0 is missing",
        ),
        (AROUND + doubt("a", 10, 11), AROUND_CHARGES, {"unparsed": 1}, "could not be read"),
        (AROUND + doubt("a", 10, 11), AROUND_CHARGES, {"problem": "no list"}, "no list"),
        (AROUND + doubt("a", 10, 11), AROUND_CHARGES, {"reached_back": False}, "reach back"),
    ],
)
def test_never_created_needs_every_part_of_the_proof(
    events: list[dict[str, Any]], charges: list[Charge], extra: dict[str, Any], reason: str
) -> None:
    """Missing any one part of the proof, the job stays in doubt and says why."""
    r = match(fold(events), listing(charges, **extra), now=NOW, settle=120)
    assert r.not_created == () and r.adopted == ()
    assert r.waiting == ("a",)
    assert reason in r.reasons["a"]


def test_a_job_proved_never_created_once_is_not_proved_again() -> None:
    """A second loss of the same entry stays in doubt: a person decides."""
    events = [
        *AROUND,
        *doubt("a", 1, 2),
        ev("not_created", "a", 200, reason="proved"),
        *doubt("a", 10, 11),
    ]
    r = match(fold(events), listing(AROUND_CHARGES), now=NOW)
    assert r.not_created == () and "once already" in r.reasons["a"]


def test_a_lag_longer_than_the_settle_delay_extends_it() -> None:
    """A known task missing from a read shows the lag; the settle delay grows to cover it."""
    late = known("k3", "tk3", 900)  # ended 100 s before NOW and not listed yet
    st = fold(AROUND + doubt("a", 10, 11) + late)
    r = match(st, listing(AROUND_CHARGES), now=NOW, settle=3)
    assert r.lag >= 99
    st2 = fold(AROUND + doubt("a", 950, 951) + known("k4", "tk4", 960))
    listed = listing([*AROUND_CHARGES, charge("uk4", "tk4", 960.005)])
    soon = match(st2, listed, now=NOW, settle=3, lag_seen=r.lag)
    assert soon.not_created == () and "settle" in soon.reasons["a"]
    assert match(st2, listed, now=NOW, settle=3).not_created == ("a",)  # without the lag seen


def test_charges_of_another_run_directory_are_never_adopted() -> None:
    """A task the account journal gives to another run directory is never adopted here."""
    st = fold(AROUND + doubt("a", 10, 11))
    r = match(
        st, listing([*AROUND_CHARGES, charge("u1", "t1", 10.5)]), now=NOW, foreign=frozenset({"t1"})
    )
    assert r.adopted == () and r.orphans == ()
    assert r.not_created == ("a",)  # the one charge in its window is provably not its own
