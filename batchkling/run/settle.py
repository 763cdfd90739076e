"""Settling in-doubt creates during a run, once their window is older than the settle delay.

The run waits for in-doubt jobs that can still be settled, even when all other
work is done: adopting the task or proving the create never happened spares the
user a guess about money. A job that stays ambiguous, or whose ripe window
still shows no charge, will not be settled by waiting longer in this run.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass
from datetime import datetime, timezone

from batchkling.api.client import SjinnClient
from batchkling.ledger import Ledger
from batchkling.reconcile.match import Charge, InDoubt, in_doubt_windows
from batchkling.reconcile.usage import reconcile_ledger

__all__ = ["Settled", "Settler"]


def _utc_now() -> datetime:
    return datetime.now(timezone.utc)


@dataclass(frozen=True)
class Settled:
    """What one reconciliation during the run found, or why it could not run."""

    adopted: tuple[str, ...] = ()  # charged: now running, to be followed
    not_created: tuple[str, ...] = ()  # never charged: back to pending, to be created
    orphans: tuple[Charge, ...] = ()
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
    ) -> None:
        self._ledger = ledger
        self._client = client
        self._settle = settle
        self._jobs = jobs
        self._now = now
        self._final: set[str] = set()  # waiting will not settle these in this run
        self.tick = min(1.0, max(0.02, settle / 4))  # seconds between two looks

    def _doubts(self) -> list[InDoubt]:
        return [
            d
            for d in in_doubt_windows(self._ledger.state)
            if d.job in self._jobs and d.job not in self._final
        ]

    def waiting(self) -> bool:
        """True while some in-doubt job of the run may still be settled by waiting."""
        return bool(self._doubts())

    async def settle_ripe(self) -> Settled | None:
        """Reconcile if some in-doubt window is older than the settle delay; else None."""
        now = self._now()
        ripe = [
            d
            for d in self._doubts()
            if d.end is not None and (now - d.end).total_seconds() > self._settle
        ]
        if not ripe:
            return None
        outcome = await reconcile_ledger(self._ledger, self._client, settle=self._settle)
        if outcome.unavailable is not None:
            return Settled(unavailable=outcome.unavailable)
        res = outcome.result
        if res is None:
            return None
        self._final.update(job for job, _charges in res.ambiguous)
        # A ripe window still without a verdict will not get one by waiting.
        self._final.update(d.job for d in ripe if d.job in res.waiting)
        return Settled(
            adopted=tuple(job for job, _charge in res.adopted),
            not_created=tuple(res.not_created),
            orphans=res.orphans,
        )
