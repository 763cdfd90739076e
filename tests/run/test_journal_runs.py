"""The account journal in every run: two run directories of one account never pay twice."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from batchkling.journal import AccountJournal, account_id
from tests.emulator_fixtures import LiveEmulator
from tests.runner_helpers import FAST, creates_per_prompt, run_cli, status_json, write_manifest

Factory = Callable[..., LiveEmulator]
KEY = "sk-journal-secret-4242"


@pytest.fixture(autouse=True)
def _api_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SJINN_API_KEY", KEY)


def run(manifest: Path, emu: LiveEmulator, *extra: str) -> Any:
    res = run_cli("run", str(manifest), "--api-base", emu.base_url, *FAST, *extra)
    assert "Traceback" not in res.out + res.err
    return res


def journal_lines(emu: LiveEmulator) -> list[dict[str, Any]]:
    """Every line of this account's journal under the test's own XDG_STATE_HOME."""
    state = Path(os.environ["XDG_STATE_HOME"]) / "batchkling" / "accounts"
    text = (state / f"{account_id(emu.base_url, KEY)}.jsonl").read_text()
    assert KEY not in text
    return [json.loads(line) for line in text.splitlines()]


def test_the_same_manifest_in_two_run_directories_pays_once(
    tmp_path: Path, live_emulator_factory: Factory
) -> None:
    """A second run directory refuses requests the first has done, naming it and the flag."""
    emu = live_emulator_factory()
    manifest = write_manifest(tmp_path, emu.base_url, 3, budget=3000)
    first, second = tmp_path / "first.run", tmp_path / "second.run"
    assert run(manifest, emu, "--run-dir", str(first)).code == 0
    lines = journal_lines(emu)
    assert [e["event"] for e in lines].count("intent") == 3
    created = [e for e in lines if e["event"] == "created"]
    assert {e["job"] for e in created} == {"s01", "s02", "s03"}
    assert all(e["run_dir"] == str(first.resolve()) and e["fingerprint"] for e in created)
    res = run(manifest, emu, "--run-dir", str(second))
    assert res.code == 1
    assert res.out.count(str(first.resolve())) == 3 and "--allow-duplicate" in res.out
    assert status_json(manifest, "--run-dir", str(second))["counts"]["pending"] == 3
    stats = emu.stats()
    assert set(creates_per_prompt(stats).values()) == {1}
    assert stats["credits_charged"][KEY] == 3000
    res = run(manifest, emu, "--run-dir", str(second), "--allow-duplicate")
    assert res.code == 0, res.out + res.err
    assert set(creates_per_prompt(emu.stats()).values()) == {2}  # asked for: paid again


def test_a_failed_task_no_longer_blocks_its_request_elsewhere(
    tmp_path: Path, live_emulator_factory: Factory
) -> None:
    """A task that failed is recorded failed in the journal; another run directory may send it."""
    emu = live_emulator_factory(fail_rate=1.0)
    manifest = write_manifest(tmp_path, emu.base_url, 1)
    assert run(manifest, emu, "--run-dir", str(tmp_path / "a.run")).code == 1
    assert [e["event"] for e in journal_lines(emu)] == ["intent", "created", "failed"]
    emu.set_config(fail_rate=0.0)
    res = run(manifest, emu, "--run-dir", str(tmp_path / "b.run"))
    assert res.code == 0, res.out + res.err
    assert creates_per_prompt(emu.stats()) == {"shot 1 turns slowly": 2}


def test_a_line_glued_to_a_torn_piece_is_still_read(tmp_path: Path) -> None:
    """A write torn by a full disk, then another run's line glued on: that line still counts."""
    journal = AccountJournal.open(tmp_path, "https://sjinn.ai", KEY)
    try:
        with open(journal.path, "ab") as fh:
            fh.write(b'{"ts":"2026-01-01T00:00:00Z","event":"intent","run_d')  # torn here
        other = AccountJournal.open(tmp_path, "https://sjinn.ai", KEY)
        other.append("created", run_dir="/r/b.run", job="s01", fingerprint="f1", task_id="t9")
        other.close()
        assert journal.foreign_tasks(tmp_path / "a.run") == {"t9"}
        assert journal.task_dirs(tmp_path / "a.run") == {"t9": "/r/b.run"}
    finally:
        journal.close()
