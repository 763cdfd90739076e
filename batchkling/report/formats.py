"""The JSON and CSV texts of a report, written to a stream one job at a time. Pure.

``write_json`` writes exactly what ``json.dumps(report_json(report), indent=2)``
would, without building that document: the header at once, then each shot and
each job as it comes, so that the report of 100,000 jobs is never one value in
memory.

Each job carries its review last: ``picked`` and ``rejected`` (booleans, ``true``
or ``false`` in CSV) and ``note`` (the text, or null; an empty CSV cell).

CSV cells that a spreadsheet would read as a formula (text starting with ``=``,
``+``, ``-``, ``@``, a tab or a carriage return) get a leading ``'``. Only text
cells are neutralised: numeric columns are written from Python numbers, which
cannot carry a formula, so a number stays a number.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Iterator
from typing import Any, TextIO

from batchkling._util import whole_number
from batchkling.model import JobState
from batchkling.report.build import Report
from batchkling.report.rows import JobRow

__all__ = [
    "CSV_COLUMNS",
    "REPORT_FORMAT",
    "neutralise_cell",
    "render_csv",
    "render_json",
    "report_json",
    "row_fields",
    "write_csv",
    "write_json",
]

REPORT_FORMAT = 1

# Manifest fields first (as the shot declared them), then what the ledger says, then
# the review of the take.
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
    "credits_lost",
    "shot_credits",
    "shot_credits_lost",
    "picked",
    "rejected",
    "note",
)

# OWASP's list: the four formula starters plus tab and CR, which some
# spreadsheets strip before looking for them.
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def row_fields(row: JobRow, report: Report | None = None) -> dict[str, Any]:
    """One job as a JSON object keyed by ``CSV_COLUMNS``; manifest fields are None if unknown.

    The credits lost and the shot's credits come from ``report`` (zero and None without it).
    """
    job = row.job
    shot = job.shot if job is not None else None
    lost = report.credits_lost.get(row.key, 0) if report is not None else 0
    per_shot = report.shot_credits.get(shot.id) if report is not None and shot else None
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
        "credits_lost": lost,
        "shot_credits": per_shot.spent if per_shot else None,
        "shot_credits_lost": per_shot.lost if per_shot else None,
        "picked": bool(row.marks.get("picked")),
        "rejected": bool(row.marks.get("rejected")),
        "note": row.marks.get("note"),
    }


def _head_json(report: Report) -> dict[str, Any]:
    """The JSON report without its two long lists, ``shots`` and ``jobs``."""
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
            "credits_lost": t.credits_lost,
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
    }


def _shots_json(report: Report) -> Iterator[dict[str, Any]]:
    for shot, c in report.shot_credits.items():
        yield {"shot": shot, "jobs": c.jobs, "credits": c.spent, "credits_lost": c.lost}


def _jobs_json(report: Report) -> Iterator[dict[str, Any]]:
    for row in report.rows:
        yield row_fields(row, report)


def report_json(report: Report) -> dict[str, Any]:
    """The JSON report, as described by ``schemas/report.schema.json``."""
    return {
        **_head_json(report),
        "shots": list(_shots_json(report)),
        "jobs": list(_jobs_json(report)),
    }


def _dump(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False)


def _write_list(out: TextIO, key: str, items: Iterable[dict[str, Any]]) -> None:
    """``,\n  "key": [...]`` laid out as ``json.dumps(indent=2)`` lays out a top-level list."""
    out.write(f",\n  {_dump(key)}: [")
    first = True
    for item in items:
        # A JSON text holds no raw newline inside a string: every newline is layout.
        out.write(("\n    " if first else ",\n    ") + _dump(item).replace("\n", "\n    "))
        first = False
    out.write("]" if first else "\n  ]")


def write_json(report: Report, out: TextIO) -> None:
    """Write the JSON report to ``out`` one job at a time, as ``render_json`` would."""
    head = _dump(_head_json(report))
    out.write(head[: -len("\n}")])
    _write_list(out, "shots", _shots_json(report))
    _write_list(out, "jobs", _jobs_json(report))
    out.write("\n}\n")


def render_json(report: Report) -> str:
    """The JSON report as text, ending with a newline."""
    buf = io.StringIO()
    write_json(report, buf)
    return buf.getvalue()


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


def write_csv(report: Report, out: TextIO) -> None:
    """One header line and one line per job (RFC 4180, CRLF line ends), written as they come.

    ``out`` must not translate line ends (a file opened with ``newline=""``).
    """
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    for row in report.rows:
        fields = row_fields(row, report)
        writer.writerow([_cell(fields[c]) for c in CSV_COLUMNS])


def render_csv(report: Report) -> str:
    """The CSV report as text."""
    buf = io.StringIO()
    write_csv(report, buf)
    return buf.getvalue()
