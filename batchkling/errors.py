"""The one exception tree of batchkling.

Library code raises these; only the CLI turns them into a line on stderr and an
exit status (``exit_code`` on each class). Each carries a ``message``, a whole
sentence saying what is wrong, and apart from it an optional ``hint`` saying what
to do next (``str(exc)`` is the two on one line). No message ever contains the
API key. Classes carry structured fields besides: ``problems``, ``line``,
``needed``/``budget``, ``pid``, ``status_code``/``error_code``/``retry_after``/``overloaded``.

    BatchklingError                       exit 2 unless stated
    ├── UsageError                        bad command-line usage
    ├── ManifestError                     invalid manifest: carries every Problem
    ├── BudgetError                       exit 3: the plan does not fit the budget
    ├── LedgerError                       an unreadable or inconsistent ledger
    │   ├── LockedError                   another runner holds the run directory
    │   └── RunDirWriteError              exit 5: the run directory cannot be written
    │       └── ExportWriteError          an export's output (or exports.json) cannot be written
    ├── AccountError                      exit 4: the account was refused
    │   ├── AuthError                     invalid or missing API key
    │   ├── MembershipError               no active subscription (error 101)
    │   └── InsufficientBalanceError      balance too low (error 100)
    ├── PreflightError                    a pre-flight check failed: carries every Problem
    │   └── UnreachableError              no API answered at the base URL (refused, DNS, 404)
    ├── CorruptTakeError                  exit 1: a chosen take's video does not decode (export)
    ├── StorageError                      local images could not be made available
    │   ├── StorageSetupError             no storage library, no credentials, bad settings
    │   └── UploadError                   the store failed (after retries), or a URL does not answer
    └── ApiError                          exit 1: an answer from the API we could not use
        ├── TransientError                provably not processed; safe to retry
        │   └── ConcurrencyLimitError     too many tasks generating at once: nothing charged
        ├── InDoubtError                  may have been processed (a create may be charged)
        ├── RefusedError                  a functional refusal (e.g. error 400 on one job)
        └── TaskNotFoundError             the server does not know the task id

``Problem`` is not an exception: it is one finding of a manifest or pre-flight
check, with its place, as ``ManifestError`` and ``PreflightError`` carry them.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "AccountError",
    "ApiError",
    "AuthError",
    "BatchklingError",
    "BudgetError",
    "ConcurrencyLimitError",
    "CorruptTakeError",
    "ExportWriteError",
    "InDoubtError",
    "InsufficientBalanceError",
    "LedgerError",
    "LockedError",
    "ManifestError",
    "MembershipError",
    "PreflightError",
    "Problem",
    "RefusedError",
    "RunDirWriteError",
    "StorageError",
    "StorageSetupError",
    "TaskNotFoundError",
    "TransientError",
    "UnreachableError",
    "UploadError",
    "UsageError",
]


class BatchklingError(Exception):
    """Base class: a message for the user, an optional hint kept apart, an exit status."""

    exit_code: int = 2

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        """The message, then the hint (if any) after a space: one line."""
        return self.message if self.hint is None else f"{self.message} {self.hint}"


class UsageError(BatchklingError):
    """The command line asks for something impossible."""


@dataclass(frozen=True)
class Problem:
    """One finding about a manifest, with its place: ``FILE:LINE: shot ID: FIELD: message``."""

    file: str
    line: int | None
    shot: str | None
    field: str | None
    message: str
    warning: bool = False

    def __str__(self) -> str:
        place = self.file if self.line is None else f"{self.file}:{self.line}"
        parts = [place]
        if self.shot is not None:
            parts.append(f"shot {self.shot}")
        if self.field is not None:
            parts.append(self.field)
        prefix = "warning: " if self.warning else ""
        return ": ".join(parts) + f": {prefix}{self.message}"


class ManifestError(BatchklingError):
    """The manifest is invalid; ``problems`` holds every error found in one pass."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        first = str(problems[0]) if problems else "invalid manifest"
        super().__init__(first)


class BudgetError(BatchklingError):
    """The credits still to commit do not fit the budget; nothing was sent."""

    exit_code = 3

    def __init__(self, message: str, *, needed: int, budget: int, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.needed = needed
        self.budget = budget


class LedgerError(BatchklingError):
    """The ledger cannot be read as written; ``line`` names the bad line."""

    def __init__(self, message: str, *, line: int | None = None, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.line = line


class LockedError(LedgerError):
    """Another runner holds the run directory's lock."""

    def __init__(self, message: str, *, pid: int | None = None, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.pid = pid


class RunDirWriteError(LedgerError):
    """The run directory could not be written, or its ledger was changed under the run.

    A full disk, a file size limit or an I/O error. Nothing more is created; the
    ledger holds only whole lines.
    """

    exit_code = 5


class AccountError(BatchklingError):
    """The account was refused: nothing more can be created with this key."""

    exit_code = 4


class AuthError(AccountError):
    """The API key is missing or was not accepted."""


class MembershipError(AccountError):
    """Task creation needs an active subscription (error 101)."""


class InsufficientBalanceError(AccountError):
    """The account's balance does not cover a create (error 100)."""


class PreflightError(BatchklingError):
    """A pre-flight check failed; ``problems`` holds every finding."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__(str(problems[0]) if problems else "pre-flight failed")


class UnreachableError(PreflightError):
    """No API answered at the base URL: nothing was sent.

    ``reason`` says how it failed (``connection refused``, ``the host name could not
    be resolved``, ``connection timed out``, ``HTTP 404 (not found)``); ``waited``
    is how long it was tried for, in seconds.
    """

    def __init__(self, reason: str, *, waited: float, status_code: int | None = None) -> None:
        self.reason = reason
        self.waited = waited
        self.status_code = status_code
        message = f"the API could not be reached ({reason}); nothing was sent."
        super().__init__([Problem("pre-flight", None, None, None, message)])
        self.message = message


class StorageError(BatchklingError):
    """Local images could not be put where the API can fetch them: nothing was created.

    ``path`` names the local file concerned, when one is.
    """

    def __init__(self, message: str, *, path: str | None = None, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.path = path


class StorageSetupError(StorageError):
    """The uploads cannot start: the storage extra is missing, no credentials, bad settings."""


class UploadError(StorageError):
    """The store failed after every retry, or an uploaded image's URL does not answer."""


class ApiError(BatchklingError):
    """An answer from the API that we could not use as a success.

    ``overloaded`` means the server said it is overloaded or failing (a 429, a
    5xx, a limit): every request should hold back, not only this one.
    """

    exit_code = 1

    def __init__(
        self,
        message: str,
        *,
        status_code: int | None = None,
        error_code: int | None = None,
        retry_after: float | None = None,
        hint: str | None = None,
        overloaded: bool = False,
    ) -> None:
        super().__init__(message, hint=hint)
        self.status_code = status_code
        self.error_code = error_code
        self.retry_after = retry_after
        self.overloaded = overloaded


class TransientError(ApiError):
    """The request provably was not processed (refused connection, 429, 503): retry it."""


class ConcurrencyLimitError(TransientError):
    """The account has as many tasks generating as it may: the create charged nothing.

    Upstream Kling limits the tasks generating at once per account (error 1303); the
    limit clears as tasks finish. Sent as HTTP 429, or as ``success: false`` with a
    message about a limit, parallel tasks or being busy.
    """


class InDoubtError(ApiError):
    """The request may have been processed: a create may have been charged."""


class RefusedError(ApiError):
    """The API refused this request for a reason that retrying will not change."""


class TaskNotFoundError(ApiError):
    """The server does not know this task id."""


class CorruptTakeError(BatchklingError):
    """A chosen take's video does not decode; ``job`` names the take."""

    exit_code = 1

    def __init__(self, job: str, path: str, why: str) -> None:
        super().__init__(
            f"take {job} ({path}) cannot be read as a video: {why}.",
            hint=f"Reject it (batchkling reject {job}) or render it again, then export again.",
        )
        self.job = job
        self.path = path


class ExportWriteError(RunDirWriteError):
    """An output file (or ``exports.json``) could not be written; ``path`` names it."""

    def __init__(self, path: str, why: str, *, hint: str | None = None) -> None:
        super().__init__(f"{path} could not be written ({why}).", hint=hint)
        self.path = path
