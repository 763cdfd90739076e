"""The report's digest of a ledger: credits lost, and a report read as the ledger is folded."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from batchkling.ledger import LEDGER_NAME, Ledger, read_ledger
from batchkling.model import JobState, Manifest, Shot
from batchkling.report.build import build_report
from batchkling.report.digest import credits_lost, digest_of
from batchkling.report.formats import render_csv, render_json, report_json
from batchkling.report.publish import read_run
from batchkling.report.rows import job_rows
from batchkling.report.storyboard import render_html
from batchkling.state import fold

F = "f" * 64


def _ev(ts: int, event: str, job: str | None, **fields: Any) -> dict[str, Any]:
    return {"ts": f"2026-01-01T00:{ts // 60:02d}:{ts % 60:02d}Z", "event": event, "job": job,
            **fields}  # fmt: skip


def test_credits_lost_are_in_doubt_creates_and_failed_tasks() -> None:
    """In doubt and failed tasks are lost, an earlier failed task of a job sent again too;
    refused, never-created and adopted creates are not."""
    events = [
        _ev(0, "run_started", None, pid=1),
        # retried: its first task failed, the second was downloaded
        _ev(1, "intent", "retried", credits=1000, fingerprint=F),
        _ev(2, "created", "retried", task_id="t1"),
        _ev(3, "failed", "retried", task_id="t1", error="boom"),
        _ev(4, "intent", "retried", credits=1000, fingerprint=F, reason="retry-failed"),
        _ev(5, "created", "retried", task_id="t2"),
        _ev(6, "completed", "retried", task_id="t2", output_urls=["u"]),
        _ev(7, "downloaded", "retried", task_id="t2", path="videos/r.mp4", bytes=1,
            sha256="0" * 64),
        # adopted: its answer was lost, then reconciliation found its charge
        _ev(8, "intent", "adopted", credits=600, fingerprint=F),
        _ev(9, "in_doubt", "adopted", error="read timeout"),
        _ev(10, "reconciled", "adopted", task_id="t3"),
        # refused: the API provably charged nothing
        _ev(11, "intent", "refused", credits=600, fingerprint=F),
        _ev(12, "create_failed", "refused", error="bad image", permanent=True),
        # never: proved never created, then still waiting
        _ev(13, "intent", "never", credits=600, fingerprint=F),
        _ev(14, "in_doubt", "never", error="read timeout"),
        _ev(15, "not_created", "never"),
        # doubt: in doubt at the price it may have been charged; torn: intent alone
        _ev(16, "intent", "doubt", credits=1500, fingerprint=F),
        _ev(17, "in_doubt", "doubt", error="read timeout"),
        _ev(18, "intent", "torn", credits=900, fingerprint=F),
        # failed: the task failed on the server
        _ev(19, "intent", "failed", credits=400, fingerprint=F),
        _ev(20, "created", "failed", task_id="t4"),
        _ev(21, "failed", "failed", task_id="t4", error="boom"),
    ]  # fmt: skip
    st = fold(events)
    failed = digest_of(events).failed_tasks
    lost = {key: credits_lost(rec, failed) for key, rec in st.jobs.items()}
    assert lost == {
        "retried": 1000, "adopted": 0, "refused": 0, "never": 0, "doubt": 1500, "torn": 900,
        "failed": 400,
    }  # fmt: skip
    report = build_report(
        job_rows(None, st, Path("/r")), st, digest=digest_of(events), title="t", generated="g",
        run_dir="/r",
    )  # fmt: skip
    assert report.totals.credits_lost == 1000 + 1500 + 900 + 400
    assert report.totals.credits_committed == 2000 + 600 + 1500 + 900 + 400


def _big_ledger(run_dir: Path, n: int) -> None:
    """``n`` jobs: done (one in 100 with a video 2 s short), failed, in doubt; one run, 130."""
    with Ledger.open(run_dir) as led:
        led.write("run_started", None, pid=1, budget=10**9)
        for i in range(n):
            key, task = f"s{i:05d}", f"task-{i}"
            led.write("intent", key, credits=1000, fingerprint=F, mode="standard", duration=5)
            if i % 50 == 7:
                led.write("in_doubt", key, error="read timeout")
                continue
            led.write("created", key, task_id=task)
            if i % 50 == 3:
                led.write("failed", key, task_id=task, error="refused")
                continue
            led.write("completed", key, task_id=task, output_urls=["u"])
            led.write("downloaded", key, task_id=task, path=f"videos/{key}.mp4", bytes=1,
                      sha256="0" * 64, duration=3.0 if i % 100 == 11 else 5.02)  # fmt: skip
        led.write("run_ended", None, exit_status=130, api_calls=5 * n)
        led.sync()


def test_a_report_read_as_it_folds_is_the_report_of_every_event(tmp_path: Path) -> None:
    """2,000 jobs: ``read_run`` keeps no events, only the lengths of videos that may be off
    what was asked, and its report is the one built from every event in memory."""
    run_dir = tmp_path / "big.run"
    _big_ledger(run_dir, 2000)
    read = read_run(run_dir / LEDGER_NAME)
    assert len(read.digest.lengths) == 20  # the short videos only, of 1,920 downloaded
    events = read_ledger(run_dir / LEDGER_NAME).events
    st = fold(events)

    def build(state: Any, digest: Any) -> Any:
        rows = job_rows(None, state, run_dir)
        return build_report(
            rows, state, digest=digest, title="t", generated="g", run_dir=str(run_dir)
        )

    streamed, held = build(read.state, read.digest), build(st, digest_of(events))
    assert len(streamed.video_warnings) == 20
    assert streamed.totals.credits_lost == (40 + 40) * 1000
    assert streamed.totals.interrupted_runs == 1
    assert render_json(streamed) == render_json(held)
    assert render_csv(streamed) == render_csv(held)
    assert render_html(streamed, base_dir=str(run_dir)) == render_html(held, base_dir=str(run_dir))


def test_the_json_written_job_by_job_is_json_dumps_of_the_whole(tmp_path: Path) -> None:
    """The JSON report streamed one job at a time is byte for byte ``json.dumps(indent=2)``."""
    run_dir = tmp_path / "small.run"
    _big_ledger(run_dir, 60)
    read = read_run(run_dir / LEDGER_NAME)
    report = build_report(
        job_rows(None, read.state, run_dir), read.state, digest=read.digest, title="t\n\"x\"",
        generated="g", run_dir=str(run_dir),
    )  # fmt: skip
    whole = json.dumps(report_json(report), indent=2, ensure_ascii=False) + "\n"
    assert render_json(report) == whole
    empty = build_report([], fold([]), title="t", generated="g", run_dir="/r")
    assert render_json(empty) == json.dumps(report_json(empty), indent=2) + "\n"
    assert '"jobs": []' in render_json(empty)


_STEPS = st.sampled_from(
    ["intent", "created", "create_failed", "in_doubt", "reconciled", "completed", "failed",
     "downloaded"]
)  # fmt: skip


def _life(job: str, steps: list[str], clock: list[int]) -> list[dict[str, Any]]:
    """A plausible history of one job: one answer per create, task events after a task."""
    out: list[dict[str, Any]] = []
    task: str | None = None
    answer: str | None = "none"  # what the latest create got; "none" before any intent
    for step in steps:
        clock[0] += 1
        t = clock[0]
        if step == "intent":
            out.append(_ev(t, "intent", job, credits=600 + 100 * len(out), fingerprint=F))
            answer, task = None, None
        elif step in ("created", "create_failed", "in_doubt") and answer is None:
            answer = step
            if step == "created":
                task = f"{job}-{t}"
                out.append(_ev(t, step, job, task_id=task))
            else:
                fields: dict[str, Any] = {"error": "x"}
                if step == "create_failed":
                    fields["permanent"] = bool(t % 2)
                out.append(_ev(t, step, job, **fields))
        elif step == "reconciled" and answer == "in_doubt":
            answer, task = step, f"{job}-{t}"
            out.append(_ev(t, step, job, task_id=task))
        elif task is not None and step == "downloaded":
            out.append(_ev(t, step, job, task_id=task, path="p", bytes=1, sha256="0" * 64))
        elif task is not None and step in ("completed", "failed"):
            extra = {"output_urls": ["u"]} if step == "completed" else {"error": "x"}
            out.append(_ev(t, step, job, task_id=task, **extra))
    return out


@settings(max_examples=60, deadline=None)
@given(st.lists(st.lists(_STEPS, max_size=12), min_size=3, max_size=3))
def test_credits_lost_and_per_shot_credits_add_up(lives: list[list[str]]) -> None:
    """Lost never exceeds spent; the shots' credits sum to what the ledger committed."""
    shots = (
        Shot(id="a", prompt="p", image="https://i.invalid/a.png", takes=2),
        Shot(id="b", prompt="q", image="https://i.invalid/b.png"),
    )
    manifest = Manifest(path="/m.yaml", sha256="0" * 64, shots=shots)
    clock = [0]
    events = [_ev(0, "run_started", None, pid=1)]
    for job, steps in zip([j.key for j in manifest.jobs], lives, strict=True):
        events += _life(job, steps, clock)
    st_ = fold(events)
    report = build_report(
        job_rows(manifest.jobs, st_, Path("/r")), st_, digest=digest_of(events), title="t",
        generated="g", run_dir="/r",
    )  # fmt: skip
    for row in report.rows:
        assert 0 <= report.credits_lost.get(row.key, 0) <= row.credits
        if row.state is JobState.IN_DOUBT or (
            row.state is JobState.FAILED and row.task_id is not None
        ):
            last = row.record.attempts[-1]
            assert report.credits_lost[row.key] >= last.credits
    totals = report.totals
    assert sum(c.spent for c in report.shot_credits.values()) == totals.credits_committed
    assert sum(c.lost for c in report.shot_credits.values()) == totals.credits_lost
    assert sum(c.jobs for c in report.shot_credits.values()) == totals.jobs == 3
