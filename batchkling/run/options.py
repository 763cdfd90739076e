"""What a run is told (options), what it reports as it goes (progress) and at the end (result)."""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field

from batchkling.errors import AccountError
from batchkling.model import DEFAULT_CONCURRENCY
from batchkling.reconcile.match import DEFAULT_SETTLE, Charge

__all__ = [
    "DEFAULT_POLL_MAX",
    "DEFAULT_POLL_MIN",
    "DEFAULT_TASK_TIMEOUT",
    "SHUTDOWN_GRACE",
    "Progress",
    "RunOptions",
    "RunResult",
]

DEFAULT_POLL_MIN = 5.0
DEFAULT_POLL_MAX = 30.0
DEFAULT_TASK_TIMEOUT = 1800.0
SHUTDOWN_GRACE = 30.0


@dataclass(frozen=True)
class RunOptions:
    """How a run behaves; the defaults are the command line's."""

    concurrency: int = DEFAULT_CONCURRENCY
    no_wait: bool = False
    no_download: bool = False
    poll_min: float = DEFAULT_POLL_MIN
    poll_max: float = DEFAULT_POLL_MAX
    task_timeout: float = DEFAULT_TASK_TIMEOUT
    create_attempts: int = 6
    download_attempts: int = 6
    backoff_base: float = 1.0
    backoff_cap: float = 60.0
    shutdown_grace: float = SHUTDOWN_GRACE
    usage_settle: float | None = DEFAULT_SETTLE  # None: no reconciliation during the run
    doubt_gap: float = 1.0  # pause of one price's creates after an in-doubt create


@dataclass(frozen=True)
class Progress:
    """A snapshot sent to the progress callback after every change."""

    total: int
    counts: dict[str, int]
    credits_committed: int
    budget: int | None
    message: str | None = None


@dataclass
class RunResult:
    """What a run did, for the summary and the exit status."""

    counts: dict[str, int]
    credits_committed: int
    interrupted: bool = False
    account_error: AccountError | None = None
    polls: dict[str, int] = field(default_factory=dict)
    detection_gaps: list[float] = field(default_factory=list)
    unknown_status: dict[str, int] = field(default_factory=dict)
    timed_out: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    orphans: tuple[Charge, ...] = ()

    @property
    def median_detection_delay(self) -> float | None:
        """Median upper bound on how late a finished task was noticed (half the last gap)."""
        if not self.detection_gaps:
            return None
        return statistics.median(self.detection_gaps) / 2
