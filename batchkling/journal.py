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
- ``price_lock``: the per-price window of creates, held across processes with a
  byte-range lock on the journal's lock file: shared while creates of a price may
  overlap, exclusive while that price is one-at-a-time, so that the windows of
  two run directories' creates of one price never overlap then;
- ``doubtful``: whether a create of a price went in doubt lately in any run
  directory (its ``in_doubt`` line), which makes that price one-at-a-time.

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
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread

from batchkling._time import now_rfc3339, parse_rfc3339
from batchkling.errors import RunDirWriteError

__all__ = ["JOURNAL_EVENTS", "AccountJournal", "Elsewhere", "PriceLock", "account_id"]

# intent: a create is about to be sent; created: it answered with a task id;
# finished: the task failed or was given up (it no longer blocks a duplicate);
# in_doubt: its answer was lost (its price goes one-at-a-time for a while).
JOURNAL_EVENTS = frozenset({"intent", "created", "failed", "in_doubt"})
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


class PriceLock:
    """The window lock of one price: many shared holders, or one exclusive holder.

    With ``fd``, the same is held across processes with ``fcntl`` at byte
    ``offset`` of that file: shared (``LOCK_SH``) while this process has shared
    holders, exclusive (``LOCK_EX``) for its one exclusive holder. Byte-range
    locks belong to the process, so the holders of one process are counted here
    and the file lock follows the count. An exclusive waiter keeps new shared
    holders out, so a price that goes one-at-a-time does so at once.
    """

    def __init__(self, fd: int | None = None, offset: int = 0) -> None:
        self._fd = fd
        self._offset = offset
        self._shared = 0
        self._exclusive = False
        self._wanting = 0  # exclusive waiters
        self._changed = anyio.Event()
        self._os = anyio.Lock()  # one change of the file lock at a time
        self._os_held = False

    def free(self, width: int = 1 << 30) -> bool:
        """Whether a shared hold among at most ``width`` would be granted without waiting here."""
        return not self._exclusive and self._wanting == 0 and self._shared < width

    async def __aenter__(self) -> None:
        """``async with lock``: hold it exclusive."""
        await self._admit(lambda: True)
        try:
            await self._take_file(True)
        except BaseException:
            self._leave(True)
            raise

    async def __aexit__(self, *exc: object) -> None:
        self._leave(True)

    def try_hold(self, *, exclusive: bool, width: int = 1 << 30) -> bool:
        """Hold the lock now if no wait is needed in this process or any other; else False.

        ``width``: a shared hold is granted only while fewer hold it in this process.
        Release with ``release(exclusive=...)``.
        """
        if exclusive and (self._exclusive or self._shared or self._wanting):
            return False
        if not exclusive and not self.free(width):
            return False
        if self._fd is not None and not self._os_held:
            mode = fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH
            try:
                fcntl.lockf(self._fd, mode | fcntl.LOCK_NB, 1, self._offset)
            except OSError:
                return False
            self._os_held = True
        if exclusive:
            self._exclusive = True
        else:
            self._shared += 1
        return True

    def release(self, *, exclusive: bool) -> None:
        """Let go of a hold taken with ``try_hold``."""
        self._leave(exclusive)

    @contextlib.asynccontextmanager
    async def hold(
        self,
        *,
        exclusive: bool | Callable[[], bool],
        width: Callable[[], int] | None = None,
    ) -> AsyncIterator[bool]:
        """Hold the lock, shared (among at most ``width()`` here) or exclusive; yields which.

        ``exclusive`` and ``width`` may change while this waits: both are asked again
        each time the lock changes hands.
        """
        mode = await self._admit(exclusive if callable(exclusive) else lambda: exclusive, width)
        try:
            await self._take_file(mode)
        except BaseException:
            self._leave(mode)
            raise
        try:
            yield mode
        finally:
            self._leave(mode)

    async def _admit(
        self, exclusive: Callable[[], bool], width: Callable[[], int] | None = None
    ) -> bool:
        wanting = False
        try:
            while True:
                alone = exclusive()
                if alone != wanting:
                    self._wanting += 1 if alone else -1
                    wanting = alone
                if alone and not self._exclusive and self._shared == 0:
                    self._exclusive = True
                    return True
                if not alone and self.free(width() if width is not None else 1 << 30):
                    self._shared += 1
                    return False
                await self._changed.wait()
        finally:
            if wanting:
                self._wanting -= 1
                self._notify()  # a waiter that went (or gave up) no longer keeps readers out

    async def _take_file(self, exclusive: bool) -> None:
        if self._fd is None:
            return
        async with self._os:
            if self._os_held:
                return  # a shared holder of this process holds it shared already
            mode = fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH
            # Polled rather than blocking in a thread: a cancelled wait can then
            # never leave the lock taken behind it.
            while True:
                try:
                    fcntl.lockf(self._fd, mode | fcntl.LOCK_NB, 1, self._offset)
                    break
                except OSError:
                    await anyio.sleep(_LOCK_POLL)
            self._os_held = True

    def _leave(self, exclusive: bool) -> None:
        if exclusive:
            self._exclusive = False
        else:
            self._shared -= 1
        if self._shared == 0 and not self._exclusive and self._os_held and self._fd is not None:
            fcntl.lockf(self._fd, fcntl.LOCK_UN, 1, self._offset)
            self._os_held = False
        self._notify()

    def _notify(self) -> None:
        self._changed.set()
        self._changed = anyio.Event()


class AccountJournal:
    """An open account journal. Appends are durable before they return."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd = -1
        self._lock_fd = -1
        self._offset = 0
        self._rest = b""
        self._tasks = _Tasks()
        # Byte-range locks belong to the process, not the task: ``PriceLock``
        # counts the holders of this process.
        self._locks: dict[int, PriceLock] = {}
        self._doubts: dict[int, float] = {}  # price -> epoch seconds of its last in_doubt line
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
        if kind == "in_doubt":
            self._doubted(ev)
            return
        if not isinstance(task_id, str) or not isinstance(run_dir, str):
            return
        if kind == "created":
            self._tasks.by_task[task_id] = run_dir
            if isinstance(fp, str) and isinstance(job, str):
                self._tasks.live.setdefault(fp, {})[task_id] = Elsewhere(run_dir, job, task_id)
        elif kind == "failed" and isinstance(fp, str):
            self._tasks.live.get(fp, {}).pop(task_id, None)

    def _doubted(self, ev: dict[str, Any]) -> None:
        credits, ts = ev.get("credits"), ev.get("ts")
        if not isinstance(credits, int) or not isinstance(ts, str):
            return
        try:
            at = parse_rfc3339(ts).timestamp()
        except ValueError:
            return
        self._doubts[credits] = max(at, self._doubts.get(credits, at))

    def doubtful(self, credits: int, *, within: float) -> bool:
        """Whether a create of this price went in doubt, in any run directory, in ``within`` s."""
        self.refresh()
        with self._reading:
            at = self._doubts.get(credits)
        return at is not None and time.time() - at < within

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

    def price_lock(self, credits: int) -> PriceLock:
        """The account-wide window lock of one price (a byte-range lock at offset ``credits``).

        ``price_lock(c).hold(exclusive=...)`` holds it; each price has one lock per journal.
        """
        lock = self._locks.get(credits)
        if lock is None:
            lock = self._locks[credits] = PriceLock(self._lock_fd, credits)
        return lock

    def close(self) -> None:
        """Close the journal (its locks go with the descriptor)."""
        for name in ("_fd", "_lock_fd"):
            fd = getattr(self, name)
            if fd >= 0:
                os.close(fd)
                setattr(self, name, -1)
