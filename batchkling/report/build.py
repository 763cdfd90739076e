"""Reports of a run: one row per job plus totals, as CSV, JSON or HTML. Pure: no I/O.

The shell (``batchkling report``) reads and folds the ledger, looks on disk for
the local copies of images and for downloaded videos, and hands what it found
to ``build_report``; the renderers only turn that value into text. The HTML
storyboard lives in ``batchkling.report.storyboard``.

CSV cells that a spreadsheet would read as a formula (text starting with ``=``,
``+``, ``-``, ``@``, a tab or a carriage return) get a leading ``'``. Only text
cells are neutralised: numeric columns are written from Python numbers, which
cannot carry a formula, so a number stays a number.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from batchkling._time import parse_rfc3339
from batchkling._util import whole_number
from batchkling.model import JobState
from batchkling.report.rows import JobRow, state_counts
from batchkling.state import RunState
from batchkling.video.rules import duration_warning

__all__ = [
    "CSV_COLUMNS",
    "FORMATS",
    "REPORT_FORMAT",
    "Report",
    "RunSpan",
    "Totals",
    "build_report",
    "last_budget",
    "neutralise_cell",
    "render_csv",
    "render_json",
    "report_json",
    "row_fields",
    "run_spans",
    "video_warnings",
]

REPORT_FORMAT = 1
FORMATS = ("html", "csv", "json")

# Manifest fields first (as the shot declared them), then what the ledger says.
CSV_COLUMNS = (
    "job",
    "shot",
    "take",
    "prompt",
    "image",
    "tail_image_url",
    "duration",
    "multi_shot",
    "model_mode",
    "takes",
    "tags",
    "line",
    "state",
    "task_id",
    "credits",
    "output",
    "bytes",
    "sha256",
    "error",
    "skip_reason",
)

# OWASP's list: the four formula starters plus tab and CR, which some
# spreadsheets strip before looking for them.
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


@dataclass(frozen=True)
class RunSpan:
    """One run of ``batchkling run`` as the ledger saw it.

    ``ended`` is None when the ledger has no ``run_ended`` for it (the process was
    killed, or is still running); its span is then measured up to ``until``, the
    last event written before the next run started, and its API calls are unknown.
    """

    started: str
    ended: str | None
    until: str
    seconds: float
    api_calls: int | None
    exit_status: int | None

    @property
    def interrupted(self) -> bool:
        """True when the run has no ``run_ended``: killed, or still running."""
        return self.ended is None


@dataclass(frozen=True)
class Totals:
    """The header of a report."""

    jobs: int
    counts: Mapping[str, int]
    credits_committed: int
    credits_planned: int
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
    # Done jobs whose downloaded video is on disk, intact.
    videos: frozenset[str] = frozenset()
    # Job -> absolute path of its video's poster (the video's first frame).
    posters: Mapping[str, str] = field(default_factory=dict)
    # Job -> absolute paths of the videos of its earlier tasks, kept when it was rendered again.
    earlier_videos: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    # Job -> what is wrong with its video although it is done (its length, say).
    video_warnings: Mapping[str, str] = field(default_factory=dict)


def _parse_ts(text: Any) -> datetime | None:
    # A ledger edited by hand may hold anything: a time that cannot be read is left out.
    if not isinstance(text, str):
        return None
    try:
        return parse_rfc3339(text)
    except ValueError:
        return None


def run_spans(runs: Sequence[Mapping[str, Any]], event_times: Sequence[str]) -> list[RunSpan]:
    """The runs of ``RunState.runs`` with their wall time.

    ``event_times`` are the ``ts`` of every ledger event; a run without
    ``run_ended`` is measured up to the latest of them before the next run started.
    """
    times = [(t, x) for x in event_times if (t := _parse_ts(x)) is not None]
    spans: list[RunSpan] = []
    for i, run in enumerate(runs):
        started = str(run["started"])
        start = _parse_ts(started)
        ended = run.get("ended")
        until = started
        if isinstance(ended, str):
            until = ended
        elif start is not None:
            nxt = _parse_ts(runs[i + 1]["started"]) if i + 1 < len(runs) else None
            inside = [(t, x) for t, x in times if t >= start and (nxt is None or t < nxt)]
            if inside:
                until = max(inside)[1]
        stop = _parse_ts(until)
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


def last_budget(events: Sequence[Mapping[str, Any]]) -> int | None:
    """The budget the most recent run was started with, as its ``run_started`` recorded it."""
    for ev in reversed(events):
        if ev.get("event") == "run_started":
            budget = ev.get("budget")
            return budget if isinstance(budget, int) and not isinstance(budget, bool) else None
    return None


def _number_or_none(value: Any) -> float | None:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    return None


def video_warnings(rows: Sequence[JobRow], events: Sequence[Mapping[str, Any]]) -> dict[str, str]:
    """Job -> warning, for each done job whose video's length is over a second off the ask.

    The length is the one the ``downloaded`` event recorded; what was asked is
    the duration of the create that made the task (its ``intent``), else the
    manifest's.
    """
    lengths: dict[str, float] = {}
    for ev in events:
        length = _number_or_none(ev.get("duration"))
        task = ev.get("task_id")
        if ev.get("event") == "downloaded" and isinstance(task, str) and length is not None:
            lengths[task] = length
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


def build_report(
    rows: Sequence[JobRow],
    st: RunState,
    *,
    events: Sequence[Mapping[str, Any]],
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

    ``events`` give the runs' times and the videos' lengths.
    """
    spans = run_spans(st.runs, [str(ev.get("ts")) for ev in events])
    totals = Totals(
        jobs=len(rows),
        counts=state_counts(rows),
        credits_committed=st.credits_committed,
        credits_planned=sum(r.job.credits for r in rows if r.job is not None),
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
        video_warnings=video_warnings(rows, events),
    )


def row_fields(row: JobRow) -> dict[str, Any]:
    """One job as a JSON object keyed by ``CSV_COLUMNS``; manifest fields are None if unknown."""
    job = row.job
    shot = job.shot if job is not None else None
    return {
        "job": row.key,
        "shot": shot.id if shot else None,
        "take": job.take if job else None,
        "prompt": shot.prompt if shot else None,
        "image": shot.image if shot else None,
        "tail_image_url": shot.tail_image_url if shot else None,
        "duration": whole_number(shot.duration) if shot else None,
        "multi_shot": shot.multi_shot if shot else None,
        "model_mode": shot.model_mode if shot else None,
        "takes": shot.takes if shot else None,
        "tags": list(shot.tags) if shot else [],
        "line": shot.line if shot else None,
        "state": row.state.value,
        "task_id": row.task_id,
        "credits": row.credits,
        "output": row.output,
        "bytes": row.bytes if row.output else None,
        "sha256": row.sha256 if row.output else None,
        "error": row.error,
        "skip_reason": row.record.skip_reason if row.state is JobState.SKIPPED else None,
    }


def report_json(report: Report) -> dict[str, Any]:
    """The JSON report, as described by ``schemas/report.schema.json``."""
    t = report.totals
    return {
        "format": REPORT_FORMAT,
        "title": report.title,
        "generated": report.generated,
        "run_dir": report.run_dir,
        "manifest": (
            None
            if report.manifest_path is None
            else {"path": report.manifest_path, "sha256": report.manifest_sha256}
        ),
        "totals": {
            "jobs": t.jobs,
            "counts": dict(t.counts),
            "credits_committed": t.credits_committed,
            "credits_planned": t.credits_planned,
            "budget": t.budget,
            "runs": t.runs,
            "interrupted_runs": t.interrupted_runs,
            "wall_seconds": round(t.wall_seconds, 3),
            "api_calls": t.api_calls,
        },
        "runs": [
            {
                "started": s.started,
                "ended": s.ended,
                "until": s.until,
                "seconds": round(s.seconds, 3),
                "api_calls": s.api_calls,
                "exit_status": s.exit_status,
                "interrupted": s.interrupted,
            }
            for s in report.runs
        ],
        "jobs": [row_fields(r) for r in report.rows],
    }


def render_json(report: Report) -> str:
    """The JSON report as text, ending with a newline."""
    return json.dumps(report_json(report), indent=2, ensure_ascii=False) + "\n"


def neutralise_cell(text: str) -> str:
    """``text`` made safe for a spreadsheet: a leading ``'`` if it could start a formula."""
    return "'" + text if text.startswith(_FORMULA_STARTS) else text


def _cell(value: Any) -> str | int | float:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return value
    if isinstance(value, list):
        value = ";".join(str(v) for v in value)
    return neutralise_cell(str(value))


def render_csv(report: Report) -> str:
    """One header line and one line per job (RFC 4180, CRLF line ends)."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    for row in report.rows:
        fields = row_fields(row)
        writer.writerow([_cell(fields[c]) for c in CSV_COLUMNS])
    return buf.getvalue()
