"""The fold of picks, rejects and notes, with no I/O; and how a cut chooses its takes."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from batchkling.review.marks import NO_MARKS, Marks, TakesMode, choose, marks_of, shot_of
from batchkling.state import fold

TS = "2026-11-24T00:00:00Z"


def _ev(event: str, job: str, mark: str | None = None, **fields: Any) -> dict[str, Any]:
    ev: dict[str, Any] = {"ts": TS, "event": event, "job": job, **fields}
    if mark is not None:
        ev["mark"] = mark
    return ev


def test_shot_of_a_job_key() -> None:
    """A job key's shot is the part before ``#``; a one-take job is its shot."""
    assert shot_of("s01#2") == "s01" and shot_of("s01") == "s01"


def test_a_pick_replaces_the_earlier_pick_of_its_shot() -> None:
    """Picking another take of a shot replaces the pick; other shots keep theirs."""
    m = marks_of([_ev("picked", "s01#1"), _ev("picked", "s02#1"), _ev("picked", "s01#3")])
    assert m.picks == {"s01": "s01#3", "s02": "s02#1"}
    assert m.of("s01#1") is NO_MARKS
    assert m.of("s01#3") == {"picked": True, "rejected": False, "note": None}


def test_rejecting_the_pick_unpicks_it_and_picking_unrejects() -> None:
    """A rejected take is no pick; picking a rejected take takes the rejection back."""
    m = marks_of([_ev("picked", "s01#1"), _ev("rejected", "s01#1")])
    assert m.picks == {} and m.rejected == {"s01#1"}
    assert m.of("s01#1") == {"picked": False, "rejected": True, "note": None}
    m.apply(_ev("picked", "s01#1"))
    assert m.picks == {"s01": "s01#1"} and m.rejected == set()


def test_undo_takes_a_pick_or_a_rejection_back() -> None:
    """``on: false`` removes a pick (only that take's) and a rejection."""
    m = marks_of([_ev("picked", "s01#1"), _ev("rejected", "s02#1")])
    m.apply(_ev("picked", "s01#2", on=False))  # not the pick: nothing changes
    assert m.picks == {"s01": "s01#1"}
    m.apply(_ev("picked", "s01#1", on=False))
    m.apply(_ev("rejected", "s02#1", on=False))
    assert m.picks == {} and m.rejected == set()


def test_a_note_replaces_the_earlier_one_and_an_empty_note_clears_it() -> None:
    """Notes are per take: the last one stands, "" removes it."""
    m = marks_of([_ev("noted", "s01", note="dark"), _ev("noted", "s01", note="too dark")])
    assert m.notes == {"s01": "too dark"} and m.of("s01")["note"] == "too dark"
    m.apply(_ev("noted", "s01", note=""))
    assert m.notes == {} and m.of("s01") is NO_MARKS


def test_a_mark_applied_twice_counts_once() -> None:
    """The same mark id again (an inbox file moved twice) changes nothing the second time."""
    m = marks_of(
        [
            _ev("picked", "s01#1", mark="a"),
            _ev("picked", "s01#2", mark="b"),
            _ev("picked", "s01#1", mark="a"),  # applied again: s01#2 stays the pick
        ]
    )
    assert m.picks == {"s01": "s01#2"} and m.seen == {"a", "b"}


def test_a_malformed_event_changes_nothing_and_is_not_seen() -> None:
    """No job, a non-bool ``on``, a note that is not text, a foreign shot: all ignored."""
    m = Marks()
    bad = [
        {"ts": TS, "event": "picked", "job": None, "mark": "1"},
        _ev("picked", "", mark="2"),
        _ev("picked", "s01#1", mark="3", on="no"),
        _ev("noted", "s01#1", mark="4", note=3),
        _ev("picked", "s01#1", mark="5", shot="s02"),
        _ev("created", "s01#1", mark="6"),
    ]
    assert [m.apply(ev) for ev in bad] == [False] * len(bad)
    assert m.picks == {} and m.notes == {} and m.seen == set()
    assert m.apply(_ev("noted", "s01#1", mark="4", note="fine")) is True
    assert m.notes == {"s01#1": "fine"}


def test_moved_carries_a_takes_marks_to_its_new_key() -> None:
    """A ``moved`` event in the ledger takes the pick, rejection and note along."""
    st_ = fold(
        [
            _ev("picked", "s01", mark="a"),
            _ev("noted", "s01", mark="b", note="keep"),
            _ev("rejected", "s02", mark="c"),
            {"ts": TS, "event": "moved", "job": "s01", "to": "s01#1"},
            {"ts": TS, "event": "moved", "job": "s02", "to": "opening"},
        ]
    )
    assert st_.marks.picks == {"s01": "s01#1"}
    assert st_.marks.notes == {"s01#1": "keep"} and st_.marks.rejected == {"opening"}
    assert st_.marks.of("s01") is NO_MARKS


def test_choose_takes_the_pick_else_the_first_usable_never_a_rejected_one() -> None:
    """Each takes mode: the pick (if usable), the first usable, or all usable; rejects never."""
    m = marks_of([_ev("picked", "a#2"), _ev("rejected", "b#1"), _ev("picked", "c#1")])
    shots = [("a", ["a#1", "a#2"]), ("b", ["b#1", "b#2"]), ("c", ["c#1", "c#2"]), ("d", ["d"])]
    usable = {"a#1", "a#2", "b#1", "b#2", "c#2"}.__contains__
    assert choose(m, shots, usable) == [("a", ["a#2"]), ("b", ["b#2"]), ("c", ["c#2"]), ("d", [])]
    first = choose(m, shots, usable, TakesMode.FIRST)
    assert first == [("a", ["a#1"]), ("b", ["b#2"]), ("c", ["c#2"]), ("d", [])]
    every = choose(m, shots, usable, TakesMode.ALL)
    assert every == [("a", ["a#1", "a#2"]), ("b", ["b#2"]), ("c", ["c#2"]), ("d", [])]


_JOBS = st.sampled_from(["s01", "s02#1", "s02#2", "s02#3"])
_EVENTS = st.one_of(
    st.builds(lambda j, on: _ev("picked", j, on=on), _JOBS, st.booleans()),
    st.builds(lambda j, on: _ev("rejected", j, on=on), _JOBS, st.booleans()),
    st.builds(lambda j, n: _ev("noted", j, note=n), _JOBS, st.sampled_from(["", "x", "y"])),
)


@given(st.lists(st.tuples(_EVENTS, st.integers(0, 5)), max_size=30), st.data())
def test_fold_laws(numbered: list[tuple[dict[str, Any], int]], data: st.DataObject) -> None:
    """For any events: one pick per shot, never a rejected pick, and a replay counts once."""
    events = [{**ev, "mark": f"m{i}"} for i, (ev, _) in enumerate(numbered)]
    m = marks_of(events)
    for shot, job in m.picks.items():
        assert shot_of(job) == shot and job not in m.rejected
    assert all(note for note in m.notes.values())
    # Any earlier events applied again, anywhere after them, change nothing.
    again = list(events)
    for i, (_, back) in enumerate(numbered):
        if back and i >= back:
            first = next(k for k, ev in enumerate(again) if ev is events[i - back])
            again.insert(data.draw(st.integers(first + 1, len(again))), dict(events[i - back]))
    replayed = marks_of(again)
    assert (replayed.picks, replayed.rejected, replayed.notes) == (m.picks, m.rejected, m.notes)
