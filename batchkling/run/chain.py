"""Chained shots at run time: which take a chain starts from, its frame, and that frame's URL.

A chained shot (``image: {after: s01}``) is created only once the source shot's
chosen take is done: downloaded and verified. The chosen take is the picked one
when the review picked one, else the first done take in take order (rejected
takes are never chosen). Its last frame (the first, for ``before``) is
extracted at full resolution as PNG into ``<run-dir>/chained/`` and from then on
the shot is a local image like any other: its identity is the frame's sha256
(``Shot.image_sha256``), and it is uploaded the way local images are
(content-addressed, reused from ``uploads.jsonl``), so a resumed run that
extracts the same frame again sends the same request, and the write-ahead
intent of ``submit`` still decides alone whether a create is sent.

``choose_take`` is the rule, pure; ``extract_ready`` applies it before a run's
work is decided (frames of sources done in earlier runs, so fingerprints are
known before anything is compared with the ledger); ``Chainer`` resolves the
rest during the run, as the sources finish.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import anyio
import anyio.to_thread
import httpx

from batchkling.errors import StorageError
from batchkling.model import Job, JobState, Manifest, Shot
from batchkling.review.inbox import marks_with_inbox
from batchkling.review.marks import Marks
from batchkling.state import RunState
from batchkling.storage.prepare import Uploader, prepare_images
from batchkling.video.frames import FrameError, frame_png
from batchkling.video.store import video_intact

__all__ = [
    "CHAINED_DIR",
    "Chainer",
    "Source",
    "chain_reason",
    "choose_take",
    "extract_ready",
    "intact",
    "run_marks",
    "takes_by_shot",
]

CHAINED_DIR = "chained"  # under the run directory: the frames chained shots start or end on

_STILL_GOING = (JobState.RUNNING, JobState.COMPLETED, JobState.IN_DOUBT, JobState.DONE)
_WHY = {
    JobState.FAILED: "failed",
    JobState.SKIPPED: "was skipped",
    JobState.PENDING: "is not rendered in this run",
}


@dataclass(frozen=True)
class Source:
    """How a chain's source shot stands: ``ready`` (``key`` is done, its video here),
    ``wait`` (``key`` may still get there), or ``lost`` (no take can: ``why``)."""

    status: str
    key: str | None = None
    why: str | None = None


def takes_by_shot(jobs: Sequence[Job]) -> dict[str, list[str]]:
    """Each shot id with its job keys in take order."""
    out: dict[str, list[str]] = {}
    for job in jobs:
        out.setdefault(job.shot.id, []).append(job.key)
    return out


def choose_take(
    shot: str,
    takes: Sequence[str],
    state_of: Callable[[str], JobState],
    *,
    marks: Marks,
    present: Collection[str],
    alive: Collection[str] = (),
) -> Source:
    """Which take of ``shot`` a chain starts from, or why it waits or cannot.

    ``present``: done takes whose video is on disk and intact; ``alive``: takes this
    run still works on (they are waited for whatever their state now).
    """
    pick = marks.picks.get(shot)
    candidates = [pick] if pick is not None and pick in takes else []
    candidates = candidates or [k for k in takes if k not in marks.rejected]
    why = "has no take that is not rejected"
    for key in candidates:
        state = state_of(key)
        if key in alive:
            return Source("wait", key)
        if state is JobState.DONE and key in present:
            return Source("ready", key)
        if state in _STILL_GOING:
            return Source("wait", key)
        why = _WHY.get(state, str(state))
    return Source("lost", None, f"{shot} {why}")


def chain_reason(field: str, why: str | None) -> str:
    """Why a chained job is skipped: its source, and which of its frames the job takes."""
    frame = "starts on its last" if field == "image" else "ends on its first"
    return f"its source {why} (this shot {frame} frame)"


def intact(run_dir: Path, st: RunState, keys: Sequence[str]) -> set[str]:
    """The done jobs among ``keys`` whose video is on disk with the size recorded."""
    out: set[str] = set()
    for key in keys:
        rec = st.record(key)
        if rec.state is JobState.DONE and video_intact(run_dir, rec.output, rec.bytes):
            out.add(key)
    return out


def run_marks(run_dir: Path, st: RunState) -> Marks:
    """The review's marks in force: the ledger's, with the inbox not yet moved in."""
    return marks_with_inbox(run_dir, st.marks)


def _frame_file(run_dir: Path, shot: Shot, field: str, video: Path) -> tuple[str, str]:
    """Extract the frame a chained field takes; its ``file:`` URL and sha256. Blocking."""
    last = field == "image"
    try:
        data = frame_png(video, last=last)
    except FrameError as exc:
        raise StorageError(
            f"shot {shot.id}: {exc}", hint="Check the video, or render its shot again."
        ) from None
    sha = hashlib.sha256(data).hexdigest()
    folder = run_dir / CHAINED_DIR
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{shot.id}-{'start' if last else 'end'}-{sha[:16]}.png"
    if not path.is_file() or path.stat().st_size != len(data):
        partial = path.with_suffix(".part")
        partial.write_bytes(data)
        partial.replace(path)
    return path.absolute().as_uri(), sha


def with_frame(shot: Shot, field: str, url: str, sha: str) -> Shot:
    """``shot`` with one chained field become the local image of its frame."""
    if field == "image":
        return replace(shot, image=url, image_sha256=sha)
    return replace(shot, tail_image_url=url, tail_sha256=sha)


def extract_ready(
    manifest: Manifest,
    st: RunState,
    run_dir: Path,
    present: Collection[str],
    *,
    again: Collection[str] = (),
) -> Manifest:
    """``manifest`` with the frames of every chain whose source is ready extracted.

    Before a run's work is decided: a job chained on a take done in an earlier run
    then has its fingerprint (the frame's sha256), as when it was sent. A chain on a
    take in ``again`` (rendered again in this run) is left waiting for it. Blocking.
    """
    if not any(shot.waits_for for shot in manifest.shots):
        return manifest
    marks = run_marks(run_dir, st)
    takes = takes_by_shot(manifest.jobs)
    shots = []
    for shot in manifest.shots:
        for field, source in shot.waits_for:
            found = choose_take(
                source,
                takes.get(source, []),
                st.state_of,
                marks=marks,
                present=present,
                alive=again,
            )
            output = st.record(found.key).output if found.key is not None else None
            if found.status == "ready" and output is not None:
                url, sha = _frame_file(run_dir, shot, field, run_dir / output)
                shot = with_frame(shot, field, url, sha)
        shots.append(shot)
    return replace(manifest, shots=tuple(shots))


class Chainer:
    """Resolves chained jobs during a run: the frame extracted, uploaded, the job with its URL.

    One shot's frames are extracted and uploaded once, whatever its number of takes.
    """

    def __init__(
        self,
        manifest: Manifest,
        run_dir: Path,
        *,
        uploader: Uploader | None,
        http: httpx.AsyncClient | None,
    ) -> None:
        self._manifest = manifest
        self._run_dir = run_dir
        self._uploader = uploader
        self._http = http
        self._lock = anyio.Lock()
        self._resolved: dict[tuple[str, tuple[tuple[str, str], ...]], Shot] = {}
        self.takes = takes_by_shot(manifest.jobs)

    async def source(
        self, shot: str, state: Callable[[], RunState], finished: Mapping[str, anyio.Event]
    ) -> Source:
        """How ``shot`` stands once the take a chain would start from is over in this run.

        ``finished`` holds an event per job of the run's work, set once it is over.
        """
        takes = self.takes.get(shot, [])
        while True:
            st = state()
            going = {key for key, event in finished.items() if not event.is_set()}
            found = choose_take(
                shot,
                takes,
                st.state_of,
                marks=self.marks(st),
                present=intact(self._run_dir, st, takes),
                alive=going,
            )
            if found.status != "wait" or found.key not in going:
                return found
            await finished[found.key].wait()

    def marks(self, st: RunState) -> Marks:
        """The review's marks in force now (a pick made during the run counts)."""
        return run_marks(self._run_dir, st)

    async def resolve(self, job: Job, videos: Mapping[str, Path]) -> Job:
        """``job`` with each chained field (``videos``: field -> source video) as an uploaded frame.

        Raises ``StorageError`` when the frame cannot be extracted or uploaded.
        """
        memo = (job.shot.id, tuple(sorted((f, str(p)) for f, p in videos.items())))
        async with self._lock:
            shot = self._resolved.get(memo)
            if shot is None:
                shot = await self._resolve(job.shot, videos)
                self._resolved[memo] = shot
        return replace(job, shot=shot)

    async def _resolve(self, shot: Shot, videos: Mapping[str, Path]) -> Shot:
        for field, video in videos.items():
            url, sha = await anyio.to_thread.run_sync(
                _frame_file, self._run_dir, shot, field, video
            )
            shot = with_frame(shot, field, url, sha)
        # Only the frames are uploaded here: a field already given its URL stays as it is.
        fresh_image = shot.image.startswith("file:")
        fresh_tail = (shot.tail_image_url or "").startswith("file:")
        probe = replace(
            shot,
            image_sha256=shot.image_sha256 if fresh_image else None,
            tail_sha256=shot.tail_sha256 if fresh_tail else None,
        )
        alone = replace(self._manifest, shots=(probe,))
        uploaded, _ = await prepare_images(
            alone, self._uploader, run_dir=self._run_dir, http=self._http
        )
        got = uploaded.shots[0]
        if fresh_image:
            shot = replace(shot, image=got.image)
        if fresh_tail:
            shot = replace(shot, tail_image_url=got.tail_image_url)
        return shot
