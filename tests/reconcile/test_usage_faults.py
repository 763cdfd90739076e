"""Lost create answers against a credits usage that is wrong, late or on another clock.

Every case runs real `batchkling run`s over loopback against the emulator with lost
answers, and checks the emulator's own counters: no request was created twice and
the account was never charged more than the budget.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from batchkling.emulator.usage_variants import USAGE_DEFECTS
from tests.emulator_fixtures import LiveEmulator
from tests.runner_helpers import FAST, creates_per_prompt, run_cli, status_json, write_manifest

Factory = Callable[..., LiveEmulator]


@pytest.fixture(autouse=True)
def _key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SJINN_API_KEY", "test-key")


def _run(manifest: Path, emu: LiveEmulator, *extra: str) -> Any:
    res = run_cli("run", str(manifest), "--api-base", emu.base_url, *FAST, *extra)
    assert "Traceback" not in res.out + res.err
    assert res.code in (0, 1), res.out + res.err
    return res


def _paid_once(emu: LiveEmulator, budget: int | None = None) -> dict[str, Any]:
    stats = emu.stats()
    assert max(creates_per_prompt(stats).values(), default=0) <= 1, creates_per_prompt(stats)
    if budget is not None:
        assert stats["credits_charged"].get("test-key", 0) <= budget
    return stats


@pytest.mark.parametrize("defect", sorted(USAGE_DEFECTS))
def test_a_wrong_usage_answer_never_leads_to_a_second_create(
    tmp_path: Path, live_emulator_factory: Factory, defect: str
) -> None:
    """Whatever is wrong with the usage answer, a lost create is never sent again."""
    emu = live_emulator_factory(
        lost_response_rate=0.5, gen_seconds=(0.05, 0.1), seed=3, usage_defect=defect
    )
    manifest = write_manifest(tmp_path, emu.base_url, 6, prompt="shot {i} under " + defect)
    for _ in range(2):
        _run(manifest, emu, "--usage-settle", "0.2")
    stats = _paid_once(emu)
    assert stats["requests"]["create_tool_task"].get("lost", 0) > 0
    assert stats["tasks_created"] == len(creates_per_prompt(stats))


@pytest.mark.parametrize("offset", [-600.0, 90.0])
def test_a_provider_clock_minutes_off_is_measured_and_lost_creates_adopted(
    tmp_path: Path, live_emulator_factory: Factory, offset: float
) -> None:
    """With the provider's clock minutes off ours, lost creates are adopted, never repeated."""
    emu = live_emulator_factory(
        lost_response_rate=0.4, gen_seconds=(0.05, 0.1), seed=5, usage_clock_offset=offset
    )
    manifest = write_manifest(tmp_path, emu.base_url, 8, prompt="clock {i}")
    for _ in range(3):
        res = _run(manifest, emu)
        if res.code == 0:
            break
    stats = _paid_once(emu)
    assert stats["requests"]["create_tool_task"].get("lost", 0) > 0
    counts = status_json(manifest)["counts"]
    assert counts.get("done", 0) + counts.get("in_doubt", 0) == 8
    assert counts.get("done", 0) >= 6  # calibrated from known tasks: adopted, not left


def test_a_fractional_duration_with_every_answer_lost_is_paid_once_within_budget(
    tmp_path: Path, live_emulator_factory: Factory
) -> None:
    """7.5 s billed 1,500 but reserved 1,600: never taken for "never created", never paid again."""
    emu = live_emulator_factory(lost_response_rate=1.0, gen_seconds=(0.05, 0.1))
    manifest = tmp_path / "frac.yaml"
    manifest.write_text(
        "version: 1\n"
        f"image_base_url: {emu.base_url}/__emulator/frames/\n"
        "budget: 1600\n"
        "shots:\n"
        "  - {id: s01, prompt: a fractional shot, image: s01.png, duration: 7.5}\n",
        encoding="utf-8",
    )
    for _ in range(3):
        _run(manifest, emu, "--usage-settle", "0.2")
    stats = _paid_once(emu, budget=1600)
    assert stats["tasks_created"] == 1
    assert stats["credits_charged"]["test-key"] == 1500


def test_a_usage_lag_longer_than_the_settle_delay_pays_nothing_twice(
    tmp_path: Path, live_emulator_factory: Factory
) -> None:
    """Charges listed seconds after they happen, with a settle delay shorter than that."""
    emu = live_emulator_factory(
        lost_response_rate=0.5, gen_seconds=(0.05, 0.1), seed=11, usage_lag=1.5
    )
    manifest = write_manifest(tmp_path, emu.base_url, 6, prompt="lagging {i}")
    for _ in range(3):
        _run(manifest, emu, "--usage-settle", "0.2")
    stats = _paid_once(emu)
    assert stats["requests"]["create_tool_task"].get("lost", 0) > 0
    doc = status_json(manifest)
    assert doc["credits_committed"] >= stats["credits_charged"]["test-key"]
