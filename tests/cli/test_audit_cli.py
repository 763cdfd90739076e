"""`batchkling audit`: every charge over a run directory's runs, explained or not."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

import httpx
import pytest

from tests.emulator_fixtures import LiveEmulator
from tests.runner_helpers import FAST, run_cli, status_json, write_manifest

Factory = Callable[..., LiveEmulator]


@pytest.fixture(autouse=True)
def _key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SJINN_API_KEY", "test-key")


def _audit(manifest: Path, emu: LiveEmulator, *extra: str) -> tuple[int, str, str]:
    res = run_cli("audit", str(manifest), "--api-base", emu.base_url, "--usage-settle", "5", *extra)
    assert "Traceback" not in res.out + res.err
    return res.code, res.out, res.err


def test_a_clean_run_audits_clean_and_status_shows_it(
    tmp_path: Path, live_emulator_factory: Factory
) -> None:
    """Every charge in the ledger: exit 0, each job charged once, the verdict kept for status."""
    emu = live_emulator_factory(gen_seconds=(0.05, 0.1))
    manifest = write_manifest(tmp_path, emu.base_url, 3)
    assert run_cli("run", str(manifest), "--api-base", emu.base_url, *FAST).code == 0
    code, out, _ = _audit(manifest, emu)
    assert code == 0, out
    assert out.count(": charged once") == 3 and "audit: clean" in out
    code, out, _ = _audit(manifest, emu, "--json")
    doc = json.loads(out)
    assert code == 0 and doc["clean"] is True and doc["charged"] == 3000
    assert status_json(manifest)["audit"]["clean"] is True


def test_an_unexplained_charge_fails_the_audit(
    tmp_path: Path, live_emulator_factory: Factory
) -> None:
    """A charge of this tool in the span that no run directory knows: exit 1, named."""
    emu = live_emulator_factory(gen_seconds=(0.05, 0.1))
    manifest = write_manifest(tmp_path, emu.base_url, 2)
    assert run_cli("run", str(manifest), "--api-base", emu.base_url, *FAST).code == 0
    body = {
        "key": "test-key",
        "cost_credits": 1000,
        "task_id": "paid-twice",
        "create_time": datetime.now(timezone.utc).isoformat().replace("+00:00", "Z"),
    }
    httpx.post(emu.base_url + "/__emulator/usage", json=body).raise_for_status()
    code, out, _ = _audit(manifest, emu)
    assert code == 1
    assert "unexplained charge: task paid-twice" in out and "NOT clean" in out
    assert status_json(manifest)["audit"]["unexplained"][0]["task_id"] == "paid-twice"


def test_audit_before_any_run_is_a_usage_error(
    tmp_path: Path, live_emulator_factory: Factory
) -> None:
    """No run directory yet: exit 2 with one line naming where it looked."""
    emu = live_emulator_factory()
    manifest = write_manifest(tmp_path, emu.base_url, 1)
    code, _, err = _audit(manifest, emu)
    assert code == 2 and "no run of" in err and len(err.strip().splitlines()) == 1
