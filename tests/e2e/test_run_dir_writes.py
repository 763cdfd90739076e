"""A run directory that cannot be written stops a real `batchkling run`: exit 5, no double pay."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from batchkling.journal import account_id
from batchkling.ledger import LEDGER_NAME, fold_ledger
from tests.emulator_fixtures import LiveEmulator
from tests.runner_helpers import FAST, ROOT, creates_per_prompt, spawn_run, write_manifest

Factory = Callable[..., LiveEmulator]

pytestmark = pytest.mark.slow


def _limited_run(
    manifest: Path, base_url: str, fsize: int, *extra: str
) -> subprocess.CompletedProcess[str]:
    """``batchkling run`` under a file size limit (``prlimit --fsize``); SIGXFSZ is ignored."""
    if shutil.which("prlimit") is None:
        pytest.skip("prlimit is not installed")
    env = {**os.environ, "SJINN_API_KEY": "test-key", "PYTHONUNBUFFERED": "1"}
    cmd = [f"--fsize={fsize}:{fsize}", sys.executable, "-m", "batchkling", "run", str(manifest)]
    cmd += ["--api-base", base_url, *FAST, *extra]
    return subprocess.run(
        ["prlimit", *cmd], capture_output=True, text=True, env=env, cwd=ROOT, timeout=60
    )


def _whole_lines(path: Path) -> list[str]:
    data = path.read_bytes()
    assert data.endswith(b"\n")
    lines = data.decode().splitlines()
    for line in lines:
        json.loads(line)
    return lines


def test_a_file_size_limit_stops_the_run_with_exit_5_and_the_next_run_pays_nothing_twice(
    tmp_path: Path, live_emulator_factory: Factory
) -> None:
    """The ledger reaches the size limit: exit 5, one line, whole lines; a later run finishes."""
    emu = live_emulator_factory()
    manifest = write_manifest(tmp_path, emu.base_url, 12, budget=12000)
    run_dir = tmp_path / "board.run"
    res = _limited_run(manifest, emu.base_url, 3000, "--no-download", "--skip-preflight")
    assert res.returncode == 5, res.stdout + res.stderr
    assert "Traceback" not in res.stdout + res.stderr
    errors = [line for line in res.stderr.splitlines() if line.startswith("batchkling: error:")]
    assert len(errors) == 1 and "could not be written" in errors[0]
    lines = _whole_lines(run_dir / LEDGER_NAME)
    # The limit is per file: the ledger or the account journal reaches it first,
    # whichever has written more; either way the run stops the money and says which.
    journal_full = "account journal" in errors[0]
    ledger_size = (run_dir / LEDGER_NAME).stat().st_size
    if not journal_full:
        assert str(run_dir) in errors[0]
        assert not any('"run_ended"' in line for line in lines)  # no write after the failure
    created = emu.stats()["tasks_created"]
    assert 0 < created < 12  # it stopped creating
    final = spawn_run(manifest, emu.base_url, "--no-download", "--skip-preflight")
    out, err = final.communicate(timeout=60)
    assert final.returncode == 0 and "Traceback" not in out + err, out + err
    stats = emu.stats()
    assert stats["tasks_created"] == 12 and set(creates_per_prompt(stats).values()) == {1}
    assert stats["credits_charged"]["test-key"] <= 12000
    if journal_full:
        # The ledger records the stop, unless it was full too: a run_ended line (as the
        # final run wrote one) did not fit under the limit any more.
        ended = [x for x in _whole_lines(run_dir / LEDGER_NAME) if '"run_ended"' in x]
        fits = ledger_size + len(ended[-1]) + 1 <= 3000
        assert '"exit_status":5' in lines[-1] if fits else '"run_ended"' not in lines[-1]


def test_a_ledger_replaced_under_a_live_run_stops_it_with_exit_5(
    tmp_path: Path, live_emulator_factory: Factory
) -> None:
    """Another program swaps the ledger file: the run stops creating and exits 5."""
    emu = live_emulator_factory(gen_seconds=(0.4, 0.8))
    manifest = write_manifest(tmp_path, emu.base_url, 10)
    ledger = tmp_path / "board.run" / LEDGER_NAME
    proc = spawn_run(manifest, emu.base_url, "--concurrency", "2", "--no-download")
    deadline = time.monotonic() + 20
    while not (ledger.exists() and '"event":"created"' in ledger.read_text()):
        assert time.monotonic() < deadline and proc.poll() is None
        time.sleep(0.02)
    aside = ledger.with_name("ledger.aside")
    os.rename(ledger, aside)  # the run's own file, still open in the run
    shutil.copyfile(aside, ledger)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 5, out + err
    assert "Traceback" not in out + err and "replaced by another file" in err, out + err
    sent = {k for k, rec in fold_ledger(aside).state.jobs.items() if rec.ever_sent}
    assert len(creates_per_prompt(emu.stats())) == len(sent) < 10  # nothing sent unrecorded
    os.replace(aside, ledger)  # restore the run directory, then resume
    final = spawn_run(manifest, emu.base_url, "--no-download")
    out, err = final.communicate(timeout=60)
    assert final.returncode == 0 and "Traceback" not in out + err, out + err
    assert set(creates_per_prompt(emu.stats()).values()) == {1}


def test_an_account_journal_that_cannot_be_written_stops_the_run_before_any_create(
    tmp_path: Path, live_emulator_factory: Factory
) -> None:
    """The journal is at the size limit: exit 5 before the first create; the ledger says so."""
    emu = live_emulator_factory()
    manifest = write_manifest(tmp_path, emu.base_url, 3)
    accounts = Path(os.environ["XDG_STATE_HOME"]) / "batchkling" / "accounts"
    accounts.mkdir(parents=True)
    filler = json.dumps({"ts": "2026-01-01T00:00:00Z", "event": "note", "text": "x" * 60})
    journal = accounts / f"{account_id(emu.base_url, 'test-key')}.jsonl"
    journal.write_text((filler + "\n") * 60)  # about 6 kB: the next line passes the limit
    res = _limited_run(manifest, emu.base_url, journal.stat().st_size + 10, "--skip-preflight")
    assert res.returncode == 5, res.stdout + res.stderr
    assert "Traceback" not in res.stdout + res.stderr
    assert "the account journal" in res.stderr and "could not be written" in res.stderr
    assert emu.stats()["tasks_created"] == 0
    lines = _whole_lines(tmp_path / "board.run" / LEDGER_NAME)
    assert json.loads(lines[-1])["event"] == "run_ended"
    assert json.loads(lines[-1])["exit_status"] == 5
