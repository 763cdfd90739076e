"""The run directory's append-only JSONL ledger: lock, torn-tail repair, durable appends.

Durability rule: an event that records money (an intent about to be sent, a task
id received) is on disk (written and fsynced) before the caller takes its next
step. Concurrent appends share fsyncs (group commit) so that a hundred jobs
writing at once do not each wait for their own flush, and the fsync runs in a
worker thread so that the event loop never blocks on the disk.
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread

from batchkling.errors import LedgerError, LockedError
from batchkling.state import RunState, apply, fold

__all__ = [
    "LEDGER_NAME",
    "LOCK_NAME",
    "Ledger",
    "LedgerRead",
    "read_ledger",
    "utc_now",
]

LEDGER_NAME = "ledger.jsonl"
LOCK_NAME = ".lock"


def utc_now() -> str:
    """The current time as UTC RFC 3339 with microseconds, e.g. ``2026-11-24T03:20:57.123456Z``."""
    return datetime.now(timezone.utc).isoformat(timespec="microseconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class LedgerRead:
    """What reading a ledger found: its events, and a torn tail if there was one."""

    events: list[dict[str, Any]]
    torn_tail: bytes | None
    valid_size: int


def _parse(data: bytes, path: Path) -> LedgerRead:
    events: list[dict[str, Any]] = []
    lines = data.split(b"\n")
    # A file that ends with "\n" splits into a last empty piece; anything else
    # after the last newline is a line the writer never finished.
    tail = lines.pop()
    loads = json.loads
    for number, raw in enumerate(lines, start=1):
        try:
            ev = loads(raw)
        except ValueError:
            ev = None
        if not isinstance(ev, dict):
            raise LedgerError(
                f"{path}:{number}: not a JSON object; the ledger is damaged before its last line.",
                line=number,
                hint="Nothing was changed. Fix or remove that line by hand, then run again.",
            )
        events.append(ev)
    valid_size = len(data) - len(tail)
    torn: bytes | None = None
    if tail:
        try:
            ev = loads(tail)
        except ValueError:
            ev = None
        if isinstance(ev, dict):
            # The whole object made it to disk, only its newline did not.
            events.append(ev)
            valid_size = len(data)
        else:
            torn = tail
    return LedgerRead(events=events, torn_tail=torn, valid_size=valid_size)


def read_ledger(path: Path) -> LedgerRead:
    """Read a ledger without a lock and without changing it (for ``status`` and reports)."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return LedgerRead(events=[], torn_tail=None, valid_size=0)
    except OSError as exc:
        raise LedgerError(f"cannot read the ledger {path}: {exc.strerror}.") from None
    return _parse(data, path)


class Ledger:
    """An open ledger, holding the run directory's exclusive lock until ``close``."""

    def __init__(
        self,
        run_dir: Path,
        *,
        now: Callable[[], str] = utc_now,
    ) -> None:
        self.run_dir = run_dir
        self.path = run_dir / LEDGER_NAME
        self._now = now
        self._lock_fd = -1
        self._fd = -1
        self._written = 0
        self._synced = 0
        self._syncing: anyio.Event | None = None
        self.state = RunState()
        self.warnings: list[str] = []

    # -- opening -----------------------------------------------------------

    @classmethod
    def open(cls, run_dir: Path, *, now: Callable[[], str] = utc_now) -> Ledger:
        """Lock the run directory, read and fold the ledger, cut a torn last line off."""
        ledger = cls(run_dir, now=now)
        try:
            run_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise LedgerError(
                f"cannot create the run directory {run_dir}: {exc.strerror}."
            ) from None
        ledger._lock()
        try:
            ledger._load()
        except BaseException:
            ledger.close()
            raise
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
        read = read_ledger(self.path)
        self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        if read.torn_tail is not None:
            self.warnings.append(
                f"{self.path}: the last line was torn by an interrupted write "
                f"({len(read.torn_tail)} bytes); it was cut off."
            )
            os.ftruncate(self._fd, read.valid_size)
            os.fsync(self._fd)
        size = os.fstat(self._fd).st_size
        if size and not self._ends_with_newline():
            os.write(self._fd, b"\n")
        self.state = fold(read.events)

    def _ends_with_newline(self) -> bool:
        with open(self.path, "rb") as fh:
            fh.seek(-1, os.SEEK_END)
            return fh.read(1) == b"\n"

    @property
    def is_new(self) -> bool:
        return self.state.header is None and self.state.events == 0

    # -- appending ---------------------------------------------------------

    def write(self, event: str, job: str | None = None, **fields: Any) -> int:
        """Write one event and fold it in, without waiting for the disk; return its sequence.

        The fold sees the event at once (so a budget check right after counts it);
        ``flush(seq)`` makes it durable.
        """
        if self._fd < 0:
            raise LedgerError(f"the ledger {self.path} is closed.")
        ev: dict[str, Any] = {"ts": self._now(), "event": event, "job": job}
        ev.update(fields)
        line = json.dumps(ev, ensure_ascii=False, separators=(",", ":")) + "\n"
        # One write of one whole line to an O_APPEND descriptor: a crash leaves at
        # worst a torn last line, which the next open cuts off.
        os.write(self._fd, line.encode("utf-8"))
        self._written += 1
        apply(self.state, ev)
        return self._written

    def append_sync(self, event: str, job: str | None = None, **fields: Any) -> None:
        """Append one event and fsync before returning (outside the event loop's hot path)."""
        self.write(event, job, **fields)
        os.fsync(self._fd)
        self._synced = self._written

    async def flush(self, seq: int) -> None:
        """Return once every event up to ``seq`` is fsynced; concurrent callers share fsyncs."""
        while self._synced < seq:
            if self._syncing is None:
                done = self._syncing = anyio.Event()
                upto = self._written
                try:
                    await anyio.to_thread.run_sync(os.fsync, self._fd)
                    self._synced = max(self._synced, upto)
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
                os.fsync(self._fd)
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
