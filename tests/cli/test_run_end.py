"""The end of `batchkling run`: the summary's reasons and counts, the report, the signals."""

from __future__ import annotations

import re
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from batchkling.ledger import LEDGER_NAME
from tests.emulator_fixtures import LiveEmulator
from tests.runner_helpers import FAST, Result, ledger_lines, run_cli, spawn_run, write_manifest

Live = Callable[..., LiveEmulator]
KEY = "sk-run-end-secret-90b1e"


@pytest.fixture(autouse=True)
def _key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SJINN_API_KEY", KEY)


def _run(manifest: Path, emu: LiveEmulator, *extra: str) -> Result:
    res = run_cli("run", str(manifest), "--api-base", emu.base_url, *FAST, *extra)
    assert "Traceback" not in res.out + res.err
    assert KEY not in res.out + res.err
    return res


def _ledger_reasons(run_dir: Path) -> dict[str, str]:
    return {e["job"]: e["error"] for e in ledger_lines(run_dir) if e["event"] == "failed"}


def _no_multiples(text: str) -> None:
    assert "(s)" not in text, text


def test_every_failed_job_is_named_with_its_reason(
    tmp_path: Path, live_emulator_factory: Live
) -> None:
    """fail_rate 1.0: each failed job has a line with the server's reason; exit 1."""
    emu = live_emulator_factory(fail_rate=1.0)
    manifest = write_manifest(tmp_path, emu.base_url, 3)
    res = _run(manifest, emu)
    assert res.code == 1, res.out + res.err
    reasons = _ledger_reasons(tmp_path / "board.run")
    assert sorted(reasons) == ["s01", "s02", "s03"]
    assert "failed: s01, s02, s03 (--retry-failed resubmits them)" in res.out
    for key, why in reasons.items():
        assert f"{key}: failed: {why.rstrip('.')[:100]}." in res.out
    assert res.out.startswith("3 jobs: failed 3; 3,000 credits committed; ")
    _no_multiples(res.out)


def test_jobs_failed_by_an_earlier_run_keep_their_reason(
    tmp_path: Path, live_emulator_factory: Live
) -> None:
    """A second run sends nothing, and still says why each failed job failed (from the ledger)."""
    emu = live_emulator_factory(fail_rate=1.0)
    manifest = write_manifest(tmp_path, emu.base_url, 2)
    assert _run(manifest, emu).code == 1
    again = _run(manifest, emu)
    assert again.code == 1 and emu.stats()["tasks_created"] == 2
    for key, why in _ledger_reasons(tmp_path / "board.run").items():
        assert f"{key}: failed: {why.rstrip('.')[:100]}." in again.out


def test_a_long_reason_is_cut_to_100_characters(
    tmp_path: Path, live_emulator_factory: Live
) -> None:
    """A reason of 2,000 characters shows its first 100 only; the ledger keeps it whole."""
    emu = live_emulator_factory(fail_rate=1.0, error_msg_size=2000)
    manifest = write_manifest(tmp_path, emu.base_url, 1)
    res = _run(manifest, emu)
    why = _ledger_reasons(tmp_path / "board.run")["s01"]
    assert len(why) >= 2000
    line = next(x for x in res.out.splitlines() if x.startswith("s01: failed: "))
    shown = line.removeprefix("s01: failed: ").removesuffix(".")
    assert len(shown) == 100 and shown.endswith("…") and why.startswith(shown[:-1])


def test_429s_and_the_pause_are_counted(tmp_path: Path, live_emulator_factory: Live) -> None:
    """A rate limit below our pace: the summary's count of 429s is what the server sent."""
    emu = live_emulator_factory(rate_limit=4, gen_seconds=(0.2, 0.4))
    manifest = write_manifest(tmp_path, emu.base_url, 6)
    res = _run(manifest, emu, "--no-reconcile")
    assert res.code == 0, res.out + res.err
    sent = sum(by_status.get("429", 0) for by_status in emu.stats()["requests"].values())
    assert sent > 0
    match = re.search(r"pushed back: ([\d,]+) answers? 429 .*requests paused (.+) in all", res.out)
    assert match is not None, res.out
    assert int(match.group(1).replace(",", "")) == sent
    assert match.group(2).endswith(" s")
    _no_multiples(res.out)


def test_the_report_is_written_and_its_path_printed(
    tmp_path: Path, live_emulator_factory: Live
) -> None:
    """Every run ends with report.html in the run directory, its path the summary's last line."""
    emu = live_emulator_factory(fail_rate=1.0)
    manifest = write_manifest(tmp_path, emu.base_url, 2)
    res = _run(manifest, emu)
    report = tmp_path / "board.run" / "report.html"
    assert res.code == 1 and report.is_file()
    assert f"report: {report}" in res.out.splitlines()
    html = report.read_text()
    assert "s01" in html and KEY not in html


def test_a_report_that_cannot_be_written_is_one_warning(
    tmp_path: Path, live_emulator_factory: Live
) -> None:
    """report.html held by a directory: one warning line, the run's status unchanged."""
    emu = live_emulator_factory()
    manifest = write_manifest(tmp_path, emu.base_url, 1)
    (tmp_path / "board.run" / "report.html").mkdir(parents=True)
    res = _run(manifest, emu)
    assert res.code == 0, res.out + res.err
    warnings = [x for x in res.err.splitlines() if "report" in x]
    assert len(warnings) == 1 and warnings[0].startswith("batchkling: warning: the report")
    assert "report: " not in res.out


def _wait_for(path: Path, event: str, count: int = 1, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and path.read_text().count(f'"event":"{event}"') >= count:
            return
        time.sleep(0.02)
    raise AssertionError(f"fewer than {count} {event} events in {path} after {timeout} s")


def _finish(proc: subprocess.Popen[str]) -> tuple[str, str]:
    try:
        return proc.communicate(timeout=40)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise


@pytest.mark.slow
def test_sigint_with_nothing_in_flight_writes_the_report(
    tmp_path: Path, live_emulator_factory: Live
) -> None:
    """Ctrl-C while tasks generate: no "press Ctrl-C again", exit 130, the report written."""
    emu = live_emulator_factory(gen_seconds=(30, 30))
    manifest = write_manifest(tmp_path, emu.base_url, 2)
    run_dir = tmp_path / "board.run"
    proc = spawn_run(manifest, emu.base_url, key=KEY)
    _wait_for(run_dir / LEDGER_NAME, "created", count=2)
    time.sleep(1.5)  # a progress snapshot after the last answer says nothing is being sent
    proc.send_signal(signal.SIGINT)
    out, err = _finish(proc)
    assert proc.returncode == 130, out + err
    assert "batchkling: stopping: no new creates" in err and "Ctrl-C again" not in err
    assert (run_dir / "report.html").is_file()
    assert f"report: {run_dir / 'report.html'}" in out and "interrupted" in out
    assert KEY not in out + err + (run_dir / "report.html").read_text()


@pytest.mark.slow
def test_a_second_sigint_stops_now_with_exit_130(
    tmp_path: Path, live_emulator_factory: Live
) -> None:
    """A create awaiting its answer: the first Ctrl-C waits, the second says so and leaves."""
    # Every answer takes 20 s; without pre-flight the create is the first request.
    emu = live_emulator_factory(gen_seconds=(30, 30), latency=(20, 20))
    manifest = write_manifest(tmp_path, emu.base_url, 1)
    run_dir = tmp_path / "board.run"
    proc = spawn_run(manifest, emu.base_url, "--skip-preflight", key=KEY)
    _wait_for(run_dir / LEDGER_NAME, "intent")
    time.sleep(1.5)  # a progress snapshot says one create is being sent
    proc.send_signal(signal.SIGINT)
    time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    started = time.monotonic()
    out, err = _finish(proc)
    assert proc.returncode == 130, out + err
    assert time.monotonic() - started < 5
    assert "waiting for the answer to 1 create already sent" in err
    assert "Press Ctrl-C again to quit at once." in err
    assert (
        "batchkling: stopping now; a create in flight may be in doubt, the next run settles it"
        in err.splitlines()
    )
    assert KEY not in out + err
