"""Settling in-doubt creates during a run, once their window is older than the settle delay.

The run waits for in-doubt jobs that can still be settled, even when all other
work is done: adopting the task or proving the create never happened spares the
user a guess about money. A job that stays ambiguous, or whose ripe window
still shows no charge, will not be settled by waiting longer in this run.

Tasks the account journal gives to another run directory are never adopted
here, and an adopted task is recorded in the journal as this run directory's.
The largest lag between a create and its usage record seen so far is kept, so
that a later round never looks at a window sooner than the usage proved to lag.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from batchkling.api.client import SjinnClient
from batchkling.journal import AccountJournal
from batchkling.ledger import Ledger
from batchkling.reconcile.match import Charge, InDoubt, Reconciliation, in_doubt_windows
from batchkling.reconcile.usage import reconcile_ledger
from batchkling.state import RunState

__all__ = ["Settled", "Settler", "journal_adoptions"]

# Reads of the usage that may fail in a row before the run stops trying.
_UNAVAILABLE_TRIES = 3


def _utc_now() -> datetime:
    return datetime.now(timezone.utc)


async def journal_adoptions(
    journal: AccountJournal | None,
    run_dir: Path,
    st: RunState,
    adopted: Sequence[tuple[str, Charge]],
) -> None:
    """Record adopted tasks in the account journal as this run directory's own."""
    if journal is None:
        return
    for job, charge in adopted:
        if charge.task_id is None:
            continue
        rec = st.record(job)
        await journal.record(
            "created",
            run_dir=str(run_dir.resolve()),
            job=job,
            fingerprint=rec.fingerprint or "",
            task_id=charge.task_id,
        )


@dataclass(frozen=True)
class Settled:
    """What one reconciliation during the run found, or why it could not run."""

    adopted: tuple[str, ...] = ()  # charged: now running, to be followed
    not_created: tuple[str, ...] = ()  # never charged: back to pending, to be created
    final: tuple[str, ...] = ()  # still in doubt, and waiting will not settle them in this run
    orphans: tuple[Charge, ...] = ()
    reasons: dict[str, str] = field(default_factory=dict)  # why each job still waits
    unavailable: str | None = None  # the usage could not be read: stop trying


class Settler:
    """Reconciles the in-doubt jobs of one run against the credits usage when they are ripe."""

    def __init__(
        self,
        ledger: Ledger,
        client: SjinnClient,
        *,
        settle: float,
        jobs: Collection[str],
        now: Callable[[], datetime] = _utc_now,
        journal: AccountJournal | None = None,
        lag_seen: float = 0.0,
    ) -> None:
        self._ledger = ledger
        self._client = client
        self._settle = settle
        self._jobs = jobs
        self._now = now
        self._journal = journal
        self.lag_seen = lag_seen  # the largest usage lag seen, seconds
        self._failures = 0
        # (job, intent time) of creates that waiting will not settle in this run
        self._final: set[tuple[str, datetime]] = set()
        self.tick = min(1.0, max(0.02, settle / 4))  # seconds between two looks

    def _doubts(self) -> list[InDoubt]:
        return [
            d
            for d in in_doubt_windows(self._ledger.state)
            if d.job in self._jobs and (d.job, d.start) not in self._final
        ]

    def waiting(self) -> bool:
        """True while some in-doubt job of the run may still be settled by waiting."""
        return bool(self._doubts())

    def outlook(self) -> tuple[int, float | None]:
        """How many in-doubt creates wait to be settled, and the seconds until the first is ripe.

        A create still being sent has no window yet and is not counted. The seconds
        are None when none waits, and 0 or less once one is ripe (the usage is read at
        the next look).
        """
        ends = [d.end for d in self._doubts() if d.end is not None]
        if not ends:
            return 0, None
        wait = max(self._settle, self.lag_seen)
        return len(ends), wait - (self._now() - min(ends)).total_seconds()

    async def settle_ripe(self) -> Settled | None:
        """Reconcile if some in-doubt window is older than the settle delay; else None.

        The delay is never shorter than the largest usage lag seen so far.
        """
        now = self._now()
        wait = max(self._settle, self.lag_seen)
        ripe = [
            d for d in self._doubts() if d.end is not None and (now - d.end).total_seconds() > wait
        ]
        if not ripe:
            return None
        here = self._ledger.run_dir.resolve()
        foreign = frozenset() if self._journal is None else self._journal.foreign_tasks(here)
        outcome = await reconcile_ledger(
            self._ledger,
            self._client,
            settle=self._settle,
            now=self._now,
            foreign=foreign,
            lag_seen=self.lag_seen,
        )
        if outcome.unavailable is not None:
            self._failures += 1
            if self._failures < _UNAVAILABLE_TRIES:
                return None  # try again at the next look
            return Settled(unavailable=outcome.unavailable)
        self._failures = 0
        res = outcome.result
        if res is None:
            return None
        self.lag_seen = max(self.lag_seen, res.lag)
        await journal_adoptions(
            self._journal, self._ledger.run_dir, self._ledger.state, res.adopted
        )
        return self._verdicts(res, ripe)

    def _verdicts(self, res: Reconciliation, ripe: list[InDoubt]) -> Settled:
        # A ripe window still without a verdict will not get one by waiting.
        # Final is said of one create (a job and the intent that opened its window):
        # a job proved never created and sent again is in doubt anew, and may be settled.
        starts = {d.job: d.start for d in in_doubt_windows(self._ledger.state)}
        final = {(job, starts[job]) for job, _charges in res.ambiguous if job in starts}
        final.update((d.job, d.start) for d in ripe if d.job in res.waiting)
        final -= self._final
        self._final |= final
        return Settled(
            adopted=tuple(job for job, _charge in res.adopted),
            not_created=tuple(res.not_created),
            final=tuple(sorted(job for job, _start in final)),
            orphans=res.orphans,
            reasons=dict(res.reasons),
        )
