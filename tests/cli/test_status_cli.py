"""`batchkling status` reads a ledger without the network or the lock."""

from __future__ import annotations

import fcntl
import json
from pathlib import Path

from batchkling.ledger import LEDGER_NAME, LOCK_NAME, Ledger
from tests.runner_helpers import run_cli


def _ledger(run_dir: Path) -> None:
    with Ledger.open(run_dir) as led:
        led.append_sync("intent", "a", credits=1000, fingerprint="f" * 64)
        led.append_sync("created", "a", task_id="t-a")
        led.append_sync("intent", "b", credits=1500, fingerprint="e" * 64)
        led.append_sync("in_doubt", "b", error="no answer")


def test_status_of_a_run_dir_alone(tmp_path: Path) -> None:
    """--run-dir alone lists what the ledger knows, with states, credits and task ids."""
    _ledger(tmp_path)
    res = run_cli("status", "--run-dir", str(tmp_path), "--json")
    assert res.code == 0, res.err
    doc = json.loads(res.out)
    assert [(j["job"], j["state"], j["task_id"]) for j in doc["jobs"]] == [
        ("a", "running", "t-a"),
        ("b", "in_doubt", None),
    ]
    assert doc["credits_committed"] == 2500
    assert doc["counts"]["running"] == 1 and doc["counts"]["in_doubt"] == 1
    text = run_cli("status", "--run-dir", str(tmp_path))
    assert text.code == 0 and "2 jobs: in_doubt 1, running 1; 2,500 credits committed" in text.out


def test_status_works_while_a_run_holds_the_lock_and_leaves_a_torn_tail(tmp_path: Path) -> None:
    """No lock is needed; a torn last line is warned about and left for the next run."""
    _ledger(tmp_path)
    with open(tmp_path / LEDGER_NAME, "a") as fh:
        fh.write('{"ts": "2026')
    with open(tmp_path / LOCK_NAME, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)  # as a running `run` holds it
        res = run_cli("status", "--run-dir", str(tmp_path))
    assert res.code == 0 and "torn" in res.err
    assert "2,500 credits committed" in res.out
    assert (tmp_path / LEDGER_NAME).read_text().endswith('{"ts": "2026')


def test_status_without_a_ledger(tmp_path: Path) -> None:
    """A run directory where nothing ran is one clear error, exit 2; no arguments is usage."""
    res = run_cli("status", "--run-dir", str(tmp_path / "nothing"))
    assert res.code == 2 and "nothing has run" in res.err
    assert run_cli("status").code == 2
