"""A run directory seen from the outside: where things live, and one row per job from the fold.

``status`` and every report build on ``job_rows``; nothing here talks to the network.
What is on disk beside the ledger (intact videos, posters, the earlier videos of a
job rendered again) is looked up by ``stat`` alone, never by reading a file.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from batchkling.model import Job, JobState
from batchkling.review.inbox import marks_with_inbox
from batchkling.review.marks import NO_MARKS
from batchkling.state import JobRecord, RunState
from batchkling.video.rules import VIDEOS_DIR, archive_stem, video_name
from batchkling.video.store import video_intact

__all__ = [
    "JobRow",
    "default_run_dir",
    "earlier_videos",
    "intact_videos",
    "job_rows",
    "posters",
    "state_counts",
    "write_status_json",
]


def default_run_dir(manifest_path: str | Path) -> Path:
    """``<manifest dir>/<manifest stem>.run/``."""
    path = Path(manifest_path).absolute()
    return path.parent / f"{path.stem}.run"


def intact_videos(run_dir: Path, st: RunState) -> frozenset[str]:
    """Done jobs whose video is still on disk with the size the ledger recorded.

    The sha256 was checked when the file was written; a size check on start is
    what a resume can afford for thousands of files and catches a truncated or
    deleted file.
    """
    return frozenset(
        key
        for key, rec in st.jobs.items()
        if rec.state is JobState.DONE and video_intact(run_dir, rec.output, rec.bytes)
    )


def posters(run_dir: Path, st: RunState, videos: frozenset[str]) -> dict[str, str]:
    """Job -> absolute path of the poster of its video (``videos/<job>.jpg``), where one exists.

    Only for ``videos``, the jobs whose video is intact: a poster is the first
    frame of the video beside it, written when the video was downloaded.
    """
    out: dict[str, str] = {}
    for key in videos:
        output = st.record(key).output
        if output is None:
            continue
        poster = (run_dir / output).with_suffix(".jpg")
        if poster.is_file():
            out[key] = str(poster.absolute())
    return out


def earlier_videos(run_dir: Path, st: RunState) -> dict[str, tuple[str, ...]]:
    """Job -> absolute paths of the videos of its earlier tasks still on disk, oldest first.

    A job rendered again keeps each video it replaced as ``videos/<job>.<task>.mp4``;
    while its new task is not downloaded yet, ``videos/<job>.mp4`` is an earlier
    video too.
    """
    folder = run_dir.absolute() / VIDEOS_DIR
    out: dict[str, tuple[str, ...]] = {}
    for key, rec in st.jobs.items():
        current = rec.task_id if rec.state is JobState.DONE else None
        found: list[str] = []
        for attempt in rec.attempts:
            task = attempt.task_id
            if task is None or task == current:
                continue
            path = folder / f"{archive_stem(key, task)}.mp4"
            if str(path) not in found and path.is_file():
                found.append(str(path))
        latest = folder / video_name(key)
        rendered_before = any(a.task_id for a in rec.attempts[:-1])
        if rec.state is not JobState.DONE and rendered_before and latest.is_file():
            found.append(str(latest))
        if found:
            out[key] = tuple(found)
    return out


@dataclass(frozen=True)
class JobRow:
    """One job as a status line or a report card sees it.

    ``key`` is the job's key (``<shot id>`` or ``<shot id>#<take>``); ``job`` is the
    manifest's job of that key, None for a job only the ledger knows.
    """

    key: str
    state: JobState
    task_id: str | None
    credits: int
    output: str | None
    error: str | None
    sha256: str | None
    bytes: int | None
    job: Job | None
    record: JobRecord
    # The review of this take: ``picked`` (bool), ``rejected`` (bool), ``note`` (str | None).
    marks: Mapping[str, Any] = field(default_factory=lambda: NO_MARKS)

    def as_json(self) -> dict[str, Any]:
        """The job's entry of the ``status --json`` document."""
        return {
            "job": self.key,
            "state": self.state.value,
            "task_id": self.task_id,
            "credits": self.credits,
            "output": self.output,
            "error": self.error,
            "picked": bool(self.marks.get("picked")),
            "rejected": bool(self.marks.get("rejected")),
            "note": self.marks.get("note"),
        }


def job_rows(jobs: Sequence[Job] | None, st: RunState, run_dir: Path) -> list[JobRow]:
    """One row per job: the manifest's jobs in order, then any the ledger knows beyond them."""
    rows: list[JobRow] = []
    seen: set[str] = set()
    base = run_dir.absolute()
    marks = marks_with_inbox(run_dir, st.marks)  # a mark still in the inbox shows at once

    def row(key: str, job: Job | None) -> JobRow:
        rec = st.record(key)
        output = str(base / rec.output) if rec.state is JobState.DONE and rec.output else None
        return JobRow(
            key=key,
            state=rec.state,
            task_id=rec.task_id,
            credits=rec.credits,
            output=output,
            error=rec.error,
            sha256=rec.sha256,
            bytes=rec.bytes,
            job=job,
            record=rec,
            marks=marks.of(key),
        )

    for job in jobs or ():
        rows.append(row(job.key, job))
        seen.add(job.key)
    rows.extend(row(key, None) for key in st.jobs if key not in seen)
    return rows


def state_counts(rows: Sequence[JobRow]) -> dict[str, int]:
    """Jobs per state, every state present (zero included), in the states' order."""
    counts = Counter(r.state.value for r in rows)
    return {s.value: counts.get(s.value, 0) for s in JobState}


def write_status_json(
    rows: Sequence[JobRow], st: RunState, out: TextIO, *, audit: object = None
) -> None:
    """Write the ``status --json`` document one job at a time (a 100,000-job run stays small).

    ``audit``: the last audit's verdict (``audit.json``), shown as ``"audit"`` when given.
    """
    out.write('{"jobs": [')
    for i, row in enumerate(rows):
        out.write(",\n  " if i else "\n  ")
        out.write(json.dumps(row.as_json()))
    out.write("\n],\n")
    out.write(f' "counts": {json.dumps(state_counts(rows))},\n')
    if audit is not None:
        out.write(f' "audit": {json.dumps(audit, ensure_ascii=False)},\n')
    out.write(f' "credits_committed": {st.credits_committed}}}\n')
