"""The ETA: a pure function of this run's own generation times, by mode and duration."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from batchkling.eta import Speeds, estimate, next_due

STD5 = ("standard", 5.0)
PRO15 = ("pro", 15.0)
STD10 = ("standard", 10.0)


def test_no_basis_before_a_task_of_this_run_has_finished() -> None:
    """Without a finished task of this run, the ETA is unknown, whatever waits."""
    speeds = Speeds.of([])
    assert estimate(speeds, running=[(STD5, 3.0)], queued=[STD5] * 5, slots=4) is None
    assert next_due(speeds, [(STD5, 3.0)]) is None


def test_kinds_are_timed_apart() -> None:
    """A 15 s pro shot is expected to take its own time, not a 5 s standard one's."""
    speeds = Speeds.of([(STD5, 40.0), (STD5, 60.0), (PRO15, 300.0)])
    assert speeds.expect(STD5) == 50.0
    assert speeds.expect(PRO15) == 300.0
    assert estimate(speeds, running=[], queued=[PRO15], slots=4) == 300.0
    assert estimate(speeds, running=[], queued=[STD5], slots=4) == 50.0


def test_an_unseen_kind_is_scaled_by_seconds_of_video_in_its_mode() -> None:
    """A 10 s standard shot, never seen, takes twice what 5 s standard shots took."""
    speeds = Speeds.of([(STD5, 50.0), (PRO15, 450.0)])
    assert speeds.expect(STD10) == 100.0  # 10 s of standard at 10 s a second
    assert speeds.expect(("pro", 5.0)) == 150.0  # pro at 30 s a second


def test_running_tasks_count_by_their_age_and_queued_ones_wait_for_a_slot() -> None:
    """Two slots: a task 30 s into 50 frees its slot at 20 s; the queue fills the slots in turn."""
    speeds = Speeds.of([(STD5, 50.0)])
    running = [(STD5, 30.0), (STD5, 10.0)]
    assert next_due(speeds, running) == 20.0
    # slot A free at 20, slot B at 40; queued: 20->70 (A), 40->90 (B), 70->120 (A)
    assert estimate(speeds, running=running, queued=[STD5] * 3, slots=2) == 120.0


def test_an_overdue_task_is_due_now() -> None:
    """A task older than expected is due at once, never a negative time."""
    speeds = Speeds.of([(STD5, 50.0)])
    assert next_due(speeds, [(STD5, 80.0)]) == 0.0
    assert estimate(speeds, running=[(STD5, 80.0)], queued=[], slots=1) == 0.0


def test_a_lowered_limit_frees_no_slot_until_the_count_falls_below_it() -> None:
    """Three running with a limit of one: the queued job starts when the last finishes."""
    speeds = Speeds.of([(STD5, 50.0)])
    running = [(STD5, 40.0), (STD5, 30.0), (STD5, 20.0)]  # done at 10, 20, 30
    assert estimate(speeds, running=running, queued=[STD5], slots=1) == 80.0


def test_creates_of_one_kind_go_out_one_at_a_time() -> None:
    """With creates answered in 3 s, four queued jobs of one kind start 3 s apart."""
    speeds = Speeds.of([(STD5, 10.0)], creates=[3.0])
    assert speeds.create == 3.0
    # answered at 3, 6, 9, 12; each finishes 10 s later
    assert estimate(speeds, running=[], queued=[STD5] * 4, slots=4) == 22.0


def test_a_create_being_sent_counts_by_its_age() -> None:
    """A create sent 2 s ago (of 3) is answered in 1 s; one waiting its turn after it."""
    speeds = Speeds.of([(STD5, 10.0)], creates=[3.0])
    creating = [(STD5, None), (STD5, 2.0)]
    assert estimate(speeds, running=[], creating=creating, queued=[], slots=4) == 14.0


@given(
    st.lists(st.floats(0, 1000), min_size=1, max_size=5),
    st.lists(st.floats(0, 2000), max_size=6),
    st.integers(0, 20),
    st.integers(1, 8),
)
def test_more_work_never_makes_the_estimate_shorter(
    times: list[float], ages: list[float], queued: int, slots: int
) -> None:
    """One more queued job never brings the end nearer, and the end is never negative."""
    speeds = Speeds.of([(STD5, t) for t in times])
    running = [(STD5, a) for a in ages]
    now = estimate(speeds, running=running, queued=[STD5] * queued, slots=slots)
    more = estimate(speeds, running=running, queued=[STD5] * (queued + 1), slots=slots)
    assert now is not None and more is not None
    assert 0.0 <= now <= more + 1e-9


def test_an_in_doubt_create_keeps_its_slot_until_it_is_settled() -> None:
    """A create held in doubt for 20 s more is counted as sent again then, in its slot."""
    speeds = Speeds.of([(STD5, 10.0)], creates=[1.0])
    assert estimate(speeds, running=[], held=[(STD5, 20.0)], queued=[], slots=1) == 31.0
    # the queued job waits for that slot: 31 + 1 + 10
    assert estimate(speeds, running=[], held=[(STD5, 20.0)], queued=[STD5], slots=1) == 42.0


def test_a_task_past_the_quick_ones_is_expected_to_be_a_slow_one() -> None:
    """Seen 40 s and 60 s: a task 45 s old needs 15 s more, not the mean's 5 s."""
    speeds = Speeds.of([(STD5, 40.0), (STD5, 60.0)])
    assert next_due(speeds, [(STD5, 45.0)]) == 15.0
    assert next_due(speeds, [(STD5, 10.0)]) == 40.0  # both still ahead: (30 + 50) / 2
