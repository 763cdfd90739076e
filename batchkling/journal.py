"""The account journal: every create of an account on this machine, across run directories.

A run directory's ledger knows its own creates only. Two run directories on one
account (a mistyped ``--run-dir``, two manifests rendered at once) could each pay
for the same request, or adopt each other's lost creates. The journal, one JSONL
file per account (``<state dir>/accounts/<id>.jsonl``, where ``id`` is the first
16 hex digits of sha256 of the API base and key, so the key itself is never
written), holds every intent and every created task id with its run directory,
job, request fingerprint and price. It gives:

- ``foreign_tasks``: tasks another run directory created, which reconciliation
  here must never adopt;
- ``elsewhere``: requests already running or done in another run directory, which
  a run refuses to send again unless told to;
- ``price_lock``: the per-price serialisation of creates, held across processes
  with a byte-range lock on the journal's lock file, so that the windows of two
  run directories' creates of one price never overlap.

Appends are one ``os.write`` of one whole line to an ``O_APPEND`` descriptor,
fsynced before the create is sent; other processes' lines are read as they come.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import threading
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread

from batchkling._time import now_rfc3339
from batchkling.errors import RunDirWriteError

__all__ = ["JOURNAL_EVENTS", "AccountJournal", "Elsewhere", "account_id"]

# intent: a create is about to be sent; created: it answered with a task id;
# finished: the task failed or was given up (it no longer blocks a duplicate).
JOURNAL_EVENTS = frozenset({"intent", "created", "failed"})
_LOCK_POLL = 0.005  # seconds between tries of a price lock another process holds


def account_id(api_base: str, api_key: str) -> str:
    """The journal's name for an account: 16 hex digits that do not reveal the key."""
    digest = hashlib.sha256(f"{api_base.rstrip('/')}\n{api_key}".encode()).hexdigest()
    return digest[:16]


@dataclass(frozen=True)
class Elsewhere:
    """A request this account already has running or done in another run directory."""

    run_dir: str
    job: str
    task_id: str


@dataclass
class _Tasks:
    by_task: dict[str, str] = field(default_factory=dict)  # task id -> run directory
    # fingerprint -> (run directory, job, task id) of each live task of that request
    live: dict[str, dict[str, Elsewhere]] = field(default_factory=dict)


def _parse(raw: bytes) -> Any:
    """One journal line; None for a torn one, which recorded nothing a run needs.

    A line that a failed write tore may have the next line glued to it: that next
    line is whole from where it starts (every line starts with its time).
    """
    try:
        return json.loads(raw)
    except ValueError:
        pass
    start = raw.rfind(b'{"ts":')
    if start <= 0:
        return None
    try:
        return json.loads(raw[start:])
    except ValueError:
        return None


class AccountJournal:
    """An open account journal. Appends are durable before they return."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd = -1
        self._lock_fd = -1
        self._offset = 0
        self._rest = b""
        self._tasks = _Tasks()
        # Byte-range locks belong to the process, not the task: within one process
        # the same price is also serialised by an ordinary lock.
        self._local: dict[int, anyio.Lock] = {}
        # ``append`` reads back from a worker thread while the event loop reads too.
        self._reading = threading.Lock()

    @classmethod
    def open(cls, state_dir: Path, api_base: str, api_key: str) -> AccountJournal:
        """Open (creating if needed) the journal of one account under ``state_dir``."""
        folder = state_dir / "accounts"
        name = account_id(api_base, api_key)
        journal = cls(folder / f"{name}.jsonl")
        try:
            folder.mkdir(parents=True, exist_ok=True)
            journal._fd = os.open(journal.path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o600)
            journal._lock_fd = os.open(folder / f"{name}.lock", os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            journal.close()
            raise RunDirWriteError(
                f"the account journal {journal.path} could not be opened ({exc.strerror}); "
                "nothing was sent.",
                hint="Set XDG_STATE_HOME to a writable directory, then run again.",
            ) from None
        journal.refresh()
        return journal

    # -- reading -------------------------------------------------------------

    def refresh(self) -> None:
        """Read the lines other processes appended since the last read."""
        with self._reading:
            size = os.fstat(self._fd).st_size
            if size <= self._offset:
                return
            data = self._rest + os.pread(self._fd, size - self._offset, self._offset)
            self._offset = size
            cut = data.rfind(b"\n") + 1
            self._rest = data[cut:]  # a line still being written by another process
            self._apply_lines(data[:cut])

    def _apply_lines(self, data: bytes) -> None:
        for raw in data.splitlines():
            ev = _parse(raw)
            if isinstance(ev, dict):
                self._apply(ev)

    def _apply(self, ev: dict[str, Any]) -> None:
        kind, task_id, run_dir = ev.get("event"), ev.get("task_id"), ev.get("run_dir")
        fp, job = ev.get("fingerprint"), ev.get("job")
        if not isinstance(task_id, str) or not isinstance(run_dir, str):
            return
        if kind == "created":
            self._tasks.by_task[task_id] = run_dir
            if isinstance(fp, str) and isinstance(job, str):
                self._tasks.live.setdefault(fp, {})[task_id] = Elsewhere(run_dir, job, task_id)
        elif kind == "failed" and isinstance(fp, str):
            self._tasks.live.get(fp, {}).pop(task_id, None)

    def foreign_tasks(self, run_dir: Path) -> frozenset[str]:
        """Task ids that another run directory of this account created."""
        self.refresh()
        here = str(run_dir)
        with self._reading:
            return frozenset(t for t, d in self._tasks.by_task.items() if d != here)

    def task_dirs(self, run_dir: Path) -> dict[str, str]:
        """Each task id another run directory of this account created, with that directory."""
        self.refresh()
        here = str(run_dir)
        with self._reading:
            return {t: d for t, d in self._tasks.by_task.items() if d != here}

    def elsewhere(self, run_dir: Path, fingerprint: str) -> Elsewhere | None:
        """A live task of this very request in another run directory, if there is one."""
        self.refresh()
        here = str(run_dir)
        with self._reading:
            live = list(self._tasks.live.get(fingerprint, {}).values())
        return next((other for other in live if other.run_dir != here), None)

    # -- writing -------------------------------------------------------------

    def _line(self, event: str, fields: dict[str, Any]) -> bytes:
        ev = {"ts": now_rfc3339(), "event": event, **fields}
        return (json.dumps(ev, ensure_ascii=False, separators=(",", ":")) + "\n").encode()

    def append(self, event: str, **fields: Any) -> None:
        """Append one line and fsync it (blocking: call it from a worker thread)."""
        data = self._line(event, fields)
        written = 0
        try:
            written = os.write(self._fd, data)
            if written != len(data):
                raise OSError(0, "the disk took only part of the line")
            os.fsync(self._fd)
        except OSError as exc:
            if 0 < written < len(data):
                # End the torn piece, if the disk still takes a byte, so that the next
                # line (perhaps another process's) is not glued to it. Readers find a
                # line glued to a torn piece anyway (``_parse``).
                with contextlib.suppress(OSError):
                    os.write(self._fd, b"\n")
            raise RunDirWriteError(
                f"the account journal {self.path} could not be written ({exc.strerror}); "
                "nothing more was created.",
                hint="Free space on that disk, then run the same command again to resume.",
            ) from None
        self.refresh()

    async def record(self, event: str, **fields: Any) -> None:
        """``append`` in a worker thread, so that the event loop never waits on the disk."""
        await anyio.to_thread.run_sync(lambda: self.append(event, **fields))

    @contextlib.asynccontextmanager
    async def price_lock(self, credits: int) -> AsyncIterator[None]:
        """Hold the account-wide lock of one price (a byte-range lock at offset ``credits``)."""
        local = self._local.setdefault(credits, anyio.Lock())
        fd = self._lock_fd
        async with local:
            # Polled rather than blocking in a thread: a cancelled wait can then
            # never leave the lock taken behind it.
            while True:
                try:
                    fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, credits)
                    break
                except OSError:
                    await anyio.sleep(_LOCK_POLL)
            try:
                yield
            finally:
                fcntl.lockf(fd, fcntl.LOCK_UN, 1, credits)

    def close(self) -> None:
        """Close the journal (its locks go with the descriptor)."""
        for name in ("_fd", "_lock_fd"):
            fd = getattr(self, name)
            if fd >= 0:
                os.close(fd)
                setattr(self, name, -1)
