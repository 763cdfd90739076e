"""Run directories in every job state, written event by event through the real ledger.

``every_state_run`` builds a manifest and a ledger whose fold holds each of the
seven states, with the emulator's sample clip as the downloaded videos and
small PNG frames where pre-flight keeps its local copies of images.
"""

from __future__ import annotations

import hashlib
import json
import textwrap
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

from batchkling.emulator.assets import sample_video
from batchkling.emulator.frames import render_frame
from batchkling.ledger import Ledger
from batchkling.manifest.load import load_manifest
from batchkling.model import Job, Manifest
from batchkling.preflight.image_fetch import COPIES_DIR
from batchkling.preflight.image_rules import copy_name

__all__ = [
    "EVIL_ERROR",
    "EVIL_PROMPT",
    "EVIL_TAG",
    "FORMULA_PROMPT",
    "IMAGE_HOST",
    "IN_DOUBT_ERROR",
    "SKIP_REASON",
    "START",
    "RunDir",
    "StepClock",
    "every_state_run",
    "not_downloaded_run",
]

IMAGE_HOST = "https://img.invalid/frames/"
EVIL_PROMPT = "<script>alert(1)</script> then the \"hero\" & 'friend' leave"
EVIL_TAG = "<b onmouseover=alert(3)>x</b>"
EVIL_ERROR = "<img src=x onerror=alert(2)> the model refused the image"
FORMULA_PROMPT = '=HYPERLINK("http://evil.invalid","click")'
IN_DOUBT_ERROR = "read timeout after 30 s: the create may have been charged"
SKIP_REASON = "the budget of 7500 credits does not cover this job"

MANIFEST = textwrap.dedent(
    f"""\
    version: 1
    name: every-state
    budget: 7500
    image_base_url: {IMAGE_HOST}
    shots:
      - id: opening
        prompt: The camera glides over the waves toward the lighthouse
        image: opening.png
        tail_image_url: opening-end.png
        tags: [act1, hero]
      - id: inject
        prompt: {json.dumps(EVIL_PROMPT)}
        image: inject.png
        tags: [{json.dumps(EVIL_TAG)}]
      - id: takes
        prompt: '@SUM(1,2) the keeper climbs the stairs'
        image: takes.png
        takes: 2
        model_mode: pro
        duration: 3
        tags: [act1]
      - id: waiting
        prompt: {json.dumps(FORMULA_PROMPT)}
        image: waiting.png
        tags: [act2]
      - id: doubt
        prompt: '-1 the lamp flickers'
        image: doubt.png
      - id: finished
        prompt: '+ the storm arrives'
        image: finished.png
        duration: 10
      - id: over
        prompt: The ship sinks below the horizon
        image: over.png
        tags: [act2]
    """
)


class StepClock:
    """A ledger clock: each call one step later than the one before, from a fixed start."""

    def __init__(self, start: datetime, step: float = 1.0) -> None:
        self.now = start
        self.step = timedelta(seconds=step)

    def jump(self, to: datetime) -> None:
        self.now = to

    def __call__(self) -> str:
        value = self.now
        self.now += self.step
        return value.isoformat(timespec="microseconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class RunDir:
    """A manifest, its run directory and the job of each state."""

    manifest_path: Path
    run_dir: Path
    manifest: Manifest

    def job(self, key: str) -> Job:
        return next(j for j in self.manifest.jobs if j.key == key)


START = datetime(2026, 11, 24, 10, 0, 0, tzinfo=timezone.utc)


def _done(ledger: Ledger, job: Job, task: str, video: bytes | None) -> None:
    ledger.append_sync(
        "completed", job.key, task_id=task, output_urls=[f"https://x.invalid/{task}"]
    )
    rel = f"videos/{job.key}.mp4"
    data = video if video is not None else sample_video()
    if video is not None:
        target = ledger.run_dir / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(video)
    ledger.append_sync(
        "downloaded",
        job.key,
        task_id=task,
        path=rel,
        bytes=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
    )


def _send(ledger: Ledger, job: Job) -> None:
    ledger.append_sync("intent", job.key, credits=job.credits, fingerprint=job.fingerprint)


def every_state_run(
    root: Path,
    *,
    videos: bool = True,
    copies: bool = True,
) -> RunDir:
    """Write the manifest and a two-run ledger (the second killed) under ``root``.

    States: opening done, inject failed, takes#1 done, takes#2 running, waiting
    pending, doubt in doubt, finished completed, over skipped. Without ``videos``
    the ledger still says done but ``videos/`` is empty; without ``copies`` no
    local image copies exist.
    """
    manifest_path = root / "every-state.yaml"
    manifest_path.write_text(MANIFEST, encoding="utf-8")
    manifest = load_manifest(manifest_path)
    run_dir = root / "every-state.run"
    run = RunDir(manifest_path, run_dir, manifest)
    step = StepClock(START)
    video = sample_video() if videos else None

    with Ledger.open(run_dir, now=step) as ledger:
        ledger.append_sync(
            "header",
            None,
            version="0.1.0",
            format=1,
            manifest=str(manifest_path.absolute()),
            manifest_sha256=manifest.sha256,
        )
        # Run 1: 10:00:01 .. 10:01:30, ended normally.
        ledger.append_sync("run_started", None, pid=1, budget=7500, manifest_sha256=manifest.sha256)
        for key, task in (("opening", "task-opening"), ("takes#1", "task-takes-1")):
            job = run.job(key)
            _send(ledger, job)
            ledger.append_sync("created", key, task_id=task)
            _done(ledger, job, task, video)
        _send(ledger, run.job("inject"))
        ledger.append_sync("created", "inject", task_id="task-<inject>")
        ledger.append_sync("failed", "inject", task_id="task-<inject>", error=EVIL_ERROR)
        ledger.append_sync("skipped", "over", reason=SKIP_REASON)
        step.jump(START + timedelta(seconds=90))
        ledger.append_sync("run_ended", None, exit_status=1, api_calls=40)
        # Run 2: 10:05:00 .., killed after its last event at 10:05:05.
        step.jump(START + timedelta(minutes=5))
        ledger.append_sync("run_started", None, pid=2, budget=7500, manifest_sha256=manifest.sha256)
        _send(ledger, run.job("takes#2"))
        ledger.append_sync("created", "takes#2", task_id="task-takes-2")
        _send(ledger, run.job("doubt"))
        ledger.append_sync("in_doubt", "doubt", error=IN_DOUBT_ERROR)
        _send(ledger, run.job("finished"))
        ledger.append_sync("created", "finished", task_id="task-finished")
        ledger.append_sync(
            "completed", "finished", task_id="task-finished", output_urls=["https://x.invalid/f"]
        )

    if copies:
        folder = run_dir / COPIES_DIR
        folder.mkdir(parents=True, exist_ok=True)
        for shot in manifest.shots:
            for url in (shot.image, shot.tail_image_url):
                if url is not None:
                    name = url.rsplit("/", 1)[1].removesuffix(".png")
                    (folder / copy_name(url, "png")).write_bytes(render_frame(name, 320, 180))
    return run


SMALL_MANIFEST = textwrap.dedent(
    f"""\
    version: 1
    name: not-downloaded
    image_base_url: {IMAGE_HOST}
    shots:
      - id: alpha
        prompt: The door opens
        image: alpha.png
        takes: 2
      - id: beta
        prompt: The door closes
        image: beta.png
    """
)


def not_downloaded_run(root: Path) -> RunDir:
    """A finished run with ``--no-download``: every job completed, ``videos/`` never made."""
    manifest_path = root / "not-downloaded.yaml"
    manifest_path.write_text(SMALL_MANIFEST, encoding="utf-8")
    manifest = load_manifest(manifest_path)
    run_dir = root / "not-downloaded.run"
    run = RunDir(manifest_path, run_dir, manifest)
    with Ledger.open(run_dir, now=StepClock(START)) as ledger:
        ledger.append_sync("run_started", None, pid=1, budget=None)
        for job in manifest.jobs:
            task = f"task-{job.key}"
            _send(ledger, job)
            ledger.append_sync("created", job.key, task_id=task)
            ledger.append_sync(
                "completed", job.key, task_id=task, output_urls=[f"https://x.invalid/{task}"]
            )
        ledger.append_sync("run_ended", None, exit_status=0, api_calls=len(manifest.jobs) * 3)
    return run
