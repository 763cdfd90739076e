"""Reports of a run: one row per job plus the runs and totals, gathered. Pure: no I/O.

The shell (``batchkling report``) reads and folds the ledger (keeping a
``LedgerDigest`` of what the fold does not hold), looks on disk for the local
copies of images and for downloaded videos, and hands what it found to
``build_report``; the renderers only turn that value into text, written to a
stream piece by piece, so that a 100,000-job report is never one string in
memory: ``batchkling.report.formats`` (JSON, CSV) and
``batchkling.report.storyboard`` (the HTML page).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from batchkling.model import JobState
from batchkling.report.digest import LedgerDigest, credits_lost, digest_of, parse_ts
from batchkling.report.rows import JobRow, state_counts
from batchkling.state import RunState
from batchkling.video.rules import duration_warning

__all__ = [
    "EXIT_INTERRUPTED",
    "FORMATS",
    "Report",
    "RunSpan",
    "ShotCredits",
    "Totals",
    "build_report",
    "last_budget",
    "run_spans",
    "shot_credits",
    "video_warnings",
]

FORMATS = ("html", "csv", "json")
# The exit status of a run stopped by Ctrl-C or a termination signal (as ``run`` exits).
EXIT_INTERRUPTED = 130


@dataclass(frozen=True)
class RunSpan:
    """One run of ``batchkling run`` as the ledger saw it.

    ``ended`` is None when the ledger has no ``run_ended`` for it (the process was
    killed, or is still running); its span is then measured up to ``until``, the
    latest event written before the next run started, and its API calls are unknown.
    """

    started: str
    ended: str | None
    until: str
    seconds: float
    api_calls: int | None
    exit_status: int | None

    @property
    def interrupted(self) -> bool:
        """True when the run was stopped: it ended with exit status 130 (Ctrl-C, a
        termination signal), or the ledger has no ``run_ended`` for it (killed, or
        still running)."""
        return self.ended is None or self.exit_status == EXIT_INTERRUPTED


@dataclass(frozen=True, slots=True)
class ShotCredits:
    """The credits of one shot over all its takes: spent (every create that may have been
    charged, failed and in-doubt takes included) and lost (in doubt, or a failed task)."""

    jobs: int = 0
    spent: int = 0
    lost: int = 0


@dataclass(frozen=True)
class Totals:
    """The header of a report."""

    jobs: int
    counts: Mapping[str, int]
    credits_committed: int
    credits_planned: int
    credits_lost: int
    budget: int | None
    runs: int
    interrupted_runs: int
    wall_seconds: float
    api_calls: int


@dataclass(frozen=True)
class Report:
    """Everything a report shows, gathered by the shell; renderers only read it."""

    title: str
    generated: str
    run_dir: str
    rows: tuple[JobRow, ...]
    runs: tuple[RunSpan, ...]
    totals: Totals
    manifest_path: str | None = None
    manifest_sha256: str | None = None
    # Original image URL -> absolute path of the copy pre-flight kept of it.
    image_copies: Mapping[str, str] = field(default_factory=dict)
    # A local image's file: URL -> the URL of its object in the store it was uploaded to.
    image_links: Mapping[str, str] = field(default_factory=dict)
    # Done jobs whose downloaded video is on disk, intact.
    videos: frozenset[str] = frozenset()
    # Job -> absolute path of its video's poster (the video's first frame).
    posters: Mapping[str, str] = field(default_factory=dict)
    # Job -> absolute paths of the videos of its earlier tasks, kept when it was rendered again.
    earlier_videos: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    # Job -> what is wrong with its video although it is done (its length, say).
    video_warnings: Mapping[str, str] = field(default_factory=dict)
    # Job -> credits lost (in doubt, or a task that failed); jobs that lost none are absent.
    credits_lost: Mapping[str, int] = field(default_factory=dict)
    # Shot id -> its credits over all its takes, for the shots of the manifest.
    shot_credits: Mapping[str, ShotCredits] = field(default_factory=dict)


def run_spans(runs: Sequence[Mapping[str, Any]], run_lasts: Sequence[str]) -> list[RunSpan]:
    """The runs of ``RunState.runs`` with their wall time.

    ``run_lasts`` are the digest's latest event time of each run
    (``LedgerDigest.run_lasts``): a run without ``run_ended`` is measured up to it.
    """
    spans: list[RunSpan] = []
    for i, run in enumerate(runs):
        started = str(run["started"])
        start = parse_ts(started)
        ended = run.get("ended")
        until = started
        if isinstance(ended, str):
            until = ended
        elif start is not None and i < len(run_lasts):
            until = run_lasts[i]
        stop = parse_ts(until)
        seconds = (stop - start).total_seconds() if start and stop else 0.0
        calls = run.get("api_calls")
        exit_status = run.get("exit_status")
        spans.append(
            RunSpan(
                started=started,
                ended=ended if isinstance(ended, str) else None,
                until=until,
                seconds=max(0.0, seconds),
                api_calls=int(calls) if isinstance(ended, str) and isinstance(calls, int) else None,
                exit_status=exit_status if isinstance(exit_status, int) else None,
            )
        )
    return spans


def last_budget(events: Iterable[Mapping[str, Any]]) -> int | None:
    """The budget the most recent run was started with, as its ``run_started`` recorded it."""
    return digest_of(events).budget


def video_warnings(rows: Sequence[JobRow], lengths: Mapping[str, float]) -> dict[str, str]:
    """Job -> warning, for each done job whose video's length is over a second off the ask.

    ``lengths`` maps a task to the length its ``downloaded`` event recorded
    (``LedgerDigest.lengths``); what was asked is the duration of the create that
    made the task (its ``intent``), else the manifest's.
    """
    out: dict[str, str] = {}
    for row in rows:
        length = lengths.get(row.task_id) if row.task_id is not None else None
        if row.state is not JobState.DONE or length is None:
            continue
        asked = next((a.duration for a in row.record.attempts if a.task_id == row.task_id), None)
        if asked is None and row.job is not None:
            asked = row.job.shot.duration
        warning = duration_warning(row.key, length, asked)
        if warning is not None:
            out[row.key] = warning
    return out


def shot_credits(rows: Iterable[JobRow], lost: Mapping[str, int]) -> dict[str, ShotCredits]:
    """Shot id -> credits spent and lost over its takes, for the rows the manifest knows."""
    out: dict[str, ShotCredits] = {}
    for row in rows:
        if row.job is None:
            continue
        shot = row.job.shot.id
        was = out.get(shot, ShotCredits())
        out[shot] = ShotCredits(
            jobs=was.jobs + 1, spent=was.spent + row.credits, lost=was.lost + lost.get(row.key, 0)
        )
    return out


def build_report(
    rows: Sequence[JobRow],
    st: RunState,
    *,
    digest: LedgerDigest | None = None,
    title: str,
    generated: str,
    run_dir: str,
    budget: int | None = None,
    manifest_path: str | None = None,
    manifest_sha256: str | None = None,
    image_copies: Mapping[str, str] | None = None,
    videos: frozenset[str] = frozenset(),
    posters: Mapping[str, str] | None = None,
    earlier_videos: Mapping[str, tuple[str, ...]] | None = None,
) -> Report:
    """Gather rows, runs and totals into one ``Report``.

    ``digest`` (kept as the ledger folded into ``st`` was read) gives the runs'
    times, the videos' lengths and the tasks that failed; without it, none are known.
    """
    digest = digest if digest is not None else LedgerDigest()
    spans = run_spans(st.runs, digest.run_lasts)
    lost = {r.key: n for r in rows if (n := credits_lost(r.record, digest.failed_tasks))}
    totals = Totals(
        jobs=len(rows),
        counts=state_counts(rows),
        credits_committed=st.credits_committed,
        credits_planned=sum(r.job.credits for r in rows if r.job is not None),
        credits_lost=sum(lost.values()),
        budget=budget,
        runs=len(spans),
        interrupted_runs=sum(1 for s in spans if s.interrupted),
        wall_seconds=sum(s.seconds for s in spans),
        api_calls=sum(s.api_calls or 0 for s in spans),
    )
    return Report(
        title=title,
        generated=generated,
        run_dir=run_dir,
        rows=tuple(rows),
        runs=tuple(spans),
        totals=totals,
        manifest_path=manifest_path,
        manifest_sha256=manifest_sha256,
        image_copies=dict(image_copies or {}),
        videos=videos,
        posters=dict(posters or {}),
        earlier_videos=dict(earlier_videos or {}),
        video_warnings=video_warnings(rows, digest.lengths),
        credits_lost=lost,
        shot_credits=shot_credits(rows, lost),
    )
