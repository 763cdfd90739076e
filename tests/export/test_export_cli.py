"""`batchkling export` as a command: its outputs together, exports.json, and its errors."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path
from typing import Any

import opentimelineio as otio

from batchkling.cli import main as cli_main
from batchkling.export.record import read_exports
from batchkling.ledger import fold_ledger
from tests.emulator_fixtures import FAST_GEN
from tests.export.conftest import Board, run
from tests.export.export_helpers import export, listing, take_path

_BOARD = """\
version: 1
name: tagged
image_base_url: {base}/__emulator/frames/
defaults:
  duration: 2
shots:
  - id: open
    prompt: the door opens
    image: a.png
    takes: 2
    tags: [act1, door]
  - id: close
    prompt: the door closes
    image: b.png
"""


def test_all_three_outputs_at_once_and_recorded(
    live_emulator_factory: Any, tmp_path: Path, monkeypatch: Any
) -> None:
    """A YAML board of its own (takes: 2, tags): three lines, three files, exports.json."""
    live = live_emulator_factory(gen_seconds=FAST_GEN)
    manifest = tmp_path / "tagged.yaml"
    manifest.write_text(_BOARD.format(base=live.base_url), encoding="utf-8")
    monkeypatch.setenv("SJINN_API_KEY", "test-key")
    code, said = run(manifest, live.base_url)
    assert code == 0, said
    run_dir = tmp_path / "tagged.run"
    before = listing(run_dir / "videos")
    out = tmp_path / "out"
    res = export(manifest, "--animatic", out / "a.mp4", "--otio", out / "t.otio",
                 "--contact-sheet", out / "c.png")  # fmt: skip
    assert res.code == 0, res.err
    assert res.err == ""  # no progress bar when stderr is not a terminal
    lines = res.out.splitlines()
    assert [line.split(":")[0] for line in lines] == ["animatic", "otio", "contact_sheet"]
    assert all("2 shots, 2 takes" in line for line in lines)
    clips = list(otio.adapters.read_from_file(str(out / "t.otio")).tracks[0])
    meta = clips[0].metadata["batchkling"]
    assert (clips[0].name, meta["job"], list(meta["tags"])) == ("open", "open#1", ["act1", "door"])
    assert clips[1].metadata["batchkling"]["job"] == "close"
    record = json.loads((run_dir / "exports.json").read_text(encoding="utf-8"))
    assert sorted(record) == ["animatic", "contact_sheet", "otio"]
    assert record["otio"]["path"] == str(out / "t.otio")
    assert record["animatic"]["written"].endswith("Z")
    assert listing(run_dir / "videos") == before


def test_exports_json_merges_what_was_there(uniform_board: Board, fresh: Any) -> None:
    """An export of the timeline alone keeps the contact sheet recorded before."""
    board = fresh(uniform_board)
    sheet, timeline = board.run_dir.parent / "s.png", board.run_dir.parent / "t.otio"
    assert export(board.manifest, "--run-dir", board.run_dir, "--contact-sheet", sheet).code == 0
    first = read_exports(board.run_dir)["contact_sheet"]
    assert export(board.manifest, "--run-dir", board.run_dir, "--otio", timeline).code == 0
    record = read_exports(board.run_dir)
    assert record["contact_sheet"] == first and record["otio"]["path"] == str(timeline)


def test_no_output_is_a_usage_error(uniform_board: Board) -> None:
    """Without --animatic, --otio or --contact-sheet: one line, exit 2, nothing read."""
    res = export(uniform_board.manifest)
    assert (res.code, res.out) == (2, "")
    assert len(res.err.splitlines()) == 1 and "--animatic" in res.err


def test_nothing_is_written_into_videos(uniform_board: Board, fresh: Any) -> None:
    """A target in videos/ is refused (exit 2) before anything is written."""
    board = fresh(uniform_board)
    before = listing(board.run_dir / "videos")
    res = export(board.manifest, "--run-dir", board.run_dir,
                 "--animatic", board.run_dir / "videos" / "cut.mp4")  # fmt: skip
    assert res.code == 2 and "videos/" in res.err and len(res.err.splitlines()) == 1
    assert listing(board.run_dir / "videos") == before
    assert not (board.run_dir / "exports.json").exists()


def test_an_unwritable_target_is_exit_5(uniform_board: Board, fresh: Any) -> None:
    """A target whose directory cannot be made: one line naming it, exit 5, no traceback."""
    board = fresh(uniform_board)
    blocker = board.run_dir.parent / "a-file"
    blocker.write_text("not a directory")
    res = export(board.manifest, "--run-dir", board.run_dir, "--otio", blocker / "t.otio")
    assert res.code == 5, res.err
    assert len(res.err.splitlines()) == 1 and str(blocker / "t.otio") in res.err
    assert "Traceback" not in res.err and res.out == ""
    assert not (board.run_dir / "exports.json").exists()


def test_a_corrupt_take_is_exit_1(uniform_board: Board, fresh: Any) -> None:
    """A take of the right size that FFmpeg cannot read: one line naming it, exit 1."""
    board = fresh(uniform_board)
    path = take_path(board.run_dir, "s02#1")
    data = bytearray(path.read_bytes())
    data[8:600] = bytes(592)  # the index (faststart: at the front) overwritten, size kept
    path.write_bytes(bytes(data))
    assert fold_ledger(board.run_dir / "ledger.jsonl").state.record("s02#1").bytes == len(data)
    target = board.run_dir.parent / "cut.mp4"
    res = export(board.manifest, "--run-dir", board.run_dir, "--animatic", target)
    assert res.code == 1, res.err
    assert len(res.err.splitlines()) == 1 and "s02#1" in res.err and "reject" in res.err
    assert not target.exists()
    assert not [n for n in os.listdir(target.parent) if n.startswith(".cut.mp4")]


class _Terminal(io.StringIO):
    """A stream that says it is a terminal, as stderr is in an interactive shell."""

    def isatty(self) -> bool:
        return True


def test_a_progress_bar_only_on_a_terminal(uniform_board: Board, fresh: Any) -> None:
    """On a terminal stderr gets tqdm's bar (carriage returns); stdout keeps its one line."""
    board = fresh(uniform_board)
    out, err = io.StringIO(), _Terminal()
    target = board.run_dir.parent / "cut.mp4"
    args = [
        "export",
        str(board.manifest),
        "--run-dir",
        str(board.run_dir),
        "--animatic",
        str(target),
    ]
    assert cli_main(args, out=out, err=err) == 0
    assert "animatic" in err.getvalue() and "\r" in err.getvalue()
    assert len(out.getvalue().splitlines()) == 1 and "\r" not in out.getvalue()


def test_a_manifest_problem_is_one_line_and_exit_2(tmp_path: Path) -> None:
    """A manifest that is not there, or not valid: one line, exit 2, nothing written."""
    res = export(tmp_path / "gone.yaml", "--otio", tmp_path / "t.otio")
    assert res.code == 2 and len(res.err.splitlines()) == 1 and "gone.yaml" in res.err
    bad = tmp_path / "bad.yaml"
    bad.write_text("version: 1\nshots: 3\n", encoding="utf-8")
    (tmp_path / "bad.run").mkdir()
    (tmp_path / "bad.run" / "ledger.jsonl").write_text("", encoding="utf-8")
    res = export(bad, "--otio", tmp_path / "t.otio")
    assert res.code == 2 and "bad.yaml" in res.err and "Traceback" not in res.err
    assert not (tmp_path / "t.otio").exists()
