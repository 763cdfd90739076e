"""A run's ledger writes, with the per-state counts and the progress callback kept current.

Two kinds of writes: ``record`` for an event that records money (an intent, a
task id, a refusal), which is on disk before the caller takes its next step;
``note`` for one that does not (a finished task, a file, a skip), which reaches
the disk with the next fsync.

A create is *sending* from its intent until any other event of its job: the
fold calls it in doubt already (it may have been charged), but only a create
whose answer was lost, or an intent an earlier run left unanswered, is shown
as in doubt.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Sequence

import anyio.lowlevel

from batchkling.ledger import Ledger
from batchkling.model import Job
from batchkling.run.options import Progress
from batchkling.state import Outcome, RunState

__all__ = ["RunWriter"]


class RunWriter:
    """Writes the events of one run's units to its ledger."""

    def __init__(
        self,
        ledger: Ledger,
        jobs: Sequence[Job],
        *,
        budget: int | None,
        progress: Callable[[Progress], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ledger = ledger
        self._jobs = list(jobs)
        self._keys = frozenset(job.key for job in self._jobs)
        self._budget = budget
        self._progress = progress
        self._counts: Counter[str] = Counter()
        # Jobs whose create this run sent and whose answer is awaited: when it was sent.
        self._sending: dict[str, float] = {}
        self.create_times: list[float] = []  # seconds from intent to task id, this run's creates
        self._clock = clock
        self._start = clock()
        self.limit: Callable[[], int] | None = None  # the creates allowed in flight now
        # What the run is doing and the seconds it has left, for each snapshot.
        self.live: Callable[[], tuple[str | None, float | None]] | None = None
        self.refresh(emit=False)

    @property
    def state(self) -> RunState:
        """The ledger's fold, current after every write."""
        return self.ledger.state

    @property
    def counts(self) -> dict[str, int]:
        """How many of the run's jobs are in each state (states with none left out)."""
        return {k: v for k, v in self._counts.items() if v}

    def write(self, event: str, job: str, **fields: object) -> int:
        """Append an event without waiting for the disk; its sequence number for ``flush``."""
        before = self.state.state_of(job)
        seq = self.ledger.write(event, job, **fields)
        after = self.state.state_of(job)
        sent = self._sending.pop(job, None)
        if event == "intent":
            self._sending[job] = self._clock()
        elif event == "created" and sent is not None:
            self.create_times.append(self._clock() - sent)
        if before is not after and job in self._keys:
            self._counts[before.value] -= 1
            self._counts[after.value] += 1
        self.emit()
        return seq

    async def flush(self, seq: int) -> None:
        """Return once the event ``seq`` (and every one before it) is on disk."""
        await self.ledger.flush(seq)

    async def record(self, event: str, job: str, **fields: object) -> None:
        """Write an event that records money and wait until it is on disk."""
        await self.flush(self.write(event, job, **fields))

    async def note(self, event: str, job: str, **fields: object) -> None:
        """Write an event that records no money (a finished task, a file, a skip).

        It reaches the disk with the next money event's fsync or at close; losing it
        to a power cut costs one more poll or download on resume, never a create.
        """
        self.write(event, job, **fields)
        await anyio.lowlevel.checkpoint()

    def refresh(self, *, emit: bool = True) -> None:
        """Count again, after something else wrote to the ledger (a reconciliation)."""
        self._counts = Counter(self.state.state_of(job.key).value for job in self._jobs)
        self._sending = {job: t for job, t in self._sending.items() if self._still_sending(job)}
        if emit:
            self.emit()

    @property
    def sending(self) -> dict[str, float]:
        """Each job whose create this run sent and whose answer is not recorded yet: when."""
        return dict(self._sending)

    def _still_sending(self, job: str) -> bool:
        last = self.state.record(job).last_attempt
        return last is not None and last.outcome is Outcome.SENDING

    def emit(self, message: str | None = None) -> None:
        """Send a progress snapshot (with ``message``, a line for the user) to the callback."""
        if self._progress is None:
            return
        activity, eta = (None, None) if self.live is None else self.live()
        self._progress(
            Progress(
                total=len(self._jobs),
                counts=dict(self._counts),
                credits_committed=self.state.credits_committed,
                budget=self._budget,
                message=message,
                limit=None if self.limit is None else self.limit(),
                sending=len(self._sending.keys() & self._keys),
                activity=activity,
                eta=eta,
                elapsed=self._clock() - self._start,
            )
        )
