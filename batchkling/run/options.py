"""What a run is told (options), what it reports as it goes (progress) and at the end (result)."""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field

from batchkling.errors import AccountError
from batchkling.journal import Elsewhere
from batchkling.model import DEFAULT_CONCURRENCY, DEFAULT_REACH_TIMEOUT, JobState
from batchkling.reconcile.audit import Audit
from batchkling.reconcile.match import DEFAULT_SETTLE, Charge

__all__ = [
    "CREATE_ANSWER_TIMEOUT",
    "DEFAULT_GONE_AFTER",
    "DEFAULT_POLL_MAX",
    "DEFAULT_POLL_MIN",
    "DEFAULT_STALL_AFTER",
    "DEFAULT_TASK_TIMEOUT",
    "FINISHING_POLLS",
    "STALL_FACTOR",
    "Progress",
    "RunOptions",
    "RunResult",
]

DEFAULT_POLL_MIN = 5.0
DEFAULT_POLL_MAX = 30.0
DEFAULT_TASK_TIMEOUT = 1800.0
# A recorded task that answers "not found" for this long is taken as deleted or lost.
DEFAULT_GONE_AFTER = 180.0
# A task whose status has not changed for this long is called stalled, until one of
# its mode and duration has finished (then three times the slowest such finish).
DEFAULT_STALL_AFTER = 1200.0
STALL_FACTOR = 3.0
# Answers "completed" without a video URL that are waited through before the job fails.
FINISHING_POLLS = 10
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
    gone_after: float = DEFAULT_GONE_AFTER  # "not found" this long: the task is gone
    stall_after: float = DEFAULT_STALL_AFTER  # unchanged this long (before any finish): stalled
    finishing_polls: int = FINISHING_POLLS  # "completed" answers without a URL before failing
    # What to submit besides new jobs (see ``batchkling.run.selection.select_work``).
    allow_partial: bool = False
    retry_failed: bool = False
    resubmit_in_doubt: bool = False
    rerender_changed: bool = False
    allow_duplicate: bool = False  # send a request already running or done in another run dir
    reach_timeout: float = DEFAULT_REACH_TIMEOUT  # pre-flight's tries of an API it cannot reach


@dataclass(frozen=True)
class Progress:
    """A snapshot sent to the progress callback after every change, and at least once a second.

    ``counts`` is the ledger's fold, where a create still being sent is ``in_doubt``
    too; ``sending`` tells those apart (see ``in_doubt``).
    """

    total: int
    counts: dict[str, int]
    credits_committed: int
    budget: int | None
    message: str | None = None
    limit: int | None = None  # creates allowed in flight now (adaptive concurrency)
    sending: int = 0  # creates of this run whose intent is written and whose answer is awaited
    activity: str | None = None  # what the run is doing, in words, when no job moves
    eta: float | None = None  # seconds left, from this run's own speed; None: no basis yet
    elapsed: float = 0.0  # seconds since the work started

    @property
    def in_doubt(self) -> int:
        """Creates whose answer was lost (or left unanswered by an earlier run)."""
        return max(0, self.counts.get(JobState.IN_DOUBT.value, 0) - self.sending)


@dataclass
class RunResult:
    """What a run did, for the summary and the exit status."""

    counts: dict[str, int]
    credits_committed: int
    interrupted: bool = False
    account_error: AccountError | None = None
    polls: dict[str, int] = field(default_factory=dict)
    detection_gaps: list[float] = field(default_factory=list)
    unknown_status: dict[str, object] = field(default_factory=dict)  # as the server sent it
    finishing: dict[str, int] = field(default_factory=dict)  # "completed, no URL yet" answers
    fail_reasons: dict[str, str] = field(default_factory=dict)  # why the run failed a job
    stalled: list[str] = field(default_factory=list)  # status unchanged for too long
    allowed_at_once: int | None = None  # the concurrency the account allowed, once it refused
    limit_refusals: int = 0  # creates refused for too many tasks at once (charged nothing)
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
    # What pushed back, from the request gate: answers 429 and 5xx, and how long every
    # request was held back for them in all.
    answers_429: int = 0
    answers_5xx: int = 0
    paused_seconds: float = 0.0

    @property
    def median_detection_delay(self) -> float | None:
        """Median upper bound on how late a finished task was noticed (half the last gap)."""
        if not self.detection_gaps:
            return None
        return statistics.median(self.detection_gaps) / 2

    def jobs_in(self, state: JobState) -> list[str]:
        """The jobs that ended the run in ``state``, in manifest order."""
        return [key for key, st in self.states.items() if st is state]
