"""What a run is told (options), what it reports as it goes (progress) and at the end (result)."""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field

from batchkling.errors import AccountError
from batchkling.journal import Elsewhere
from batchkling.model import DEFAULT_CONCURRENCY, JobState
from batchkling.reconcile.audit import Audit
from batchkling.reconcile.match import DEFAULT_SETTLE, Charge

__all__ = [
    "CREATE_ANSWER_TIMEOUT",
    "DEFAULT_POLL_MAX",
    "DEFAULT_POLL_MIN",
    "DEFAULT_TASK_TIMEOUT",
    "Progress",
    "RunOptions",
    "RunResult",
]

DEFAULT_POLL_MIN = 5.0
DEFAULT_POLL_MAX = 30.0
DEFAULT_TASK_TIMEOUT = 1800.0
# How long a create that was sent is waited for while its connection lives. An
# answer is never thrown away for being slow (a laptop that slept through the
# create, a stalled server): only past this bound is the create in doubt. An
# interrupted run waits this long, at most, for the creates it sent.
CREATE_ANSWER_TIMEOUT = 600.0


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
    create_answer_timeout: float = CREATE_ANSWER_TIMEOUT
    usage_settle: float | None = DEFAULT_SETTLE  # None: no reconciliation during the run
    doubt_gap: float = 1.0  # pause of one price's creates after an in-doubt create
    # What to submit besides new jobs (see ``batchkling.run.selection.select_work``).
    allow_partial: bool = False
    retry_failed: bool = False
    resubmit_in_doubt: bool = False
    rerender_changed: bool = False
    allow_duplicate: bool = False  # send a request already running or done in another run dir


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
    # Jobs not sent because another run directory of the account has the same request.
    duplicates: dict[str, Elsewhere] = field(default_factory=dict)
    doubt_reasons: dict[str, str] = field(default_factory=dict)  # why each in-doubt job waits
    held_back: list[str] = field(default_factory=list)  # not sent: every slot held by a doubt
    moves: tuple[tuple[str, str], ...] = ()  # (old key, new key) carried over before the work
    # The end-of-run audit of the account's charges, or why there is none.
    audit: Audit | None = None
    audit_problem: str | None = None
    # Filled in by ``run_manifest`` once the run is over:
    states: dict[str, JobState] = field(default_factory=dict)  # every job, in manifest order
    exit_status: int = 0
    api_calls: int = 0
    elapsed: float = 0.0  # seconds from the run's start to its end

    @property
    def median_detection_delay(self) -> float | None:
        """Median upper bound on how late a finished task was noticed (half the last gap)."""
        if not self.detection_gaps:
            return None
        return statistics.median(self.detection_gaps) / 2

    def jobs_in(self, state: JobState) -> list[str]:
        """The jobs that ended the run in ``state``, in manifest order."""
        return [key for key, st in self.states.items() if st is state]
