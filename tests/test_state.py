"""The pure fold from ledger events to job states."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from batchkling.errors import LedgerError
from batchkling.model import JobState
from batchkling.state import fold

TS = "2026-11-24T03:00:00.000000Z"


def ev(event: str, job: str | None = "a", **fields: Any) -> dict[str, Any]:
    return {"ts": TS, "event": event, "job": job, **fields}


def intent(job: str = "a", credits: int = 1000) -> dict[str, Any]:
    return ev("intent", job, credits=credits, fingerprint="f" * 64)


def test_unknown_job_is_pending() -> None:
    """A job the ledger never mentions is pending and costs nothing."""
    s = fold([])
    assert s.state_of("x") is JobState.PENDING
    assert s.credits_committed == 0


def test_intent_without_outcome_is_in_doubt_and_counts() -> None:
    """A crash after the intent leaves the job in doubt, its credits committed."""
    s = fold([intent()])
    assert s.state_of("a") is JobState.IN_DOUBT
    assert s.credits_committed == 1000


def test_full_life() -> None:
    """intent, created, completed, downloaded gives done with the file's details."""
    s = fold(
        [
            intent(),
            ev("created", task_id="t1"),
            ev("completed", task_id="t1", output_urls=["http://x/v.mp4"]),
            ev("downloaded", task_id="t1", path="videos/a.mp4", bytes=10, sha256="0" * 64),
        ]
    )
    rec = s.jobs["a"]
    assert rec.state is JobState.DONE
    assert rec.task_id == "t1"
    assert rec.output == "videos/a.mp4" and rec.bytes == 10
    assert s.credits_committed == 1000


def test_refused_create_releases_credits() -> None:
    """A create that provably charged nothing does not count against the budget."""
    s = fold([intent(), ev("create_failed", error="429", permanent=False)])
    assert s.state_of("a") is JobState.PENDING
    assert s.credits_committed == 0
    s = fold([intent(), ev("create_failed", error="bad image", permanent=True)])
    assert s.state_of("a") is JobState.FAILED
    assert s.credits_committed == 0


def test_resubmission_counts_both_attempts() -> None:
    """A failed task resubmitted costs twice: no refund is assumed."""
    s = fold(
        [
            intent(),
            ev("created", task_id="t1"),
            ev("failed", task_id="t1", error="x"),
            intent(),
            ev("created", task_id="t2"),
        ]
    )
    assert s.state_of("a") is JobState.RUNNING
    assert s.jobs["a"].task_id == "t2"
    assert s.credits_committed == 2000


def test_answer_about_old_task_is_ignored() -> None:
    """A late event about an abandoned task does not change the job's current task."""
    s = fold(
        [
            intent(),
            ev("created", task_id="t1"),
            intent(),
            ev("created", task_id="t2"),
            ev("failed", task_id="t1", error="old"),
        ]
    )
    assert s.state_of("a") is JobState.RUNNING


def test_reconciled_and_not_created() -> None:
    """Reconciliation adopts a task id, or proves the create never happened."""
    s = fold([intent(), ev("in_doubt", error="lost"), ev("reconciled", task_id="t9")])
    assert s.state_of("a") is JobState.RUNNING and s.jobs["a"].task_id == "t9"
    assert s.credits_committed == 1000
    s = fold([intent(), ev("in_doubt", error="lost"), ev("not_created", reason="settled")])
    assert s.state_of("a") is JobState.PENDING
    assert s.credits_committed == 0


def test_bad_events_name_their_line() -> None:
    """An unknown event or an outcome with no intent is an error naming the line."""
    with pytest.raises(LedgerError) as err:
        fold([intent(), ev("bogus")])
    assert err.value.line == 2
    with pytest.raises(LedgerError) as err:
        fold([ev("created", task_id="t")])
    assert err.value.line == 1 and "no intent" in str(err.value)


def test_run_events_record_runs() -> None:
    """run_started and run_ended give the wall time and API calls of each run."""
    s = fold([ev("run_started", None, pid=1), ev("run_ended", None, exit_status=0, api_calls=7)])
    assert s.runs == [{"started": TS, "ended": TS, "api_calls": 7, "exit_status": 0}]


_steps = st.sampled_from(
    ["intent", "created", "create_failed", "in_doubt", "completed", "failed", "downloaded"]
)


def _life(steps: list[str]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    have_intent = False
    n = 0
    for step in steps:
        if step == "intent":
            out.append(intent())
            have_intent = True
        elif not have_intent:
            continue
        elif step == "created":
            n += 1
            out.append(ev("created", task_id=f"t{n}"))
        elif step == "create_failed":
            out.append(ev("create_failed", error="x", permanent=False))
        elif step == "in_doubt":
            out.append(ev("in_doubt", error="x"))
        elif step == "completed":
            out.append(ev("completed", task_id=f"t{n}", output_urls=["u"]))
        elif step == "failed":
            out.append(ev("failed", task_id=f"t{n}", error="x"))
        else:
            out.append(ev("downloaded", task_id=f"t{n}", path="p", bytes=1, sha256="0" * 64))
    return out


@given(st.lists(_steps, max_size=30))
def test_any_prefix_folds_consistently(steps: list[str]) -> None:
    """Every prefix of a ledger folds; committed credits never exceed the intents written."""
    events = _life(steps)
    for cut in range(len(events) + 1):
        s = fold(events[:cut])
        intents = sum(1 for e in events[:cut] if e["event"] == "intent")
        assert 0 <= s.credits_committed <= 1000 * intents
        assert s.credits_committed == sum(r.credits for r in s.jobs.values())
        if cut and events[cut - 1]["event"] == "intent":
            assert s.state_of("a") is JobState.IN_DOUBT


@pytest.mark.parametrize(
    ("events", "state"),
    [
        ([ev("created", task_id="t")], JobState.RUNNING),
        ([ev("created", task_id="t"), ev("completed", task_id="t")], JobState.COMPLETED),
        (
            [
                ev("created", task_id="t"),
                ev("completed", task_id="t"),
                ev("downloaded", task_id="t", path="videos/a.mp4", bytes=1, sha256="0" * 64),
            ],
            JobState.DONE,
        ),
        ([ev("created", task_id="t"), ev("failed", task_id="t")], JobState.FAILED),
        ([ev("in_doubt", error="lost")], JobState.IN_DOUBT),
        ([], JobState.IN_DOUBT),
        ([ev("create_failed", error="busy", permanent=False)], JobState.PENDING),
    ],
)
def test_skipped_never_hides_a_job_that_was_sent(
    events: list[dict[str, Any]], state: JobState
) -> None:
    """A job with a create behind it keeps its state when a later run marks it skipped."""
    s = fold([intent(), *events, ev("skipped", reason="the budget is used up")])
    assert s.state_of("a") is state
    assert s.credits_committed == fold([intent(), *events]).credits_committed


def test_skipped_applies_to_a_job_never_sent() -> None:
    """A job that never had an intent is skipped with its reason."""
    s = fold([ev("skipped", reason="does not fit the budget")])
    assert s.state_of("a") is JobState.SKIPPED
    assert s.record("a").skip_reason == "does not fit the budget"


def test_moved_carries_the_record_to_the_new_key() -> None:
    """A renamed entry keeps its task, state and money under its new key."""
    s = fold(
        [intent("Intro"), ev("created", "Intro", task_id="t1"), ev("moved", "Intro", to="intro")]
    )
    assert "Intro" not in s.jobs
    assert s.state_of("intro") is JobState.RUNNING
    assert s.record("intro").task_id == "t1"
    assert s.credits_committed == 1000
    assert s.moves == {"Intro": "intro"}


def test_moved_onto_a_key_with_creates_of_its_own_is_refused() -> None:
    """Two records with money are never merged into one key."""
    with pytest.raises(LedgerError, match="creates of its own"):
        fold([intent("a"), intent("b"), ev("moved", "a", to="b")])
