"""`batchkling pick`, `reject` and `note` on run directories made by real runs.

Each test renders a small board against the live emulator, then marks its takes
through ``batchkling.cli.main``; one marks a take while a `batchkling run`
process holds the run directory.
"""

from __future__ import annotations

import csv
import io
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from batchkling.ledger import LEDGER_NAME
from batchkling.review.inbox import INBOX_NAME
from tests.emulator_fixtures import LiveEmulator
from tests.runner_helpers import FAST, Result, ledger_lines, run_cli, spawn_run, status_json

Live = Callable[..., LiveEmulator]
KEY = "sk-pick-cli-3c1f0"


@pytest.fixture(autouse=True)
def _key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SJINN_API_KEY", KEY)


def _manifest(directory: Path, base_url: str, takes: dict[str, int]) -> Path:
    """A manifest of the shots ``takes`` names, each with its number of takes."""
    lines = [
        "version: 1",
        "name: board",
        f"image_base_url: {base_url}/__emulator/frames/",
        "defaults:",
        "  model_mode: standard",
        "  duration: 5",
        "shots:",
    ]
    for i, (shot, n) in enumerate(takes.items(), 1):
        lines += [
            f"  - id: {shot}",
            f"    prompt: shot {i} turns slowly",
            f"    image: s{i:02d}.png",
        ]
        if n != 1:
            lines.append(f"    takes: {n}")
    path = directory / "board.yaml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture
def board(tmp_path: Path, live_emulator_factory: Live) -> Path:
    """A board of s01 (3 takes), s02 (2 takes) and s03 (1 take), every job done."""
    emu = live_emulator_factory()
    manifest = _manifest(tmp_path, emu.base_url, {"s01": 3, "s02": 2, "s03": 1})
    res = run_cli("run", str(manifest), "--api-base", emu.base_url, *FAST)
    assert res.code == 0, res.out + res.err
    return manifest


def _cli(*argv: str) -> Result:
    res = run_cli(*argv)
    assert "Traceback" not in res.out + res.err
    return res


def _marks(run_dir: Path) -> list[dict[str, Any]]:
    return [e for e in ledger_lines(run_dir) if e["event"] in ("picked", "rejected", "noted")]


def _jobs(manifest: Path, *extra: str) -> dict[str, dict[str, Any]]:
    return {j["job"]: j for j in status_json(manifest, *extra)["jobs"]}


def test_a_pick_goes_into_the_ledger_and_replaces_the_earlier_one(board: Path) -> None:
    """Picking another take of a shot says which it replaced; the ledger holds both picks."""
    run_dir = board.parent / "board.run"
    first = _cli("pick", str(board), "s01#1", "s02#2")
    assert first.code == 0, first.err
    assert first.out.splitlines() == ["picked s01#1", "picked s02#2"]
    again = _cli("pick", str(board), "s01#2")
    assert again.code == 0, again.err
    assert again.out.splitlines() == ["picked s01#2 (was s01#1)"]
    assert [(e["event"], e["job"], e["shot"]) for e in _marks(run_dir)] == [
        ("picked", "s01#1", "s01"),
        ("picked", "s02#2", "s02"),
        ("picked", "s01#2", "s01"),
    ]
    assert list((run_dir / INBOX_NAME).iterdir()) == []  # moved, nothing left waiting
    jobs = _jobs(board)
    assert [k for k, j in jobs.items() if j["picked"]] == ["s01#2", "s02#2"]
    line = next(x for x in _cli("status", str(board)).out.splitlines() if x.startswith("s01#2 "))
    assert line.endswith("  [picked]")


def test_a_one_take_shot_is_named_by_its_id_and_a_shot_of_takes_is_not(board: Path) -> None:
    """s03 (one take) is its job; s01 (three takes) and an unknown job are one-line errors."""
    run_dir = (board.parent / "board.run").absolute()
    assert _cli("pick", str(board), "s03").out == "picked s03\n"
    shot = _cli("pick", str(board), "s01")
    assert shot.code == 2 and shot.out == ""
    assert shot.err.count("\n") == 1 and "s01#1 to s01#3" in shot.err
    unknown = _cli("reject", "--run-dir", str(run_dir), "s09#1")
    assert unknown.code == 2 and unknown.err.count("\n") == 1
    assert "s09#1" in unknown.err and str(run_dir) in unknown.err
    both = _cli("pick", str(board), "s01#1", "s01#3")
    assert both.code == 2 and "same shot" in both.err
    assert [e["job"] for e in _marks(run_dir)] == ["s03"]


def test_a_take_that_is_not_done_cannot_be_picked(board: Path) -> None:
    """A shot added since the run is pending: picking it is refused saying so; reject works."""
    text = board.read_text(encoding="utf-8")
    board.write_text(text + "  - id: s04\n    prompt: new\n    image: s04.png\n", "utf-8")
    res = _cli("pick", str(board), "s04")
    assert res.code == 2 and res.out == ""
    assert "s04 is pending, not done" in res.err
    assert _marks(board.parent / "board.run") == []
    assert _cli("reject", str(board), "s04").out == "rejected s04\n"
    assert _cli("note", str(board), "s04", "write it again").out == "noted s04\n"


def test_reject_unpicks_and_undo_and_clear_take_marks_back(board: Path) -> None:
    """Rejecting the pick unpicks it; --undo and --clear remove marks; status shows each."""
    assert _cli("pick", str(board), "s02#1").code == 0
    rej = _cli("reject", str(board), "s02#1", "s01#3")
    assert rej.out.splitlines() == [
        "rejected s02#1 (it was the pick of s02; s02 has no pick now)",
        "rejected s01#3",
    ]
    assert _cli("note", str(board), "s01#3", "hand\nmelts").out == "noted s01#3\n"
    jobs = _jobs(board)
    assert jobs["s02#1"]["picked"] is False and jobs["s02#1"]["rejected"] is True
    assert jobs["s01#3"]["note"] == "hand\nmelts"
    line = next(x for x in _cli("status", str(board)).out.splitlines() if x.startswith("s01#3 "))
    assert line.endswith('  [rejected] note: "hand\\nmelts"')
    assert _cli("reject", str(board), "s02#1", "--undo").out == "unrejected s02#1\n"
    assert _cli("reject", str(board), "s02#1", "--undo").out == (
        "s02#1 is not rejected; nothing to undo\n"
    )
    assert _cli("note", str(board), "s01#3", "--clear").out == "cleared the note of s01#3\n"
    assert _cli("pick", str(board), "s02#2").code == 0
    assert (
        _cli("pick", str(board), "s02#2", "--undo").out == "unpicked s02#2 (s02 has no pick now)\n"
    )
    jobs = _jobs(board)
    assert not any(j["picked"] for j in jobs.values())
    assert [k for k, j in jobs.items() if j["rejected"]] == ["s01#3"]
    assert all(j["note"] is None for j in jobs.values())


def test_note_words_and_a_text_that_looks_like_an_option(board: Path) -> None:
    """A TEXT starting with - follows --; a missing or empty TEXT is a one-line usage error."""
    res = _cli("note", str(board), "s01#1", "--", "-2 stops, too dark")
    assert res.code == 0 and res.out == "noted s01#1\n"
    again = _cli("note", str(board), "s01#1", "fine now")
    assert again.out == "noted s01#1 (replacing its earlier note)\n"
    assert _jobs(board)["s01#1"]["note"] == "fine now"
    missing = _cli("note", str(board), "s01#1")
    assert missing.code == 2 and missing.err.count("\n") == 1 and "JOB TEXT" in missing.err
    empty = _cli("note", str(board), "s01#1", " ")
    assert empty.code == 2 and "--clear" in empty.err
    assert (
        _cli("note", str(board), "s01#2", "--clear").out == "s01#2 has no note; nothing to clear\n"
    )


def test_reports_carry_the_marks_and_neutralise_a_note(board: Path) -> None:
    """JSON and CSV reports have picked, rejected and note per job; a formula note is defused."""
    assert _cli("pick", str(board), "s01#2").code == 0
    assert _cli("reject", str(board), "s02#1").code == 0
    assert _cli("note", str(board), "s03", "=HYPERLINK(1)").code == 0
    doc = json.loads(_cli("report", str(board), "--format", "json", "-o", "-").out)
    rows = {j["job"]: j for j in doc["jobs"]}
    assert (rows["s01#2"]["picked"], rows["s01#2"]["rejected"]) == (True, False)
    assert rows["s02#1"]["rejected"] is True and rows["s01#1"]["picked"] is False
    assert rows["s03"]["note"] == "=HYPERLINK(1)" and rows["s01#1"]["note"] is None
    out = _cli("report", str(board), "--format", "csv", "-o", "-").out
    table = {r["job"]: r for r in csv.DictReader(io.StringIO(out, newline=""))}
    assert table["s01#2"]["picked"] == "true" and table["s01#1"]["picked"] == "false"
    assert table["s02#1"]["rejected"] == "true"
    assert table["s03"]["note"] == "'=HYPERLINK(1)" and table["s01#1"]["note"] == ""


def test_marks_need_a_run_dir_and_a_writable_one(board: Path, tmp_path: Path) -> None:
    """No MANIFEST nor --run-dir is usage; an inbox that cannot be written is exit 5."""
    none = _cli("pick", "s01#1")
    assert none.code == 2 and "needs MANIFEST or --run-dir" in none.err
    empty = _cli("pick", "--run-dir", str(tmp_path / "nothing"), "s01#1")
    assert empty.code == 2 and "nothing has run" in empty.err
    run_dir = board.parent / "board.run"
    (run_dir / INBOX_NAME).write_text("in the way")  # the inbox cannot be made
    res = _cli("note", "--run-dir", str(run_dir), "s03", "too dark")
    assert res.code == 5 and res.out == ""
    assert res.err.count("\n") == 1 and "nothing was recorded" in res.err
    assert _marks(run_dir) == []


def _wait_for_download(ledger: Path, timeout: float = 30.0) -> str:
    """The first job the run downloads, once its line is whole in the ledger."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ledger.exists():
            whole = ledger.read_text(encoding="utf-8").split("\n")[:-1]  # a last line may be torn
            for line in whole:
                if '"event":"downloaded"' in line:
                    job: str = json.loads(line)["job"]
                    return job
        time.sleep(0.05)
    raise AssertionError(f"nothing downloaded in {ledger}")


def test_a_pick_while_a_run_holds_the_run_dir(tmp_path: Path, live_emulator_factory: Live) -> None:
    """The live run moves the pick into its ledger and ends with 0; status and reports show it."""
    emu = live_emulator_factory(gen_seconds=(2.0, 3.0))
    board = _manifest(tmp_path, emu.base_url, {"s01": 2, "s02": 2, "s03": 2})
    run_dir = tmp_path / "board.run"
    proc = spawn_run(board, emu.base_url, "--concurrency", "2", key=KEY)
    try:
        job = _wait_for_download(run_dir / LEDGER_NAME)
        res = _cli("pick", str(board), job)
        running = proc.poll() is None
    finally:
        out, err = proc.communicate(timeout=60)
    assert res.code == 0, res.err
    assert res.out.splitlines()[0] == f"picked {job}"
    assert proc.returncode == 0, out + err
    assert running, "the run ended before the pick: it could not be the run that moved it"
    assert "the run moves them into the ledger within a second" in res.out
    assert [(e["event"], e["job"]) for e in _marks(run_dir)] == [("picked", job)]
    assert list((run_dir / INBOX_NAME).iterdir()) == []
    assert [k for k, j in _jobs(board).items() if j["picked"]] == [job]
    doc = json.loads(_cli("report", str(board), "--format", "json", "-o", "-").out)
    assert [j["job"] for j in doc["jobs"] if j["picked"]] == [job]
    table = csv.DictReader(
        io.StringIO(_cli("report", str(board), "--format", "csv", "-o", "-").out)
    )
    assert [r["job"] for r in table if r["picked"] == "true"] == [job]
