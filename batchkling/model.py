"""Frozen values shared by every layer: shots, jobs, job states, defaults.

Nothing here does I/O. A ``Job`` knows the exact request body it sends and the
fingerprint of that body, so the ledger can tell whether a manifest entry
changed after it was submitted.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from enum import Enum
from functools import cached_property
from typing import Any

from batchkling._util import whole_number

__all__ = [
    "DEFAULT_CONCURRENCY",
    "DEFAULT_DURATION",
    "DEFAULT_IMAGE_TIMEOUT",
    "DEFAULT_MODE",
    "DEFAULT_MULTI_SHOT",
    "DEFAULT_RATE",
    "DEFAULT_TAKES",
    "MAX_DURATION",
    "MAX_TAKES",
    "MIN_DURATION",
    "RATES",
    "TOOL_TYPE",
    "USAGE_TASK_TYPE",
    "Job",
    "JobState",
    "Manifest",
    "Shot",
    "billable_range",
    "canonical_json",
    "chain_placeholder",
    "credits_for",
    "fingerprint",
]

TOOL_TYPE = "kling3-image-to-video-api"
USAGE_TASK_TYPE = "tool_" + TOOL_TYPE
RATES: dict[str, int] = {"standard": 200, "pro": 300}
MIN_DURATION = 3
MAX_DURATION = 15
DEFAULT_DURATION = 5
DEFAULT_MODE = "standard"
DEFAULT_MULTI_SHOT = True
DEFAULT_TAKES = 1
MAX_TAKES = 20
# Settings of a run, as the command line offers them by default.
DEFAULT_CONCURRENCY = 4
DEFAULT_RATE = "2/s"  # API requests, as ``schedule.parse_rate`` reads them
DEFAULT_IMAGE_TIMEOUT = 10.0  # seconds, for each pre-flight image request
DEFAULT_REACH_TIMEOUT = 30.0  # seconds pre-flight tries an API it cannot connect to


def credits_for(duration: float, mode: str) -> int:
    """Credits one job costs: the duration rounded up to a whole second, times the mode's rate.

    Rounding up keeps the estimate at or above anything the API can charge for a
    fractional duration.
    """
    return math.ceil(duration) * RATES[mode]


def billable_range(duration: float, mode: str) -> tuple[float, int]:
    """The least and the most the API can charge for one job: ``(exact, reserved)``.

    The exact product (duration x rate) is the least a provider can bill for a
    fractional duration; ``credits_for`` (the next whole second) is the most, and
    what a run reserves. Reconciliation accepts any charge between the two; the
    emulator bills the exact product.
    """
    return duration * RATES[mode], credits_for(duration, mode)


def chain_placeholder(kind: str, source: str) -> str:
    """What a chained image field holds until its frame is extracted: ``after:s01``."""
    return f"{kind}:{source}"


def canonical_json(value: Any) -> str:
    """The one serialisation used for fingerprints: sorted keys, no spaces, UTF-8 kept."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def fingerprint(body: Any) -> str:
    """sha256 of the canonical JSON of a request body."""
    return hashlib.sha256(canonical_json(body).encode("utf-8")).hexdigest()


class JobState(str, Enum):
    """Where one job stands, as folded from the ledger."""

    PENDING = "pending"
    IN_DOUBT = "in_doubt"
    RUNNING = "running"
    COMPLETED = "completed"
    DONE = "done"
    FAILED = "failed"
    SKIPPED = "skipped"

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class Shot:
    """One normalised manifest entry (defaults applied, URLs resolved, duration clamped)."""

    id: str
    prompt: str
    image: str
    duration: float = DEFAULT_DURATION
    multi_shot: bool = DEFAULT_MULTI_SHOT
    model_mode: str = DEFAULT_MODE
    tail_image_url: str | None = None
    takes: int = DEFAULT_TAKES
    tags: tuple[str, ...] = ()
    line: int | None = None
    # sha256 of a local image file (``image`` is then its ``file:`` URL until the file is
    # uploaded, and the URL it was given after): the request's identity is the content,
    # not the URL, so signing the URL again is no change to the entry.
    image_sha256: str | None = None
    tail_sha256: str | None = None

    # Chaining: the start frame is the last frame of another shot's chosen take, the end
    # frame the first frame of one. Until the run extracts the frame, ``image``
    # (``tail_image_url``) holds ``after:<id>`` (``before:<id>``), which no URL the
    # manifest reader gives ever starts with; once extracted it is a local image like
    # any other, counted by content.

    @property
    def after(self) -> str | None:
        """The shot whose last frame this one starts on, while that frame is not extracted."""
        image = self.image
        if image.startswith("after:") and self.image_sha256 is None:
            return image[6:]
        return None

    @property
    def before(self) -> str | None:
        """The shot whose first frame this one ends on, while that frame is not extracted."""
        tail = self.tail_image_url
        if tail is not None and tail.startswith("before:") and self.tail_sha256 is None:
            return tail[7:]
        return None

    @property
    def waits_for(self) -> tuple[tuple[str, str], ...]:
        """``(field, source shot)`` of each chained frame not extracted yet."""
        out: list[tuple[str, str]] = []
        if (after := self.after) is not None:
            out.append(("image", after))
        if (before := self.before) is not None:
            out.append(("tail_image_url", before))
        return tuple(out)


@dataclass(frozen=True)
class Job:
    """One render: a shot, or one take of a shot. ``key`` is what the ledger and outputs use."""

    key: str
    shot: Shot
    take: int = 1

    @property
    def credits(self) -> int:
        """What this job costs at most, as planned and reserved."""
        return credits_for(self.shot.duration, self.shot.model_mode)

    def request_input(self) -> dict[str, Any]:
        """The ``input`` object of the create request, exactly as sent."""
        shot = self.shot
        body: dict[str, Any] = {
            "prompt": shot.prompt,
            "image": shot.image,
            "duration": whole_number(shot.duration),
            "multi_shot": shot.multi_shot,
            "model_mode": shot.model_mode,
        }
        if shot.tail_image_url is not None:
            body["tail_image_url"] = shot.tail_image_url
        return body

    def request_body(self) -> dict[str, Any]:
        """The whole create request body."""
        return {"tool_type": TOOL_TYPE, "input": self.request_input()}

    @property
    def fingerprint(self) -> str:
        """sha256 of the canonical create request: changes iff what would be sent changes.

        The take number is part of it so that two takes of one shot never look alike
        in the ledger, although the bodies sent are identical. A local image counts by
        its content (``sha256:<hex>``), whatever URL it was uploaded to.
        """
        body = self.request_body()
        shot = self.shot
        if shot.image_sha256 is not None:
            body["input"]["image"] = "sha256:" + shot.image_sha256
        if shot.tail_sha256 is not None:
            body["input"]["tail_image_url"] = "sha256:" + shot.tail_sha256
        return fingerprint({"body": body, "take": self.take})


@dataclass(frozen=True)
class Manifest:
    """A validated manifest: where it came from and the jobs it expands into."""

    path: str
    sha256: str
    shots: tuple[Shot, ...]
    name: str | None = None
    budget: int | None = None
    image_base_url: str | None = None
    warnings: tuple[Any, ...] = field(default=())
    upload_to: str | None = None  # where local images go: ``s3://``, ``gs://`` or ``az://``
    upload_public_url: str | None = None  # base URL serving them instead of signed URLs
    # What was given besides the file (``budget``, ``image_base_url``, ``defaults``, the
    # upload settings), as JSON: what loading the file again the same way needs. A run
    # records it, so later commands on its run directory need not be given it again.
    overrides: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def has_local_images(self) -> bool:
        """True when some shot names an image file on this machine (to upload first).

        A chained frame counts: it is extracted on this machine and uploaded.
        """
        return any(
            s.image_sha256 is not None or s.tail_sha256 is not None or s.waits_for
            for s in self.shots
        )

    @cached_property
    def jobs(self) -> tuple[Job, ...]:
        """Every job in manifest order; a shot with ``takes`` > 1 gives ``<id>#<k>`` keys."""
        out: list[Job] = []
        for shot in self.shots:
            if shot.takes == 1:
                out.append(Job(key=shot.id, shot=shot, take=1))
            else:
                out.extend(
                    Job(key=f"{shot.id}#{k}", shot=shot, take=k) for k in range(1, shot.takes + 1)
                )
        return tuple(out)
