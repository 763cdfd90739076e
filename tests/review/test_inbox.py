"""The review inbox: marks dropped as files, moved into the ledger by the lock's holder."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from batchkling.ledger import LEDGER_NAME, Ledger, fold_ledger
from batchkling.review.inbox import (
    INBOX_NAME,
    absorb_if_free,
    absorb_live,
    drop,
    marks_with_inbox,
    pending,
)

SCHEMA = json.loads((Path(__file__).parents[2] / "schemas" / "ledger.schema.json").read_text())


def _run_dir(tmp_path: Path) -> Path:
    with Ledger.open(tmp_path) as led:
        led.append_sync("intent", "s01#1", credits=1000, fingerprint="f" * 64)
    return tmp_path


def _marks_in_ledger(run_dir: Path) -> list[dict[str, Any]]:
    lines = [json.loads(x) for x in (run_dir / LEDGER_NAME).read_text().splitlines()]
    validator = jsonschema.Draft202012Validator(SCHEMA)
    for line in lines:
        validator.validate(line)
    return [e for e in lines if e["event"] in ("picked", "rejected", "noted")]


def test_drop_then_absorb_moves_the_events_into_the_ledger(tmp_path: Path) -> None:
    """Each dropped event becomes one ledger line, as dropped, and its file is removed."""
    run_dir = _run_dir(tmp_path)
    picked = drop(run_dir, "picked", "s01#1", shot="s01")
    noted = drop(run_dir, "noted", "s01#2", note="blurred hands")
    rejected = drop(run_dir, "rejected", "s01#2", on=True)
    assert [ev for _path, ev in pending(run_dir)] == [picked, noted, rejected]
    assert absorb_if_free(run_dir) is True
    assert _marks_in_ledger(run_dir) == [picked, noted, rejected]
    assert os.listdir(run_dir / INBOX_NAME) == []
    marks = fold_ledger(run_dir / LEDGER_NAME).state.marks
    assert marks.picks == {"s01": "s01#1"} and marks.rejected == {"s01#2"}
    assert absorb_if_free(run_dir) is False  # nothing waits any more


def test_the_ledger_is_fsynced_before_any_inbox_file_is_removed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A file is the mark's only other copy: it goes only once the ledger is on disk."""
    run_dir = _run_dir(tmp_path)
    drop(run_dir, "picked", "s01#1")
    drop(run_dir, "rejected", "s01#2")
    ledger_inode = os.stat(run_dir / LEDGER_NAME).st_ino
    seen: list[str] = []
    real_fsync, real_unlink = os.fsync, os.unlink

    def fsync(fd: int) -> None:
        if os.fstat(fd).st_ino == ledger_inode:
            seen.append("fsync ledger")
        real_fsync(fd)

    def unlink(path: Any, *args: Any, **kwargs: Any) -> None:
        if INBOX_NAME in str(path):
            seen.append("unlink")
        real_unlink(path, *args, **kwargs)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "unlink", unlink)
    assert absorb_if_free(run_dir) is True
    assert "fsync ledger" in seen and seen.count("unlink") == 2
    assert seen.index("fsync ledger") < seen.index("unlink")


def test_a_move_cut_short_before_the_unlink_does_not_apply_twice(tmp_path: Path) -> None:
    """An inbox file left behind after its event reached the ledger counts once, read or moved."""
    run_dir = _run_dir(tmp_path)
    drop(run_dir, "picked", "s01#1")
    [(path, _ev)] = pending(run_dir)
    kept = tmp_path / "kept.json"
    shutil.copy(path, kept)
    assert absorb_if_free(run_dir)
    drop(run_dir, "picked", "s01#2")
    assert absorb_if_free(run_dir)
    shutil.copy(kept, path)  # as if the first move had crashed before removing its file
    ledger = fold_ledger(run_dir / LEDGER_NAME).state.marks
    assert marks_with_inbox(run_dir, ledger).picks == {"s01": "s01#2"}
    assert absorb_if_free(run_dir)
    assert [e["job"] for e in _marks_in_ledger(run_dir)] == ["s01#1", "s01#2"]
    assert pending(run_dir) == []
    assert fold_ledger(run_dir / LEDGER_NAME).state.marks.picks == {"s01": "s01#2"}


def test_a_held_lock_leaves_the_marks_waiting_and_readers_see_them(tmp_path: Path) -> None:
    """While a run holds the lock nothing is moved, yet ``marks_with_inbox`` shows the mark."""
    run_dir = _run_dir(tmp_path)
    with Ledger.open(run_dir):  # as a live run holds it
        drop(run_dir, "picked", "s01#1")
        drop(run_dir, "noted", "s01#1", note="the one")
        assert absorb_if_free(run_dir) is False
        ledger = fold_ledger(run_dir / LEDGER_NAME).state.marks
        assert ledger.picks == {}
        shown = marks_with_inbox(run_dir, ledger)
        assert shown.of("s01#1") == {"picked": True, "rejected": False, "note": "the one"}
        assert ledger.picks == {}  # the ledger's marks are not changed by reading
    assert len(pending(run_dir)) == 2
    assert absorb_if_free(run_dir) is True
    assert [e["event"] for e in _marks_in_ledger(run_dir)] == ["picked", "noted"]


@pytest.mark.anyio
async def test_a_live_run_moves_the_inbox_into_its_open_ledger(tmp_path: Path) -> None:
    """``absorb_live`` writes through the open ledger, folds the marks in and removes files."""
    run_dir = _run_dir(tmp_path)
    with Ledger.open(run_dir) as led:
        drop(run_dir, "rejected", "s01#1")
        assert await absorb_live(led) == 1
        assert led.state.marks.rejected == {"s01#1"}
        assert pending(run_dir) == []
        assert await absorb_live(led) == 0
    assert [e["event"] for e in _marks_in_ledger(run_dir)] == ["rejected"]


def test_only_whole_well_formed_files_are_pending(tmp_path: Path) -> None:
    """Files being written, unreadable or malformed are never moved into the ledger."""
    run_dir = _run_dir(tmp_path)
    good = drop(run_dir, "noted", "s01", note="ok")
    inbox = run_dir / INBOX_NAME
    (inbox / ".00000000000000000001-abcd.tmp").write_text("{")
    (inbox / "00000000000000000002-abcd.json").write_text("{not json")
    bad = {"ts": good["ts"], "event": "noted", "job": "s01", "mark": "x", "note": 3}
    (inbox / "00000000000000000003-abcd.json").write_text(json.dumps(bad))
    assert [ev for _path, ev in pending(run_dir)] == [good]
    assert absorb_if_free(run_dir)
    assert _marks_in_ledger(run_dir) == [good]


def test_drop_refuses_an_event_the_ledger_cannot_hold(tmp_path: Path) -> None:
    """Not a review event, a note that is not text, or a field drop gives itself: ValueError."""
    run_dir = _run_dir(tmp_path)
    with pytest.raises(ValueError):
        drop(run_dir, "created", "s01")
    with pytest.raises(ValueError):
        drop(run_dir, "noted", "s01", note=None)
    with pytest.raises(ValueError):
        drop(run_dir, "picked", "s01", mark="mine")
    assert pending(run_dir) == []


def test_drop_into_a_run_dir_that_cannot_be_written_is_an_os_error(tmp_path: Path) -> None:
    """Where the inbox cannot be made, ``drop`` raises ``OSError`` and leaves nothing."""
    run_dir = _run_dir(tmp_path)
    (run_dir / INBOX_NAME).write_text("a file where the inbox goes")
    with pytest.raises(OSError):
        drop(run_dir, "picked", "s01")
    assert pending(run_dir) == []
