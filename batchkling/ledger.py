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
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread

from batchkling.errors import LedgerError, LockedError
from batchkling.state import RunState, apply, apply_at

__all__ = [
    "LEDGER_NAME",
    "LOCK_NAME",
    "Ledger",
    "LedgerFold",
    "LedgerRead",
    "fold_ledger",
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


def fold_ledger(path: Path) -> LedgerFold:
    """Read and fold a ledger in one pass, without a lock and without changing it.

    A last line that is not JSON (an interrupted write) comes back as ``torn_tail``;
    a bad line anywhere else is a ``LedgerError`` naming it.
    """
    st = RunState()
    torn: list[bytes] = []
    for number, obj in _events(path, torn):
        apply_at(st, obj, number)
        st.events += 1
    tail = torn[0] if torn else None
    return LedgerFold(state=st, torn_tail=tail, valid_size=_size(path) - len(tail or b""))


def read_ledger(path: Path) -> LedgerRead:
    """Read a ledger's events without a lock and without changing it."""
    torn: list[bytes] = []
    events = [obj for _, obj in _events(path, torn)]
    tail = torn[0] if torn else None
    return LedgerRead(events=events, torn_tail=tail, valid_size=_size(path) - len(tail or b""))


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
        read = fold_ledger(self.path)
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
        self.state = read.state

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
