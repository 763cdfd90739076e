"""Whole runs against the emulator over loopback: what a run does with each kind of video."""

from __future__ import annotations

import json
import os
import re
import resource
import signal
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest

from batchkling import load_manifest, run_manifest
from batchkling.api.client import SjinnClient
from batchkling.api.gate import RequestGate
from batchkling.model import JobState
from batchkling.report.rows import default_run_dir
from batchkling.run.options import RunOptions, RunResult
from batchkling.schedule import Rate
from batchkling.video.rules import task_prefix
from tests.emulator_fixtures import TEST_KEY, LiveEmulator
from tests.runner_helpers import FAST, ROOT, ledger_lines, run_cli, status_json, write_manifest

pytestmark = pytest.mark.anyio

OPTIONS = RunOptions(
    poll_min=0.01,
    poll_max=0.05,
    usage_settle=0.3,
    backoff_base=0.001,
    backoff_cap=0.01,
    download_attempts=2,
)


@pytest.fixture(autouse=True)
def _api_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SJINN_API_KEY", TEST_KEY)
    monkeypatch.delenv("SJINN_API_BASE", raising=False)


@pytest.fixture
def emu(live_emulator_factory: Any) -> LiveEmulator:
    """The emulator on loopback; tasks take 20 to 50 ms."""
    live: LiveEmulator = live_emulator_factory(gen_seconds=(0.02, 0.05))
    return live


async def render(manifest_path: Path, emu: LiveEmulator, **options: Any) -> RunResult:
    """``run_manifest`` over real HTTP, with retries a few milliseconds apart."""
    manifest = load_manifest(manifest_path)
    async with httpx.AsyncClient(follow_redirects=True) as http:
        gate = RequestGate(Rate(500, 1.0))
        client = SjinnClient(http, base_url=emu.base_url, api_key=TEST_KEY, gate=gate)
        return await run_manifest(
            manifest,
            default_run_dir(manifest_path),
            client=client,
            http=http,
            options=replace(OPTIONS, **options),
        )


def downloaded(run_dir: Path) -> list[dict[str, Any]]:
    """The ``downloaded`` events of the run directory's ledger (each checked by the schema)."""
    return [e for e in ledger_lines(run_dir) if e["event"] == "downloaded"]


@pytest.mark.parametrize(
    "fault", ["download_short_length", "download_no_length", "download_fail_rate"]
)
async def test_a_bad_download_stays_completed_and_the_next_run_fetches_it(
    emu: LiveEmulator, tmp_path: Path, fault: str
) -> None:
    """Never done while the server sends it wrong; fetched by the next run, never created again."""
    emu.set_config(**{fault: 1.0 if fault == "download_fail_rate" else True})
    manifest = write_manifest(tmp_path, emu.base_url, 2, duration=3)
    run_dir = default_run_dir(manifest)
    first = await render(manifest, emu)
    assert first.exit_status == 1
    assert set(first.states.values()) == {JobState.COMPLETED}
    assert downloaded(run_dir) == [] and not list((run_dir / "videos").glob("*.mp4"))
    emu.set_config(**{fault: 0.0 if fault == "download_fail_rate" else False})
    second = await render(manifest, emu)
    assert second.exit_status == 0 and set(second.states.values()) == {JobState.DONE}
    assert emu.stats()["tasks_created"] == 2


async def test_a_good_clip_is_done_with_its_length_codec_and_size_in_the_ledger(
    emu: LiveEmulator, tmp_path: Path
) -> None:
    """The ``downloaded`` event holds what FFmpeg found: 3 s of 160x90 H.264."""
    manifest = write_manifest(tmp_path, emu.base_url, 1, duration=3)
    result = await render(manifest, emu)
    assert result.exit_status == 0
    [event] = downloaded(default_run_dir(manifest))
    assert (event["duration"], event["codec"], event["width"], event["height"]) == (
        3.0,
        "h264",
        160,
        90,
    )


async def test_a_video_of_the_wrong_length_is_done_with_a_warning(
    emu: LiveEmulator, tmp_path: Path
) -> None:
    """Done (it was paid for); the summary and the report both say how long it is."""
    emu.set_config(video_duration_offset=-1.5)
    manifest = write_manifest(tmp_path, emu.base_url, 1, duration=5)
    result = await render(manifest, emu)
    assert result.exit_status == 0 and result.states == {"s01": JobState.DONE}
    warning = "s01: the video is 3.5 s long where 5 s were asked; it is kept, as it was paid for."
    assert warning in result.notes
    report = run_cli("report", str(manifest))
    assert report.code == 0, report.err
    page = Path(report.out.strip()).read_text(encoding="utf-8")
    assert f'<p class="warn">{warning}</p>' in page


async def test_the_poster_is_the_first_frame_and_the_report_shows_it(
    emu: LiveEmulator, tmp_path: Path
) -> None:
    """``videos/<job>.jpg`` is written with the video, and the take's player uses it."""
    manifest = write_manifest(tmp_path, emu.base_url, 2, duration=3)
    assert (await render(manifest, emu)).exit_status == 0
    run_dir = default_run_dir(manifest)
    for job in ("s01", "s02"):
        assert (run_dir / "videos" / f"{job}.jpg").read_bytes().startswith(b"\xff\xd8")
    report = run_cli("report", str(manifest))
    assert report.code == 0, report.err
    page = (run_dir / "report.html").read_text(encoding="utf-8")
    assert 'src="videos/s01.mp4" poster="videos/s01.jpg"' in page
    assert 'src="videos/s02.mp4" poster="videos/s02.jpg"' in page


async def test_a_rerender_keeps_the_earlier_video_and_the_report_lists_it(
    emu: LiveEmulator, tmp_path: Path
) -> None:
    """``--rerender-changed``: the first paid video moves to ``<job>.<task>.mp4``, untouched."""
    manifest = write_manifest(tmp_path, emu.base_url, 1, duration=3)
    run_dir = default_run_dir(manifest)
    assert (await render(manifest, emu)).exit_status == 0
    first = (run_dir / "videos" / "s01.mp4").read_bytes()
    [old] = downloaded(run_dir)
    write_manifest(tmp_path, emu.base_url, 1, duration=4, prompt="shot {i} turns the other way")
    again = await render(manifest, emu, rerender_changed=True)
    assert again.exit_status == 0
    [_, new] = downloaded(run_dir)
    assert new["task_id"] != old["task_id"] and new["path"] == "videos/s01.mp4"
    kept = run_dir / "videos" / f"s01.{task_prefix(old['task_id'])}.mp4"
    assert kept.read_bytes() == first
    assert kept.with_suffix(".jpg").is_file()
    assert (run_dir / "videos" / "s01.mp4").read_bytes() != first
    assert emu.stats()["tasks_created"] == 2
    report = run_cli("report", str(manifest))
    assert report.code == 0, report.err
    page = (run_dir / "report.html").read_text(encoding="utf-8")
    link = re.search(r'<p class="earlier">earlier renders kept: <a href="([^"]+)">', page)
    assert link is not None and link.group(1) == f"videos/{kept.name}"


def _limit_file_size(limit: int) -> None:
    """In the child: files may grow to ``limit`` bytes; past it a write fails (EFBIG)."""
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))


@pytest.mark.slow
def test_a_full_disk_during_the_download_exits_5_and_leaves_the_job_completed(
    emu: LiveEmulator, tmp_path: Path
) -> None:
    """A real ``batchkling run`` whose video cannot be written: exit 5, one line, no traceback."""
    manifest = write_manifest(tmp_path, emu.base_url, 1, duration=3)  # an 11 KB clip
    run_dir = default_run_dir(manifest)
    cmd = [sys.executable, "-m", "batchkling", "run", str(manifest), "--api-base", emu.base_url]
    cmd += [*FAST, "--skip-preflight"]
    env = {**os.environ, "SJINN_API_KEY": TEST_KEY}
    done = subprocess.run(
        cmd,
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=60,
        preexec_fn=lambda: _limit_file_size(8192),
    )
    assert done.returncode == 5, done.stderr
    assert "Traceback" not in done.stderr
    assert f"the run directory {run_dir} could not be written" in done.stderr
    assert status_json(manifest)["counts"]["completed"] == 1
    assert not list((run_dir / "videos").glob("*.mp4*"))
    again = run_cli("run", str(manifest), "--api-base", emu.base_url, *FAST)
    assert again.code == 0, again.err
    assert status_json(manifest)["counts"]["done"] == 1
    assert emu.stats()["tasks_created"] == 1
    assert json.loads((run_dir / "ledger.jsonl").read_text().splitlines()[-1])["exit_status"] == 0
