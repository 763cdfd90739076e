"""States only move forward, and a renamed entry keeps its record: nothing is rendered again."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.emulator_fixtures import LiveEmulator
from tests.runner_helpers import (
    FAST,
    creates_per_prompt,
    ledger_lines,
    run_cli,
    status_json,
    write_manifest,
)

Factory = Callable[..., LiveEmulator]


@pytest.fixture(autouse=True)
def _api_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SJINN_API_KEY", "test-key")


def run(manifest: Path, emu: LiveEmulator, *extra: str) -> Any:
    res = run_cli("run", str(manifest), "--api-base", emu.base_url, *FAST, *extra)
    assert "Traceback" not in res.out + res.err
    return res


def board(path: Path, base: str, shots: list[tuple[str, str, int]], budget: int = 0) -> Path:
    """A manifest of (id, prompt, takes) shots, the image named after the prompt's first word."""
    lines = ["version: 1", f"image_base_url: {base}/__emulator/frames/"]
    lines += [f"budget: {budget}"] if budget else []
    lines.append("shots:")
    for shot_id, prompt, takes in shots:
        image = prompt.split()[0] + ".png"
        lines.append(f"  - {{id: {shot_id}, prompt: {prompt}, image: {image}, takes: {takes}}}")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def moved(run_dir: Path) -> list[tuple[str, str]]:
    return [(e["job"], e["to"]) for e in ledger_lines(run_dir) if e["event"] == "moved"]


@pytest.mark.parametrize(
    ("before", "after"),
    [
        ([("Intro", "dawn over the hills", 1)], [("intro", "dawn over the hills", 1)]),
        ([("s01", "dawn over the hills", 1)], [("opening", "dawn over the hills", 1)]),
    ],
    ids=["case-change", "rename"],
)
def test_a_renamed_entry_with_the_same_request_is_not_rendered_again(
    tmp_path: Path,
    live_emulator_factory: Factory,
    before: list[tuple[str, str, int]],
    after: list[tuple[str, str, int]],
) -> None:
    """A new key for the same request takes the old record (``moved``): no create, done."""
    emu = live_emulator_factory()
    manifest = board(tmp_path / "b.yaml", emu.base_url, before, budget=1000)
    assert run(manifest, emu).code == 0
    board(manifest, emu.base_url, after, budget=1000)
    res = run(manifest, emu)
    assert res.code == 0, res.out + res.err
    old, new = before[0][0], after[0][0]
    assert f"moved: {old} -> {new}" in res.out
    assert moved(tmp_path / "b.run") == [(old, new)]
    stats = emu.stats()
    assert stats["tasks_created"] == 1 and stats["credits_charged"]["test-key"] == 1000
    assert [(j["job"], j["state"]) for j in status_json(manifest)["jobs"]] == [(new, "done")]


def test_going_from_one_take_to_two_pays_for_one_new_job(
    tmp_path: Path, live_emulator_factory: Factory
) -> None:
    """takes 1 -> 2: s01 becomes s01#1 (take 1 is the same request), only s01#2 is created."""
    emu = live_emulator_factory()
    manifest = board(tmp_path / "b.yaml", emu.base_url, [("s01", "dawn breaks", 1)], budget=2000)
    assert run(manifest, emu).code == 0
    board(manifest, emu.base_url, [("s01", "dawn breaks", 2)], budget=2000)
    res = run(manifest, emu)
    assert res.code == 0, res.out + res.err
    assert moved(tmp_path / "b.run") == [("s01", "s01#1")]
    stats = emu.stats()
    assert stats["tasks_created"] == 2 and stats["credits_charged"]["test-key"] == 2000
    assert {j["job"]: j["state"] for j in status_json(manifest)["jobs"]} == {
        "s01#1": "done",
        "s01#2": "done",
    }


def test_rerender_changed_without_room_never_marks_done_jobs_skipped(
    tmp_path: Path, live_emulator_factory: Factory
) -> None:
    """--rerender-changed --allow-partial, no budget left: done jobs stay done; reverting pays 0."""
    emu = live_emulator_factory()
    manifest = write_manifest(tmp_path, emu.base_url, 2, budget=2000)
    original = manifest.read_text()
    assert run(manifest, emu).code == 0
    manifest.write_text(original.replace("shot 2 turns", "shot 2 jumps"))
    res = run(manifest, emu, "--rerender-changed", "--allow-partial")
    assert res.code == 0, res.out + res.err
    assert "keeps its state: s02" in res.err
    assert not [e for e in ledger_lines(tmp_path / "board.run") if e["event"] == "skipped"]
    assert status_json(manifest)["counts"]["done"] == 2
    manifest.write_text(original)
    assert run(manifest, emu).code == 0
    stats = emu.stats()
    assert set(creates_per_prompt(stats).values()) == {1} and stats["tasks_created"] == 2
    assert stats["credits_charged"]["test-key"] == 2000
