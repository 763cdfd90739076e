"""Choosing the work of a run from the manifest and the ledger's fold."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from batchkling.errors import BudgetError
from batchkling.model import Job, Shot
from batchkling.run.selection import plan_moves, select_work
from batchkling.state import fold

TS = "2026-11-24T03:00:00Z"


def jobs(n: int, mode: str = "standard") -> list[Job]:
    return [
        Job(key=f"s{i}", shot=Shot(id=f"s{i}", prompt="p", image="http://x/i.png", model_mode=mode))
        for i in range(n)
    ]


def ev(event: str, job: str, **f: Any) -> dict[str, Any]:
    return {"ts": TS, "event": event, "job": job, **f}


def test_fresh_run_submits_everything() -> None:
    """With an empty ledger every job is submitted, in manifest order."""
    sel = select_work(jobs(3), fold([]), budget=None)
    assert [j.key for j, _ in sel.submit] == ["s0", "s1", "s2"]
    assert sel.to_commit == 3000


def test_over_budget_refuses_before_anything() -> None:
    """Without --allow-partial a run that does not fit raises BudgetError (exit 3)."""
    with pytest.raises(BudgetError) as err:
        select_work(jobs(3), fold([]), budget=2500)
    assert err.value.exit_code == 3
    assert "500 over" in str(err.value)


def test_allow_partial_takes_a_prefix() -> None:
    """With --allow-partial the jobs that fit are taken in order, the rest skipped."""
    sel = select_work(jobs(3), fold([]), budget=2500, allow_partial=True)
    assert [j.key for j, _ in sel.submit] == ["s0", "s1"]
    assert [j.key for j in sel.skipped] == ["s2"]


def test_budget_counts_what_earlier_runs_committed() -> None:
    """Credits committed by earlier runs (in doubt and failed included) count."""
    js = jobs(3)
    led = fold(
        [
            ev("intent", "s0", credits=1000, fingerprint=js[0].fingerprint),
            ev("in_doubt", "s0", error="lost"),
        ]
    )
    sel = select_work(js, led, budget=2000, allow_partial=True)
    assert [j.key for j, _ in sel.submit] == ["s1"]
    assert sel.committed == 1000
    assert [j.key for j in sel.left_in_doubt] == ["s0"]


def test_in_doubt_and_failed_need_a_flag() -> None:
    """In-doubt and failed jobs are resubmitted only when asked."""
    js = jobs(2)
    led = fold(
        [
            ev("intent", "s0", credits=1000, fingerprint=js[0].fingerprint),
            ev("in_doubt", "s0", error="lost"),
            ev("intent", "s1", credits=1000, fingerprint=js[1].fingerprint),
            ev("created", "s1", task_id="t"),
            ev("failed", "s1", task_id="t", error="x"),
        ]
    )
    assert select_work(js, led, budget=None).submit == ()
    sel = select_work(js, led, budget=None, resubmit_in_doubt=True, retry_failed=True)
    assert [(j.key, r) for j, r in sel.submit] == [
        ("s0", "resubmit-in-doubt"),
        ("s1", "retry-failed"),
    ]


def test_running_is_followed_completed_downloaded_done_left() -> None:
    """Created tasks are polled, finished ones downloaded, done ones with files left alone."""
    js = jobs(3)
    led = fold(
        [
            ev("intent", "s0", credits=1000, fingerprint=js[0].fingerprint),
            ev("created", "s0", task_id="t0"),
            ev("intent", "s1", credits=1000, fingerprint=js[1].fingerprint),
            ev("created", "s1", task_id="t1"),
            ev("completed", "s1", task_id="t1", output_urls=["u"]),
            ev("intent", "s2", credits=1000, fingerprint=js[2].fingerprint),
            ev("created", "s2", task_id="t2"),
            ev("downloaded", "s2", task_id="t2", path="videos/s2.mp4", bytes=1, sha256="0" * 64),
        ]
    )
    sel = select_work(js, led, budget=None, present=frozenset({"s2"}))
    assert [j.key for j in sel.follow] == ["s0"]
    assert [j.key for j in sel.download] == ["s1"]
    assert sel.submit == ()
    lost = select_work(js, led, budget=None, present=frozenset())
    assert [j.key for j in lost.download] == ["s1", "s2"]  # a lost file is fetched, not re-created


def test_changed_entry_reported_or_rerendered() -> None:
    """A manifest entry changed after submission is reported, and resent only when asked."""
    js = jobs(1)
    led = fold(
        [
            ev("intent", "s0", credits=1000, fingerprint=js[0].fingerprint),
            ev("created", "s0", task_id="t0"),
        ]
    )
    changed = [replace(js[0], shot=replace(js[0].shot, prompt="new prompt"))]
    sel = select_work(changed, led, budget=None)
    assert [j.key for j in sel.changed] == ["s0"] and sel.submit == ()
    sel = select_work(changed, led, budget=None, rerender_changed=True)
    assert [(j.key, r) for j, r in sel.submit] == [("s0", "rerender-changed")]


def _done(job: Job, task: str) -> list[dict[str, Any]]:
    return [
        ev("intent", job.key, credits=job.credits, fingerprint=job.fingerprint),
        ev("created", job.key, task_id=task),
        ev("completed", job.key, task_id=task, output_urls=[]),
        ev("downloaded", job.key, task_id=task, path=f"videos/{job.key}.mp4", bytes=1, sha256="0"),
    ]


def test_a_job_ever_sent_is_never_selected_as_skipped() -> None:
    """A changed done job that does not fit is left as it is, not skipped, and said so."""
    js = jobs(2)
    led = fold(_done(js[0], "t0") + _done(js[1], "t1"))
    changed = [js[0], replace(js[1], shot=replace(js[1].shot, prompt="q"))]
    sel = select_work(changed, led, budget=2000, allow_partial=True, rerender_changed=True)
    assert sel.submit == () and sel.skipped == ()
    assert any("keeps its state: s1" in note for note in sel.notes)


def test_moves_carry_a_record_to_the_key_that_replaced_it() -> None:
    """A renamed key, a case change and takes 1 -> 2 take the old record, one to one."""
    shot = Shot(id="Intro", prompt="p", image="http://x/i.png")
    old = Job(key="Intro", shot=shot)
    led = fold(_done(old, "t0"))
    renamed = [Job(key="intro", shot=replace(shot, id="intro"))]
    plan = plan_moves(renamed, led)
    assert plan == (("Intro", "intro"),)
    two = replace(shot, takes=2)
    takes = [Job(key="Intro#1", shot=two, take=1), Job(key="Intro#2", shot=two, take=2)]
    assert plan_moves(takes, led) == (("Intro", "Intro#1"),)  # take 1 is the same request
    other = [Job(key="other", shot=replace(shot, id="other", prompt="else"))]
    assert plan_moves(other, led) == ()  # another request: rendered anew
    assert plan_moves([old], led) == ()  # the key is still there: nothing moves
