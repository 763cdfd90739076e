"""Which takes go into a cut, and the file of each: the one rule every export shares.

A take is usable when the ledger says ``done`` and its video is still on disk
with the size the ledger recorded (the check ``report`` and a resumed run make;
the sha256 was checked when the file was written). The review decides among the
usable takes of a shot (``batchkling.review.marks.choose``): rejected takes
never, the picked take (``--takes picked``), the first (``first``) or all
(``all``). A shot left with no take keeps its place in the cut with its length
and the reason it has nothing to show, so an animatic's timing stays honest.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from batchkling.model import Job, JobState, Manifest, Shot
from batchkling.report.rows import intact_videos
from batchkling.review.marks import Marks, TakesMode, choose
from batchkling.state import RunState

__all__ = ["Cut", "CutShot", "Take", "cut_of"]


@dataclass(frozen=True)
class Take:
    """One chosen take: its job, its ledger record's fields, and its video (absolute)."""

    job: Job
    path: Path
    task_id: str | None
    state: str

    @property
    def key(self) -> str:
        return self.job.key


@dataclass(frozen=True)
class CutShot:
    """One shot of the cut, in manifest order: its chosen takes, or why it has none."""

    shot: Shot
    takes: tuple[Take, ...]
    missing: str | None = None  # why no take: "failed", "pending", "rejected", ...
    job_keys: tuple[str, ...] = ()


@dataclass(frozen=True)
class Cut:
    """Every shot of the manifest with the takes chosen for it."""

    shots: tuple[CutShot, ...]
    mode: TakesMode

    @property
    def takes(self) -> list[Take]:
        return [t for s in self.shots for t in s.takes]

    @property
    def missing(self) -> list[CutShot]:
        return [s for s in self.shots if not s.takes]


def cut_of(manifest: Manifest, st: RunState, marks: Marks, run_dir: Path, mode: TakesMode) -> Cut:
    """The cut of a run: each shot of ``manifest`` with its takes chosen by ``mode``."""
    intact = intact_videos(run_dir, st)
    by_shot: dict[str, list[Job]] = {}
    for job in manifest.jobs:
        by_shot.setdefault(job.shot.id, []).append(job)
    order = [(shot.id, [j.key for j in by_shot.get(shot.id, [])]) for shot in manifest.shots]
    picked = dict(choose(marks, order, intact.__contains__, mode))
    jobs = {j.key: j for j in manifest.jobs}
    out: list[CutShot] = []
    for shot in manifest.shots:
        keys = tuple(j.key for j in by_shot.get(shot.id, []))
        takes = tuple(_take(jobs[k], st, run_dir) for k in picked.get(shot.id, []))
        why = None if takes else _why_missing(keys, st, intact)
        out.append(CutShot(shot, takes, why, keys))
    return Cut(tuple(out), mode)


def _take(job: Job, st: RunState, run_dir: Path) -> Take:
    rec = st.record(job.key)
    assert rec.output is not None  # intact: done with a file
    return Take(job, (run_dir / rec.output).absolute(), rec.task_id, rec.state.value)


def _why_missing(keys: Sequence[str], st: RunState, intact: frozenset[str]) -> str:
    """A word or two for a shot with nothing to show: the state of its best take."""
    if not keys:
        return "no take"
    if any(k in intact for k in keys):
        return "rejected"
    states = [st.state_of(k) for k in keys]
    if any(s is JobState.DONE for s in states):
        return "video missing"
    for state in (JobState.RUNNING, JobState.COMPLETED, JobState.IN_DOUBT, JobState.PENDING):
        if state in states:
            return str(state.value).replace("_", " ")
    return str(states[0].value).replace("_", " ")
