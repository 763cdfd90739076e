"""What the served storyboard adds to the report page: links through the server, the
review controls, and the JSON of the run's current state that the page polls.

The page is the report's own (``batchkling.report.storyboard``) in a
``PageMode``: every file by a URL under ``/files/`` carrying the session token
(a ``<video>`` cannot send a header), and a script and style sheet kept beside
this module. The state document is pure: built from a ``Report`` and the marks,
with the takes of the cut chosen by the one rule exports use (``choose``).
"""

from __future__ import annotations

import os
import urllib.parse
from importlib import resources
from pathlib import Path
from typing import Any

from batchkling.model import JobState
from batchkling.report.build import Report
from batchkling.report.rows import JobRow
from batchkling.report.storyboard import PageMode
from batchkling.review.marks import Marks, TakesMode, choose, shot_of

__all__ = [
    "FILES_PREFIX",
    "TOKEN_HEADER",
    "TOKEN_PARAM",
    "card_signature",
    "file_url",
    "review_mode",
    "state_document",
]

# The query parameter the page's own URL and its file URLs carry the token in, and
# the header its script sends it in on API calls.
TOKEN_PARAM = "token"
TOKEN_HEADER = "X-Batchkling-Token"
FILES_PREFIX = "/files/"


def _asset(name: str) -> str:
    return resources.files("batchkling.review").joinpath(name).read_text(encoding="utf-8")


def file_url(path: str, run_dir: Path, token: str) -> str:
    """The URL the server gives the file ``path`` by; "" for one outside ``run_dir``."""
    root = os.path.abspath(run_dir)
    full = os.path.abspath(path)
    if os.path.commonpath([root, full]) != root or full == root:
        return ""
    rel = Path(os.path.relpath(full, root)).as_posix()
    query = urllib.parse.urlencode({TOKEN_PARAM: token})
    return f"{FILES_PREFIX}{urllib.parse.quote(rel, safe='/')}?{query}"


def review_mode(run_dir: Path, token: str) -> PageMode:
    """The storyboard as the review server serves it."""

    def href(path: str) -> str:
        return file_url(path, run_dir, token)

    return PageMode(href=href, style=_asset("review.css"), script=_asset("review.js"))


def card_signature(report: Report, row: JobRow) -> str:
    """What a take's card shows beside its marks: the page redraws a card when it changes.

    Marks are left out so that a mark made on a playing take does not restart its video.
    """
    parts = (
        row.state.value,
        row.task_id or "",
        row.output or "",
        str(row.key in report.videos),
        report.posters.get(row.key, ""),
        str(len(report.earlier_videos.get(row.key, ()))),
        report.video_warnings.get(row.key, ""),
        str(row.credits),
        row.error or "",
    )
    return "|".join(parts)


def _shots(report: Report) -> list[tuple[str, list[str]]]:
    """Each shot id with its takes' keys, in manifest order (ledger-only jobs after)."""
    order: dict[str, list[str]] = {}
    for row in report.rows:
        shot = row.job.shot.id if row.job is not None else shot_of(row.key)
        order.setdefault(shot, []).append(row.key)
    return list(order.items())


def state_document(report: Report, marks: Marks, mode: PageMode) -> dict[str, Any]:
    """The run as the page polls it: each take's state and marks, the counts, and the cut.

    The cut is one take a shot, in manifest order: the picked one, else the first
    done one, never a rejected one; a shot with none is left out.
    """
    done = {r.key: r for r in report.rows if r.state is JobState.DONE and r.key in report.videos}
    jobs = [
        {
            "job": r.key,
            "state": r.state.value,
            "sig": card_signature(report, r),
            "picked": bool(r.marks.get("picked")),
            "rejected": bool(r.marks.get("rejected")),
            "note": r.marks.get("note") or "",
        }
        for r in report.rows
    ]
    cut = []
    for shot, chosen in choose(marks, _shots(report), done.__contains__, TakesMode.PICKED):
        for key in chosen:
            output = done[key].output or ""
            cut.append({"shot": shot, "job": key, "src": mode.href(output)})
    return {"jobs": jobs, "counts": dict(report.totals.counts), "cut": cut}
