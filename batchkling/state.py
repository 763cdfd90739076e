"""Ledger events and the pure fold from events to job states.

The ledger is the only truth about money: a job's state is whatever the events
say, in order. Every rule of how an event moves a job lives in ``_apply``; the
runner, ``status``, ``report`` and reconciliation all read the same fold.

Events (each a JSON object with ``ts``, ``event`` and ``job``; see
``schemas/ledger.schema.json``):

- ``header``: first line; tool version, manifest path and sha256.
- ``run_started`` / ``run_ended``: one run of the command (``job`` is null).
  ``run_started`` records how the run loaded its manifest (``RunSettings``).
- ``intent``: written and fsynced *before* a create is sent. Until an outcome
  follows, the job is ``in_doubt``: a crash after sending may have been charged.
- ``created``: the create answered with a task id: ``running``.
- ``create_failed``: the create provably charged nothing. ``permanent`` means the
  API refused the input (``failed``); otherwise the job is ``pending`` again.
- ``in_doubt``: the create's outcome is unknown (lost answer, 5xx, read timeout).
- ``reconciled``: an in-doubt create matched to a charge in the credits usage.
- ``not_created``: an in-doubt create proven never to have happened: ``pending``.
- ``completed`` / ``failed``: the task finished on the server.
- ``downloaded``: the video is on disk, verified: ``done``.
- ``skipped``: not submitted because the budget did not allow it. Only a job that
  was never sent can be skipped: a job with a create behind it keeps its state,
  whatever a later selection thinks of it (states only move forward).
- ``moved``: a manifest entry's key changed (a rename, a case change, takes 1 to
  2) while its request stayed the same: the record moves to the new key (``to``),
  so nothing is rendered again.
- ``picked`` / ``rejected`` / ``noted``: a review of a take (``batchkling pick``,
  ``reject``, ``note``, the review page); they move no job and no money, only
  ``RunState.marks`` (``batchkling.review.marks``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from batchkling.errors import LedgerError
from batchkling.model import JobState
from batchkling.review.marks import MARK_EVENTS, Marks

__all__ = [
    "EVENTS",
    "Attempt",
    "JobRecord",
    "Outcome",
    "RunSettings",
    "RunState",
    "apply",
    "apply_at",
    "fold",
]

EVENTS = frozenset(
    {
        "header",
        "run_started",
        "run_ended",
        "intent",
        "created",
        "create_failed",
        "in_doubt",
        "reconciled",
        "not_created",
        "completed",
        "failed",
        "downloaded",
        "skipped",
        "moved",
    }
    | MARK_EVENTS
)


class Outcome(str, Enum):
    """What became of one create."""

    SENDING = "sending"  # the intent is written; the answer is not (yet)
    CREATED = "created"
    REFUSED = "refused"  # the API provably charged nothing
    IN_DOUBT = "in_doubt"
    NOT_CREATED = "not_created"  # proven never to have reached the provider


# An attempt counts as money spent unless it is proven uncharged: a create still
# being sent, or whose answer was lost, may have been charged.
_CHARGED = frozenset({Outcome.SENDING, Outcome.CREATED, Outcome.IN_DOUBT})


@dataclass(slots=True)
class Attempt:
    """One create of a job: its price, its request fingerprint and what became of it."""

    credits: int
    fingerprint: str
    intent_ts: str
    outcome: Outcome = Outcome.SENDING
    task_id: str | None = None
    ended_ts: str | None = None
    mode: str | None = None
    duration: float | None = None

    @property
    def charged(self) -> bool:
        """True when this attempt may have cost money (created, or unknown)."""
        return self.outcome in _CHARGED


@dataclass(slots=True)
class JobRecord:
    """Everything the ledger says about one job."""

    job: str
    state: JobState = JobState.PENDING
    attempts: list[Attempt] = field(default_factory=list)
    task_id: str | None = None
    error: str | None = None
    output_urls: tuple[str, ...] = ()
    output: str | None = None
    bytes: int | None = None
    sha256: str | None = None
    created_ts: str | None = None
    finished_ts: str | None = None
    skip_reason: str | None = None

    @property
    def credits(self) -> int:
        """Credits this job has committed over all its attempts (no refund assumed)."""
        return sum(a.credits for a in self.attempts if a.charged)

    @property
    def fingerprint(self) -> str | None:
        """Fingerprint of the request most recently sent for this job."""
        return self.attempts[-1].fingerprint if self.attempts else None

    @property
    def last_attempt(self) -> Attempt | None:
        """The most recent create of this job, if any was ever written."""
        return self.attempts[-1] if self.attempts else None

    @property
    def ever_sent(self) -> bool:
        """True once an intent was written: from then on the job may have been charged."""
        return bool(self.attempts)


@dataclass(frozen=True)
class RunSettings:
    """How the latest run loaded its manifest: what reading its run directory again needs.

    ``overrides`` holds the settings given on the command line (``budget``,
    ``image_base_url``, ``defaults``, ``upload_to``, ``upload_public_url``), only
    those given; None when the ledger does not say (one written before they were
    recorded, or no run yet), which is not the same as none given. ``budget`` is
    the budget the run was held to.
    """

    manifest: str | None = None
    manifest_sha256: str | None = None
    overrides: Mapping[str, Any] | None = None
    budget: int | None = None


def _text(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def _whole(value: object) -> int | None:
    return value if type(value) is int and value >= 0 else None


def _overrides(value: object) -> dict[str, Any] | None:
    """The recorded overrides, each only when well-formed: a bad one is left out, not obeyed."""
    if not isinstance(value, dict):
        return None
    out: dict[str, Any] = {}
    if _whole(value.get("budget")) is not None:
        out["budget"] = value["budget"]
    for name in ("image_base_url", "upload_to", "upload_public_url"):
        if _text(value.get(name)) is not None:
            out[name] = value[name]
    defaults = value.get("defaults")
    if isinstance(defaults, dict) and defaults and all(isinstance(k, str) for k in defaults):
        out["defaults"] = dict(defaults)
    return out


def _run_settings(ev: Mapping[str, Any]) -> RunSettings:
    budget = ev.get("budget")
    return RunSettings(
        manifest=_text(ev.get("manifest")),
        manifest_sha256=_text(ev.get("manifest_sha256")),
        overrides=_overrides(ev.get("overrides")),
        budget=budget if type(budget) is int else None,
    )


@dataclass
class RunState:
    """The fold of a whole ledger."""

    header: Mapping[str, Any] | None = None
    jobs: dict[str, JobRecord] = field(default_factory=dict)
    runs: list[dict[str, Any]] = field(default_factory=list)
    events: int = 0
    # Credits committed by every charged attempt in the ledger, jobs no longer in
    # the manifest too. Kept current by every event, so the budget check is O(1).
    credits_committed: int = 0
    # Old key -> new key, for every ``moved`` event, in ledger order.
    moves: dict[str, str] = field(default_factory=dict)
    # What the latest ``run_started`` recorded of its manifest; None before any run.
    last_run: RunSettings | None = None
    # Picks, rejects and notes of the takes (review events), in ledger order.
    marks: Marks = field(default_factory=Marks)

    @property
    def settings(self) -> RunSettings:
        """How the latest run loaded its manifest; the header's path and sha256 for
        what a ledger from before they were recorded (or with no run yet) lacks."""
        last = self.last_run if self.last_run is not None else RunSettings()
        header = self.header if self.header is not None else {}
        return RunSettings(
            manifest=last.manifest or _text(header.get("manifest")),
            manifest_sha256=last.manifest_sha256 or _text(header.get("manifest_sha256")),
            overrides=last.overrides,
            budget=last.budget,
        )

    def record(self, job: str) -> JobRecord:
        """The record of ``job``; a job the ledger never mentioned is pending."""
        rec = self.jobs.get(job)
        return rec if rec is not None else JobRecord(job=job)

    def state_of(self, job: str) -> JobState:
        """The state of ``job``; a job the ledger never mentioned is pending."""
        rec = self.jobs.get(job)
        return JobState.PENDING if rec is None else rec.state


def _bad(line: int | None, message: str) -> LedgerError:
    where = f"line {line}" if line is not None else "an event"
    return LedgerError(
        f"ledger {where}: {message}",
        line=line,
        hint="The ledger is not changed by batchkling after such an error; inspect it by hand.",
    )


def _req(ev: Mapping[str, Any], key: str, line: int | None) -> Any:
    try:
        return ev[key]
    except KeyError:
        raise _bad(line, f"event {ev.get('event')!r} lacks {key!r}") from None


def _intent(st: RunState, rec: JobRecord, ev: Mapping[str, Any], ts: str, line: int | None) -> None:
    credits = int(_req(ev, "credits", line))
    duration = ev.get("duration")
    rec.attempts.append(
        Attempt(
            credits,
            str(_req(ev, "fingerprint", line)),
            ts,
            mode=ev.get("mode"),
            duration=float(duration) if isinstance(duration, (int, float)) else None,
        )
    )
    st.credits_committed += credits
    # Until the answer is recorded, the create may have been sent and charged.
    rec.state = JobState.IN_DOUBT
    rec.task_id = rec.error = rec.output = rec.sha256 = rec.bytes = rec.skip_reason = None
    rec.output_urls = ()


def _last(rec: JobRecord, kind: str, line: int | None) -> Attempt:
    if not rec.attempts:
        raise _bad(line, f"{kind!r} for job {rec.job!r} with no intent before it")
    return rec.attempts[-1]


def _set_outcome(st: RunState, attempt: Attempt, outcome: Outcome) -> None:
    # Keep the running total equal to the sum over charged attempts, whatever the order.
    st.credits_committed += attempt.credits * (
        (outcome in _CHARGED) - (attempt.outcome in _CHARGED)
    )
    attempt.outcome = outcome


def _running(
    st: RunState, rec: JobRecord, last: Attempt, ev: Mapping[str, Any], line: int | None
) -> None:
    _set_outcome(st, last, Outcome.CREATED)
    last.task_id = rec.task_id = str(_req(ev, "task_id", line))
    rec.state = JobState.RUNNING
    rec.error = None


def _created(
    st: RunState, rec: JobRecord, ev: Mapping[str, Any], ts: str, line: int | None
) -> None:
    last = _last(rec, "created", line)
    last.ended_ts = ts
    _running(st, rec, last, ev, line)
    rec.created_ts = ts


def _reconciled(
    st: RunState, rec: JobRecord, ev: Mapping[str, Any], ts: str, line: int | None
) -> None:
    # The create ended when its answer was lost; the task dates from the intent.
    last = _last(rec, "reconciled", line)
    _running(st, rec, last, ev, line)
    rec.created_ts = last.intent_ts


def _create_failed(
    st: RunState, rec: JobRecord, ev: Mapping[str, Any], ts: str, line: int | None
) -> None:
    last = _last(rec, "create_failed", line)
    last.ended_ts = ts
    _set_outcome(st, last, Outcome.REFUSED)
    rec.error = ev.get("error")
    rec.state = JobState.FAILED if ev.get("permanent") else JobState.PENDING


def _in_doubt(
    st: RunState, rec: JobRecord, ev: Mapping[str, Any], ts: str, line: int | None
) -> None:
    last = _last(rec, "in_doubt", line)
    last.ended_ts = ts
    _set_outcome(st, last, Outcome.IN_DOUBT)
    rec.error = ev.get("error")
    rec.state = JobState.IN_DOUBT


def _not_created(
    st: RunState, rec: JobRecord, ev: Mapping[str, Any], ts: str, line: int | None
) -> None:
    _set_outcome(st, _last(rec, "not_created", line), Outcome.NOT_CREATED)
    rec.error = None
    rec.state = JobState.PENDING


def _skipped(
    st: RunState, rec: JobRecord, ev: Mapping[str, Any], ts: str, line: int | None
) -> None:
    # A job with a create behind it is done, running, failed or in doubt: marking
    # it skipped would hide that money, and a later run would pay for it again.
    if rec.ever_sent:
        return
    rec.state = JobState.SKIPPED
    rec.skip_reason = ev.get("reason")


def _moved(st: RunState, rec: JobRecord, ev: Mapping[str, Any], ts: str, line: int | None) -> None:
    to = _req(ev, "to", line)
    if to.__class__ is not str or not to:
        raise _bad(line, f"'moved' for job {rec.job!r} needs a job name in 'to'")
    if to == rec.job:
        return
    target = st.jobs.get(to)
    if target is not None and target.ever_sent:
        raise _bad(line, f"'moved' from {rec.job!r} onto {to!r}, which has creates of its own")
    del st.jobs[rec.job]
    rec.job = to
    st.jobs[to] = rec
    st.moves[ev["job"]] = to
    st.marks.move(ev["job"], to)


def _current(rec: JobRecord, ev: Mapping[str, Any]) -> bool:
    # An answer about an older task of a resubmitted job keeps its money in the
    # attempts but does not change the job's current state.
    task_id = ev.get("task_id")
    return task_id is None or task_id == rec.task_id


def _completed(
    st: RunState, rec: JobRecord, ev: Mapping[str, Any], ts: str, line: int | None
) -> None:
    if _current(rec, ev):
        rec.state = JobState.COMPLETED
        rec.output_urls = tuple(ev.get("output_urls") or ())
        rec.finished_ts = ts


def _failed(st: RunState, rec: JobRecord, ev: Mapping[str, Any], ts: str, line: int | None) -> None:
    if _current(rec, ev):
        rec.state = JobState.FAILED
        rec.error = ev.get("error")
        rec.finished_ts = ts


def _downloaded(
    st: RunState, rec: JobRecord, ev: Mapping[str, Any], ts: str, line: int | None
) -> None:
    if _current(rec, ev):
        rec.state = JobState.DONE
        rec.output = str(_req(ev, "path", line))
        rec.bytes = int(_req(ev, "bytes", line))
        rec.sha256 = str(_req(ev, "sha256", line))
        rec.finished_ts = rec.finished_ts or ts
        rec.output_urls = ()  # temporary links, useless once the file is here


_JOB_EVENTS: dict[str, Callable[[RunState, JobRecord, Mapping[str, Any], str, int | None], None]]
_JOB_EVENTS = {
    "intent": _intent,
    "created": _created,
    "reconciled": _reconciled,
    "create_failed": _create_failed,
    "in_doubt": _in_doubt,
    "not_created": _not_created,
    "skipped": _skipped,
    "moved": _moved,
    "completed": _completed,
    "failed": _failed,
    "downloaded": _downloaded,
}


def _apply(st: RunState, ev: Mapping[str, Any], line: int | None) -> None:
    kind = ev.get("event")
    ts = ev.get("ts")
    handler = _JOB_EVENTS.get(kind) if isinstance(kind, str) else None
    if handler is not None and ts.__class__ is str:
        name = ev.get("job")
        if name.__class__ is not str:
            raise _bad(line, f"event {kind!r} needs a job name")
        rec = st.jobs.get(name)
        if rec is None:
            rec = st.jobs[name] = JobRecord(job=name)
        handler(st, rec, ev, ts, line)
        return
    if not isinstance(ts, str) or kind not in EVENTS:
        raise _bad(line, f"unknown or malformed event {kind!r}")
    if kind in MARK_EVENTS:
        st.marks.apply(ev)  # a malformed review line is ignored: it never blocks the money
    elif kind == "header":
        st.header = ev
    elif kind == "run_started":
        st.runs.append({"started": ts, "ended": None, "api_calls": 0, "exit_status": None})
        st.last_run = _run_settings(ev)
    elif st.runs:  # run_ended
        st.runs[-1].update(
            ended=ts, api_calls=ev.get("api_calls", 0), exit_status=ev.get("exit_status")
        )


def fold(events: Iterable[Mapping[str, Any]], *, first_line: int = 1) -> RunState:
    """Fold events (in ledger order) into the state of every job. Pure: no I/O.

    Raises ``LedgerError`` naming the line of the first event that breaks a rule.
    """
    st = RunState()
    n = 0
    for n, ev in enumerate(events, start=1):
        _apply(st, ev, first_line + n - 1)
    st.events = n
    return st


def apply_at(st: RunState, ev: Mapping[str, Any], line: int) -> None:
    """Apply one event read from ``line`` of a ledger (errors name the line)."""
    _apply(st, ev, line)


def apply(st: RunState, ev: Mapping[str, Any]) -> None:
    """Apply one more event to a folded state (the runner keeps its state current this way)."""
    _apply(st, ev, None)
    st.events += 1
