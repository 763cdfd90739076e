"""Which takes go into the cut: picks, rejects, the three modes, and shots with nothing."""

from __future__ import annotations

from typing import Any

from batchkling.export.takes import Cut, cut_of
from batchkling.ledger import fold_ledger
from batchkling.manifest.load import load_manifest
from batchkling.review.inbox import absorb_if_free, drop, marks_with_inbox
from batchkling.review.marks import TakesMode
from tests.export.conftest import Board


def _cut(board: Board, mode: TakesMode) -> Cut:
    st = fold_ledger(board.run_dir / "ledger.jsonl").state
    manifest = load_manifest(str(board.manifest))
    return cut_of(manifest, st, marks_with_inbox(board.run_dir, st.marks), board.run_dir, mode)


def _keys(cut: Cut) -> list[list[str]]:
    return [[t.key for t in s.takes] for s in cut.shots]


def test_each_mode_chooses_as_the_review_says(uniform_board: Board, fresh: Any) -> None:
    """s02#2 picked, s01#1 rejected: picked, first and all choose accordingly, in order."""
    board = fresh(uniform_board)
    drop(board.run_dir, "picked", "s02#2", shot="s02")
    drop(board.run_dir, "rejected", "s01#1")
    assert absorb_if_free(board.run_dir)
    assert _keys(_cut(board, TakesMode.PICKED)) == [["s01#2"], ["s02#2"], ["s03#1"]]
    assert _keys(_cut(board, TakesMode.FIRST)) == [["s01#2"], ["s02#1"], ["s03#1"]]
    assert _keys(_cut(board, TakesMode.ALL)) == [["s01#2"], ["s02#1", "s02#2"], ["s03#1", "s03#2"]]


def test_a_mark_still_in_the_inbox_counts(uniform_board: Board, fresh: Any) -> None:
    """A pick not yet moved into the ledger chooses the take all the same."""
    board = fresh(uniform_board)
    drop(board.run_dir, "picked", "s03#2", shot="s03")
    assert _keys(_cut(board, TakesMode.PICKED))[2] == ["s03#2"]


def test_a_shot_with_nothing_to_show_says_why(failed_board: Board, fresh: Any) -> None:
    """Failed tasks, every take rejected, a video gone or cut short: no take, and the reason."""
    board = fresh(failed_board)
    drop(board.run_dir, "rejected", "s02#1")
    drop(board.run_dir, "rejected", "s02#2")
    st = fold_ledger(board.run_dir / "ledger.jsonl").state
    for job in ("s03#1", "s03#2"):
        output = st.record(job).output
        assert output is not None
        full = board.run_dir / output
        full.write_bytes(full.read_bytes()[:-10])  # cut short: no longer intact
    cut = _cut(board, TakesMode.PICKED)
    assert [(s.shot.id, s.missing) for s in cut.shots] == [
        ("s01", None),
        ("s02", "rejected"),
        ("s03", "video missing"),
        ("s04", "failed"),
    ]
    assert [t.path.is_absolute() for t in cut.takes] == [True]
    assert cut.shots[3].job_keys == ("s04#1", "s04#2")
