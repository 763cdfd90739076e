"""The review inbox: how picks, rejects and notes reach the ledger while a run holds it.

Only the holder of a run directory's lock writes its ledger (``batchkling.ledger``
stops a run whose ledger grew under it). So a mark made anywhere, from the
review page or ``batchkling pick``, is first dropped into ``review-inbox/`` as
one small file, written whole and renamed into place, and then moved into the
ledger by whoever holds the lock: the command itself when no run does, or the
live run within a second. Readers (``status``, ``report``, ``review``) see the
ledger's marks plus those still in the inbox, so a mark shows at once.

A file is removed only after its event is fsynced in the ledger; one moved twice
(a crash in between) counts once, by its ``mark`` id.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread

from batchkling._time import now_rfc3339
from batchkling._util import fsync_path
from batchkling.errors import LockedError
from batchkling.review.marks import Marks, well_formed

__all__ = [
    "INBOX_NAME",
    "absorb",
    "absorb_if_free",
    "absorb_live",
    "drop",
    "mark_fields",
    "marks_with_inbox",
    "pending",
]

INBOX_NAME = "review-inbox"
_SUFFIX = ".json"
# What ``drop`` writes itself; the caller gives the rest.
_RESERVED = frozenset({"ts", "event", "job", "mark"})


def drop(run_dir: Path, event: str, job: str, **fields: Any) -> dict[str, Any]:
    """Drop one review event into the inbox of ``run_dir``, durably; return the event.

    ``fields`` are the event's own (``on``, ``shot``, ``note``); its time, kind,
    job and mark id are given here. Raises ``ValueError`` for an event the fold
    would not apply, ``OSError`` when the run directory cannot be written.
    """
    taken = _RESERVED.intersection(fields)
    if taken:
        raise ValueError(f"a review event's {', '.join(sorted(taken))} is given by drop")
    # Names sort in the order the marks were made.
    mark = f"{time.time_ns():020d}-{secrets.token_hex(4)}"
    ev: dict[str, Any] = {"ts": now_rfc3339(), "event": event, "job": job, "mark": mark}
    ev.update(fields)
    if not well_formed(ev):
        raise ValueError(f"not a review event the ledger can hold: {ev!r}")
    inbox = run_dir / INBOX_NAME
    if not inbox.is_dir():
        inbox.mkdir()
        fsync_path(run_dir)  # the inbox itself must survive a crash, not only its files
    tmp = inbox / f".{mark}.tmp"
    try:
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(json.dumps(ev, ensure_ascii=False, separators=(",", ":")))
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, inbox / f"{mark}{_SUFFIX}")
    except OSError:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    fsync_path(inbox)
    return ev


def pending(run_dir: Path) -> list[tuple[Path, dict[str, Any]]]:
    """The review events waiting in the inbox, oldest first (unreadable files skipped)."""
    inbox = run_dir / INBOX_NAME
    try:
        names = sorted(n for n in os.listdir(inbox) if n.endswith(_SUFFIX) and n[0] != ".")
    except OSError:
        return []
    out: list[tuple[Path, dict[str, Any]]] = []
    for name in names:
        path = inbox / name
        try:
            ev = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if _valid(ev):
            out.append((path, ev))
    return out


def _valid(ev: Any) -> bool:
    """Whether a file of the inbox holds an event fit for the ledger (others stay out)."""
    return (
        isinstance(ev, dict)
        and well_formed(ev)
        and isinstance(ev.get("ts"), str)
        and isinstance(ev.get("mark"), str)
    )


def absorb(ledger: Any) -> int:
    """Move the inbox of ``ledger``'s run directory into it (fsynced); return how many.

    ``ledger`` is an open ``batchkling.ledger.Ledger`` (this process holds the lock).
    Blocking: call from a worker thread, or where the loop may wait.
    """
    waiting = pending(ledger.run_dir)
    if not waiting:
        return 0
    moved = 0
    for _path, ev in waiting:
        # Already in the ledger: a file whose move was cut short before its unlink.
        if ev["mark"] in ledger.state.marks.seen:
            continue
        fields = {k: v for k, v in ev.items() if k not in ("ts", "event", "job")}
        ledger.write_at(ev["ts"], ev["event"], ev["job"], **fields)
        moved += 1
    # Even with nothing new: what a move cut short wrote may not be on disk yet, and
    # the files are its only other copy.
    ledger.sync()
    for path, _ev in waiting:
        with contextlib.suppress(OSError):
            path.unlink()
    return moved


async def absorb_live(ledger: Any) -> int:
    """``absorb`` for a live run: the disk work in a worker thread, the writes on the loop.

    Raises ``RunDirWriteError`` when the ledger cannot be written (the run stops).
    """
    waiting = await anyio.to_thread.run_sync(pending, ledger.run_dir)
    if not waiting:
        return 0
    seq = moved = 0
    for _path, ev in waiting:
        if ev["mark"] in ledger.state.marks.seen:
            continue
        fields = {k: v for k, v in ev.items() if k not in ("ts", "event", "job")}
        seq = ledger.write_at(ev["ts"], ev["event"], ev["job"], **fields)
        moved += 1
    if moved:
        await ledger.flush(seq)

    def unlink() -> None:
        for path, _ev in waiting:
            with contextlib.suppress(OSError):
                path.unlink()

    await anyio.to_thread.run_sync(unlink)
    return moved


def absorb_if_free(run_dir: Path) -> bool:
    """Move the inbox into the ledger if no run holds it now; True when it did."""
    from batchkling.ledger import LEDGER_NAME, Ledger

    if not (run_dir / LEDGER_NAME).exists() or not pending(run_dir):
        return False
    try:
        ledger = Ledger.open(run_dir)
    except LockedError:
        return False  # the live run moves it within a second
    try:
        absorb(ledger)
    finally:
        ledger.close()
    return True


def marks_with_inbox(run_dir: Path, marks: Marks) -> Marks:
    """``marks`` (from the ledger) with the marks still in the inbox applied."""
    waiting = pending(run_dir)
    if not waiting:
        return marks
    out = marks.copy()
    for _path, ev in waiting:
        out.apply(ev)
    return out


def mark_fields(ev: Mapping[str, Any]) -> dict[str, Any]:
    """The fields of a review event that ``status --json`` and reports show."""
    return {k: ev[k] for k in ("event", "job", "ts", "on", "note") if k in ev}
