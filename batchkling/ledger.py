"""The run directory's append-only JSONL ledger: lock, torn-tail repair, durable appends.

Durability rule: an event that records money (an intent about to be sent, a task
id received) is on disk (written and fsynced) before the caller takes its next
step. Concurrent appends share fsyncs (group commit) so that a hundred jobs
writing at once do not each wait for their own flush, and the fsync runs in a
worker thread so that the event loop never blocks on the disk.

A write either happens whole or stops the run: every ``os.write`` is checked, and
after any failure (a full disk, a file size limit, an I/O error) the file is cut
back to its last whole line and the ledger refuses every later write with a
``RunDirWriteError`` (exit 5), so that no create is sent whose intent is not on
disk and nothing is ever glued to a torn line in the middle of the file. Before
each write the ledger also checks that its path still names the file it opened,
with the size it last wrote: a ledger removed, replaced or cut by another program
stops the run the same way.

A torn last line found on open is cut off. When it is the start of an ``intent``,
the create it announced may have been sent: it is written back whole (marked
``recovered``) and followed by an ``in_doubt``, so that reconciliation settles it
like any other lost answer instead of the job being sent again on a guess.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import anyio
import anyio.to_thread

from batchkling._time import now_rfc3339
from batchkling.errors import LedgerError, LockedError, RunDirWriteError
from batchkling.state import RunState, apply, apply_at

__all__ = [
    "LEDGER_NAME",
    "LOCK_NAME",
    "Ledger",
    "LedgerFold",
    "LedgerRead",
    "fold_ledger",
    "read_ledger",
    "torn_intent",
]

LEDGER_NAME = "ledger.jsonl"
LOCK_NAME = ".lock"

# The price a torn intent is reserved at when its credits were torn off: the most
# any job can cost (15 s, pro). Reserving too much only delays; too little could
# let the budget pass.
_TORN_INTENT_CREDITS = 15 * 300


@dataclass(frozen=True)
class LedgerRead:
    """What reading a ledger found: its events, and a torn tail if there was one."""

    events: list[dict[str, Any]]
    torn_tail: bytes | None
    valid_size: int


@dataclass(frozen=True)
class LedgerFold:
    """A ledger folded as it is read (no list of events kept): the state and a torn tail."""

    state: RunState
    torn_tail: bytes | None
    valid_size: int


_CHUNK = 8 << 20
_scan = json.JSONDecoder().scan_once  # type: ignore[attr-defined]


def _damaged(path: Path, number: int) -> LedgerError:
    return LedgerError(
        f"{path}:{number}: not a JSON object; the ledger is damaged before its last line.",
        line=number,
        hint="Nothing was changed. Fix or remove that line by hand, then run again.",
    )


def _loads_or_none(raw: bytes) -> dict[str, Any] | None:
    try:
        obj = json.loads(raw)
    except ValueError:
        return None
    return obj if isinstance(obj, dict) else None


def _lines(path: Path) -> Iterator[tuple[int, dict[str, Any] | None, bytes]]:
    """(line number, parsed object or None, raw bytes) for each line, read in large chunks.

    The C scanner is called once per line, without the per-call overhead of
    ``json.loads``: a million-line ledger parses in about half the time. A last
    line without its newline is still a line: if its JSON is whole, it is kept.
    """
    try:
        fh = open(path, "rb")  # noqa: SIM115 - closed by the with below
    except FileNotFoundError:
        return
    except OSError as exc:
        raise LedgerError(f"cannot read the ledger {path}: {exc.strerror}.") from None
    number = 0
    rest = b""
    with fh:
        while True:
            chunk = fh.read(_CHUNK)
            data = rest + chunk
            cut = data.rfind(b"\n") + 1 if chunk else len(data)
            block, rest = data[:cut], data[cut:]
            text = block.decode("utf-8", errors="surrogateescape")
            pos, end = 0, len(text)
            while pos < end:
                number += 1
                nl = text.find("\n", pos)
                stop = end if nl < 0 else nl
                obj: Any
                try:
                    obj, after = _scan(text, pos)
                except (StopIteration, ValueError):
                    obj, after = None, -1
                raw = b""
                if after != stop or obj.__class__ is not dict:
                    # Slow path: spaces around the object, or a damaged line.
                    raw = text[pos:stop].encode("utf-8", errors="surrogateescape")
                    obj = _loads_or_none(raw)
                yield number, obj, raw
                pos = stop + 1
            if not chunk:
                return


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def _events(path: Path, torn: list[bytes]) -> Iterator[tuple[int, dict[str, Any]]]:
    """Each whole event with its line number; a torn last line goes into ``torn``."""
    pending: tuple[int, bytes] | None = None
    for number, obj, raw in _lines(path):
        if pending is not None:
            raise _damaged(path, pending[0])
        if obj is None:
            pending = (number, raw)
            continue
        yield number, obj
    if pending is not None:
        torn.append(pending[1])


def fold_ledger(
    path: Path, *, observe: Callable[[dict[str, Any], RunState], None] | None = None
) -> LedgerFold:
    """Read and fold a ledger in one pass, without a lock and without changing it.

    A last line that is not JSON (an interrupted write) comes back as ``torn_tail``;
    a bad line anywhere else is a ``LedgerError`` naming it. ``observe`` is given
    each event and the state once the event is folded into it, so that a reader
    needing more than the state (the report) keeps what it needs without holding
    every event.
    """
    st = RunState()
    torn: list[bytes] = []
    for number, obj in _events(path, torn):
        apply_at(st, obj, number)
        st.events += 1
        if observe is not None:
            observe(obj, st)
    tail = torn[0] if torn else None
    return LedgerFold(state=st, torn_tail=tail, valid_size=_size(path) - len(tail or b""))


def read_ledger(path: Path) -> LedgerRead:
    """Read a ledger's events without a lock and without changing it."""
    torn: list[bytes] = []
    events = [obj for _, obj in _events(path, torn)]
    tail = torn[0] if torn else None
    return LedgerRead(events=events, torn_tail=tail, valid_size=_size(path) - len(tail or b""))


_TORN_FIELDS = {
    "ts": re.compile(rb'^\{"ts":"([0-9T:.\-]+Z)"'),
    "event": re.compile(rb'"event":"([a-z_]+)"'),
    "job": re.compile(rb'"job":"((?:[^"\\]|\\.)+)"'),
    "credits": re.compile(rb'"credits":(\d+)[,}]'),
    "fingerprint": re.compile(rb'"fingerprint":"([0-9a-f]+)"'),
}


def torn_intent(tail: bytes) -> dict[str, Any] | None:
    """The fields of an ``intent`` recovered from a torn last line, or None if it is not one.

    The job name and time must be whole; credits and fingerprint are taken when
    whole (a number counts as whole only when a delimiter follows it).
    """
    found: dict[str, Any] = {}
    for name, pattern in _TORN_FIELDS.items():
        m = pattern.search(tail)
        if m is not None:
            found[name] = m.group(1).decode("utf-8", "replace")
    if found.get("event") != "intent" or "job" not in found or "ts" not in found:
        return None
    try:
        found["job"] = json.loads(f'"{found["job"]}"')
    except ValueError:
        return None
    found["credits"] = int(found.get("credits", _TORN_INTENT_CREDITS))
    return found


def _write_error(path: Path, exc: OSError | None, what: str) -> RunDirWriteError:
    if exc is None:
        reason = "the disk took only part of the line"
    elif exc.errno == errno.ENOSPC:
        reason = "the disk is full"
    elif exc.errno == errno.EFBIG:
        reason = "the file size limit was reached"
    elif exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        reason = "the run directory is read-only"
    else:
        reason = exc.strerror or str(exc)
    return RunDirWriteError(
        f"the run directory {path.parent} could not be written ({what} {path.name}: "
        f"{reason}); nothing more was created and the ledger holds only whole lines.",
        hint="Free space or fix the disk, then run the same command again to resume.",
    )


class Ledger:
    """An open ledger, holding the run directory's exclusive lock until ``close``."""

    def __init__(
        self,
        run_dir: Path,
        *,
        now: Callable[[], str] = now_rfc3339,
    ) -> None:
        self.run_dir = run_dir
        self.path = run_dir / LEDGER_NAME
        self._now = now
        self._lock_fd = -1
        self._fd = -1
        self._written = 0
        self._synced = 0
        self._syncing: anyio.Event | None = None
        self._size = 0  # bytes of whole lines in the file, as this ledger wrote them
        self._ident: tuple[int, int] = (0, 0)  # (device, inode) of the file opened
        self._broken: RunDirWriteError | None = None
        self.state = RunState()
        self.warnings: list[str] = []

    @property
    def broken(self) -> RunDirWriteError | None:
        """Why this ledger refuses every write from now on, or None while it can be written."""
        return self._broken

    # -- opening -----------------------------------------------------------

    @classmethod
    def open(cls, run_dir: Path, *, now: Callable[[], str] = now_rfc3339) -> Ledger:
        """Lock the run directory, read and fold the ledger, cut a torn last line off."""
        ledger = cls(run_dir, now=now)
        try:
            run_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise LedgerError(
                f"cannot create the run directory {run_dir}: {exc.strerror}."
            ) from None
        try:
            ledger._lock()
            try:
                ledger._load()
            except BaseException:
                ledger.close()
                raise
        except OSError as exc:
            # A read-only or full run directory, before anything was sent.
            raise _write_error(ledger.path, exc, "opening") from None
        return ledger

    def _lock(self) -> None:
        lock_path = self.run_dir / LOCK_NAME
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 32).decode("ascii", "replace").strip()
            os.close(fd)
            pid = int(holder) if holder.isdigit() else None
            who = f"pid {pid}" if pid is not None else "another process"
            raise LockedError(
                f"the run directory {self.run_dir} is in use by another batchkling run ({who}).",
                pid=pid,
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._lock_fd = fd

    def _load(self) -> None:
        read = fold_ledger(self.path)
        self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        self.state = read.state
        info = os.fstat(self._fd)
        self._ident = (info.st_dev, info.st_ino)
        self._size = info.st_size
        if read.torn_tail is not None:
            self.warnings.append(
                f"{self.path}: the last line was torn by an interrupted write "
                f"({len(read.torn_tail)} bytes); it was cut off."
            )
            os.ftruncate(self._fd, read.valid_size)
            os.fsync(self._fd)
            self._size = read.valid_size
        if self._size and not self._ends_with_newline():
            self._write_line(b"\n")
        if read.torn_tail is not None:
            self._recover_intent(read.torn_tail)

    def _ends_with_newline(self) -> bool:
        with open(self.path, "rb") as fh:
            fh.seek(-1, os.SEEK_END)
            return fh.read(1) == b"\n"

    def _recover_intent(self, tail: bytes) -> None:
        found = torn_intent(tail)
        if found is None:
            return
        job = found.pop("job")
        self.warnings.append(
            f"{self.path}: the torn line was the intent of {job}; its create may have been "
            "sent, so the job is in doubt and will be settled against the credits usage."
        )
        # The recovered intent keeps its original time: reconciliation's window opens there.
        ts = found.pop("ts")
        found.pop("event")
        found.setdefault("fingerprint", "")
        self.write_at(ts, "intent", job, **found, recovered=True)
        self.write(
            "in_doubt",
            job,
            error="the intent was torn by an interrupted write; the create may have been sent",
        )
        self.sync()

    # -- appending ---------------------------------------------------------

    def write(self, event: str, job: str | None = None, **fields: Any) -> int:
        """Write one event and fold it in, without waiting for the disk; return its sequence.

        The fold sees the event at once (so a budget check right after counts it);
        ``flush(seq)`` makes it durable. Raises ``RunDirWriteError`` when the line
        could not be written whole; the fold then never sees it.
        """
        return self.write_at(self._now(), event, job, **fields)

    def write_at(self, ts: str, event: str, job: str | None = None, **fields: Any) -> int:
        """``write`` with the event's time given (a recovered event keeps its own)."""
        if self._fd < 0:
            raise LedgerError(f"the ledger {self.path} is closed.")
        ev: dict[str, Any] = {"ts": ts, "event": event, "job": job}
        ev.update(fields)
        line = json.dumps(ev, ensure_ascii=False, separators=(",", ":")) + "\n"
        self._write_line(line.encode("utf-8"))
        self._written += 1
        apply(self.state, ev)
        return self._written

    def _write_line(self, data: bytes) -> None:
        if self._broken is not None:
            raise self._broken
        self._check_same_file()
        # One write of one whole line to an O_APPEND descriptor; a short write or
        # an error is cut back so that the file only ever holds whole lines.
        written = 0
        while written < len(data):
            # A short write is followed by one more: its error says why (ENOSPC, EFBIG).
            try:
                n = os.write(self._fd, data[written:])
            except OSError as exc:
                self._fail(exc, "writing")
            if n == 0:
                self._fail(None, "writing")
            written += n
        self._size += written

    def _check_same_file(self) -> None:
        try:
            info = os.stat(self.path)
        except OSError:
            changed = "removed"
        else:
            if (info.st_dev, info.st_ino) != self._ident:
                changed = "replaced by another file"
            elif info.st_size != self._size:
                changed = f"changed in size ({self._size} bytes written, {info.st_size} found)"
            else:
                return
        self._broken = RunDirWriteError(
            f"the ledger {self.path} was {changed} by another program while this run held "
            "it; nothing more was created.",
            hint="Restore the run directory, then run the same command again to resume.",
        )
        raise self._broken

    def _fail(self, exc: OSError | None, what: str) -> NoReturn:
        error = _write_error(self.path, exc, what)
        self._broken = error
        # If even this fails, the next open finds a torn tail and cuts it off.
        with contextlib.suppress(OSError):
            os.ftruncate(self._fd, self._size)
        raise error from None

    def sync(self) -> None:
        """fsync now, in this thread (outside the event loop's hot path)."""
        if self._broken is not None:
            raise self._broken
        try:
            os.fsync(self._fd)
        except OSError as exc:
            self._fail(exc, "syncing")
        self._synced = self._written

    def append_sync(self, event: str, job: str | None = None, **fields: Any) -> None:
        """Append one event and fsync before returning (outside the event loop's hot path)."""
        self.write(event, job, **fields)
        self.sync()

    async def flush(self, seq: int) -> None:
        """Return once every event up to ``seq`` is fsynced; concurrent callers share fsyncs."""
        while self._synced < seq:
            if self._broken is not None:
                raise self._broken
            if self._syncing is None:
                done = self._syncing = anyio.Event()
                upto = self._written
                try:
                    await anyio.to_thread.run_sync(os.fsync, self._fd)
                    self._synced = max(self._synced, upto)
                except OSError as exc:
                    self._fail(exc, "syncing")
                finally:
                    self._syncing = None
                    done.set()
            else:
                await self._syncing.wait()

    async def append(self, event: str, job: str | None = None, **fields: Any) -> None:
        """Append one event and return once it is on disk."""
        await self.flush(self.write(event, job, **fields))

    def close(self) -> None:
        """Flush, close the ledger and release the lock."""
        if self._fd >= 0:
            try:
                if self._broken is None:
                    os.fsync(self._fd)
            except OSError:
                pass  # every money event was fsynced when written; the rest can be redone
            finally:
                os.close(self._fd)
                self._fd = -1
        if self._lock_fd >= 0:
            os.close(self._lock_fd)  # closing the descriptor releases the flock
            self._lock_fd = -1

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
