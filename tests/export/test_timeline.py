"""The OpenTimelineIO timeline, read back with opentimelineio: clip by clip, and the gaps."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import opentimelineio as otio
import pytest

from batchkling.export.probe import probe
from batchkling.ledger import fold_ledger
from batchkling.review.inbox import drop
from tests.export.conftest import Board
from tests.export.export_helpers import export, listing, take_path


def _read(path: Path) -> Any:
    return otio.adapters.read_from_file(str(path))


def test_each_chosen_take_is_a_clip_and_a_failed_shot_a_gap(
    failed_board: Board, fresh: Any
) -> None:
    """Names, absolute paths, the file's real length and rate, metadata; a 3 s gap for s04."""
    board = fresh(failed_board)
    drop(board.run_dir, "picked", "s01#2", shot="s01")  # still in the inbox: it counts
    before = listing(board.run_dir / "videos")
    out = board.run_dir.parent / "cut.otio"
    res = export(board.manifest, "--run-dir", board.run_dir, "--otio", out)
    assert res.code == 0, res.err
    assert res.out == f"otio: {out}: 4 shots, 3 takes, 1 gap, 12.00 s\n"
    timeline = _read(out)
    (track,) = timeline.tracks
    items = list(track)
    assert [type(i).__name__ for i in items] == ["Clip", "Clip", "Clip", "Gap"]
    assert [i.name for i in items] == ["s01", "s02", "s03", "s04"]
    st = fold_ledger(board.run_dir / "ledger.jsonl").state
    for item, job in zip(items[:3], ("s01#2", "s02#1", "s03#1"), strict=True):
        path = take_path(board.run_dir, job)
        assert item.media_reference.target_url == str(path) and Path(path).is_absolute()
        found = probe(path, job)
        available = item.media_reference.available_range
        assert available.duration.rate == float(found.format.rate) == 8
        assert available.duration.to_seconds() == pytest.approx(found.duration)
        assert item.duration().to_seconds() == pytest.approx(found.duration)
        meta = item.metadata["batchkling"]
        rec = st.record(job)
        assert meta["job"] == job and meta["take"] == int(job[-1])
        assert meta["prompt"] == f"shot {int(job[2])} turns slowly"
        assert meta["task_id"] == rec.task_id and meta["credits"] == rec.credits > 0
        assert list(meta["tags"]) == [] and meta["state"] == "done"
    gap = items[3]
    assert gap.duration().to_seconds() == pytest.approx(3)
    assert gap.metadata["batchkling"]["state"] == "failed"
    assert list(gap.metadata["batchkling"]["jobs"]) == ["s04#1", "s04#2"]
    assert timeline.duration().to_seconds() == pytest.approx(12)
    assert listing(board.run_dir / "videos") == before


def test_all_takes_are_clips_in_take_order(uniform_board: Board, fresh: Any) -> None:
    """--takes all: six clips, each shot's takes together; the take key in the metadata."""
    board = fresh(uniform_board)
    out = board.run_dir.parent / "all.otio"
    res = export(board.manifest, "--run-dir", board.run_dir, "--otio", out, "--takes", "all")
    assert res.code == 0, res.err
    items = list(_read(out).tracks[0])
    assert [i.name for i in items] == ["s01", "s01", "s02", "s02", "s03", "s03"]
    assert [i.metadata["batchkling"]["job"] for i in items] == [
        "s01#1", "s01#2", "s02#1", "s02#2", "s03#1", "s03#2"
    ]  # fmt: skip
