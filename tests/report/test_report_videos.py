"""The report and the videos: posters, earlier renders, lengths, and files it never replaces."""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest

from batchkling.cli import main
from batchkling.emulator.clips import clip
from batchkling.ledger import Ledger, read_ledger
from batchkling.model import JobState
from batchkling.report.build import video_warnings
from batchkling.report.digest import digest_of
from batchkling.report.rows import earlier_videos, job_rows, posters
from batchkling.state import fold
from tests.report_fixtures import RunDir, every_state_run


def _cli(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    status = main(list(argv), out=out, err=err)
    return status, out.getvalue(), err.getvalue()


@pytest.fixture
def run(tmp_path: Path) -> RunDir:
    every = every_state_run(tmp_path)
    (every.run_dir / "images.json").write_text('{"version": 1, "images": {}}\n')
    return every


@pytest.mark.parametrize(
    "kept",
    ["ledger.jsonl", ".lock", "images.json", "videos/opening.mp4", "videos/opening.jpg"],
)
def test_report_o_onto_what_a_run_keeps_is_refused(run: RunDir, kept: str) -> None:
    """Exit 2 with one line saying what the file is; the file is left byte for byte."""
    target = run.run_dir / kept
    if kept.endswith(".jpg"):
        target.write_bytes(b"\xff\xd8 a poster")
    before = target.read_bytes()
    status, out, err = _cli("report", str(run.manifest_path), "-o", str(target))
    assert status == 2 and out == ""
    assert "a report never writes over it" in err and err.count("\n") == 1
    assert target.read_bytes() == before


def test_report_o_onto_a_link_to_the_ledger_or_a_video_elsewhere_is_refused(
    run: RunDir, tmp_path: Path
) -> None:
    """A symlink or hard link to the ledger, and a video outside the run directory."""
    ledger = run.run_dir / "ledger.jsonl"
    before = ledger.read_bytes()
    soft = tmp_path / "report.html"
    soft.symlink_to(ledger)
    hard = tmp_path / "report.json"
    os.link(ledger, hard)
    movie = tmp_path / "final cut.mov"
    movie.write_bytes(clip(3))
    for target in (soft, hard, movie):
        status, _, err = _cli("report", str(run.manifest_path), "-o", str(target))
        assert status == 2, target
        assert "a report never writes over it" in err
    assert ledger.read_bytes() == before and movie.read_bytes() == clip(3)


def test_report_o_elsewhere_is_still_written(run: RunDir, tmp_path: Path) -> None:
    """Anything else is fine: an existing report, a file named like a cache outside a run."""
    target = tmp_path / "r.html"
    target.write_text("an old report")
    status, _, err = _cli("report", str(run.manifest_path), "-o", str(target))
    assert status == 0, err
    assert target.read_text(encoding="utf-8").startswith("<!doctype html>")
    export = tmp_path / "exports" / "images.json"
    status, _, err = _cli("report", str(run.manifest_path), "--format", "json", "-o", str(export))
    assert status == 0, err
    assert export.read_text(encoding="utf-8").startswith("{")


def test_a_take_with_a_poster_shows_its_own_first_frame(run: RunDir) -> None:
    """``videos/<job>.jpg`` beside an intact video is its poster; without one, the start image."""
    (run.run_dir / "videos" / "opening.jpg").write_bytes(b"\xff\xd8 a poster")
    st = fold(read_ledger(run.run_dir / "ledger.jsonl").events)
    found = posters(run.run_dir, st, frozenset({"opening", "takes#1"}))
    assert found == {"opening": str((run.run_dir / "videos" / "opening.jpg").absolute())}
    status, out, err = _cli("report", str(run.manifest_path))
    assert status == 0, err
    page = Path(out.strip()).read_text(encoding="utf-8")
    assert 'src="videos/opening.mp4" poster="videos/opening.jpg"' in page
    assert 'src="videos/takes%231.mp4" poster="images/' in page


def test_earlier_renders_of_a_job_are_listed(tmp_path: Path) -> None:
    """Kept ``<job>.<task>.mp4`` files of its earlier tasks, and, until the new task is
    downloaded, the ``<job>.mp4`` it will replace."""
    run_dir = tmp_path / "r.run"
    videos = run_dir / "videos"
    with Ledger.open(run_dir) as ledger:
        for task in ("aaaaaaaa-1", "bbbbbbbb-2", "cccccccc-3"):
            ledger.append_sync("intent", "s01", credits=600, fingerprint="f" * 64)
            ledger.append_sync("created", "s01", task_id=task)
        videos.mkdir()
        (videos / "s01.aaaaaaaa.mp4").write_bytes(b"first")
        (videos / "s01.mp4").write_bytes(b"second")
        st = ledger.state
        assert st.state_of("s01") is JobState.RUNNING
        assert earlier_videos(run_dir, st) == {
            "s01": (str(videos / "s01.aaaaaaaa.mp4"), str(videos / "s01.mp4"))
        }


def test_video_warnings_compare_the_recorded_length_with_the_ask(tmp_path: Path) -> None:
    """The intent's duration against the ``downloaded`` event's; within a second, no warning."""
    run_dir = tmp_path / "r.run"
    with Ledger.open(run_dir) as ledger:
        for job, length in (("ok", 5.4), ("short", 3.0)):
            ledger.append_sync("intent", job, credits=1000, fingerprint="f" * 64, duration=5)
            ledger.append_sync("created", job, task_id=f"t-{job}")
            ledger.append_sync(
                "downloaded",
                job,
                task_id=f"t-{job}",
                path=f"videos/{job}.mp4",
                bytes=1,
                sha256="0" * 64,
                duration=length,
                codec="h264",
                width=160,
                height=90,
            )
    events = read_ledger(run_dir / "ledger.jsonl").events
    rows = job_rows(None, fold(events), run_dir)
    assert video_warnings(rows, digest_of(events).lengths) == {
        "short": "short: the video is 3.0 s long where 5 s were asked; it is kept, as it was "
        "paid for."
    }
