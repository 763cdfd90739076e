"""The end of every run compares what the account was charged with the ledger."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.emulator_fixtures import LiveEmulator
from tests.runner_helpers import FAST, creates_per_prompt, run_cli, write_manifest

Factory = Callable[..., LiveEmulator]


@pytest.fixture(autouse=True)
def _api_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SJINN_API_KEY", "test-key")


def run(manifest: Path, emu: LiveEmulator, *extra: str) -> Any:
    res = run_cli("run", str(manifest), "--api-base", emu.base_url, *FAST, *extra)
    assert "Traceback" not in res.out + res.err
    return res


def test_a_charge_no_run_directory_knows_is_reported_at_the_end_of_the_run(
    tmp_path: Path, live_emulator_factory: Factory
) -> None:
    """A clean run says so; a charge of this tool that no ledger explains is named."""
    emu = live_emulator_factory()
    manifest = write_manifest(tmp_path, emu.base_url, 2)
    res = run(manifest, emu)
    assert res.code == 0 and "audit: clean" in res.out and "2 charges" in res.out
    at = datetime.now(timezone.utc).isoformat().replace("+00:00", "Z")
    record = {"key": "test-key", "cost_credits": 1000, "create_time": at, "task_id": "stray-1"}
    httpx.post(emu.base_url + "/__emulator/usage", json=record).raise_for_status()
    res = run(manifest, emu)
    assert res.code == 0
    assert "audit: unexplained charge: task stray-1, 1,000 credits" in res.out
    assert "test-key" not in res.out + res.err
    stats = emu.stats()
    assert set(creates_per_prompt(stats).values()) == {1} and stats["tasks_created"] == 2


def test_charges_of_another_run_directory_are_explained_by_the_journal(
    tmp_path: Path, live_emulator_factory: Factory
) -> None:
    """Another run directory's tasks, in the same span, are that directory's: still clean."""
    emu = live_emulator_factory()
    first = write_manifest(tmp_path, emu.base_url, 2, name="first", prompt="first {i}")
    second = write_manifest(tmp_path, emu.base_url, 1, name="second", prompt="second {i}")
    assert run(first, emu).code == 0
    res = run(second, emu)
    assert res.code == 0, res.out + res.err
    assert "audit: clean" in res.out and "unexplained" not in res.out
    assert emu.stats()["credits_charged"]["test-key"] == 3000
