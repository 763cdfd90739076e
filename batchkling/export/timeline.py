"""The OpenTimelineIO timeline: one video track, a clip per chosen take, a gap per missing shot.

Each clip is named by its shot id and refers to the take's file by its
absolute path, as a plain path rather than a ``file://`` URL: DaVinci Resolve
(20.2) leaves ``file://`` references offline, and Premiere and OTIO's own
tools read plain paths too. A clip's available range is the file's real
length at its real frame rate (probed, not the length asked for), and its
source range the whole of it. Everything batchkling knows of the take is kept
in the clip's metadata under ``batchkling``: the job key, the take number, the
prompt, the task id, the credits, the tags and the state. A shot with no take
is a ``Gap`` as long as the shot, so the timing of the cut stays what the
manifest says.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import opentimelineio as otio

from batchkling.export.files import write_whole
from batchkling.export.probe import Probe, probe
from batchkling.export.takes import Cut, CutShot, Take
from batchkling.state import RunState

__all__ = ["METADATA_KEY", "Timeline", "timeline_of", "write_timeline"]

METADATA_KEY = "batchkling"
_DEFAULT_RATE = 24.0


@dataclass(frozen=True)
class Timeline:
    """What was written: where, how many shots, clips and gaps, and how long."""

    path: Path
    shots: int
    takes: int
    gaps: int
    duration: float


def _rate(found: Probe) -> float:
    return float(found.format.rate)


def _clip(shot: CutShot, take: Take, found: Probe, st: RunState) -> otio.schema.Clip:
    rate = _rate(found)
    frames = round(found.length * Fraction(found.format.rate))
    whole = otio.opentime.TimeRange(
        otio.opentime.RationalTime(0, rate), otio.opentime.RationalTime(frames, rate)
    )
    ref = otio.schema.ExternalReference(target_url=str(take.path), available_range=whole)
    rec = st.record(take.key)
    meta: dict[str, Any] = {
        "job": take.key,
        "take": take.job.take,
        "shot": shot.shot.id,
        "prompt": shot.shot.prompt,
        "task_id": take.task_id,
        "credits": rec.credits,
        "tags": list(shot.shot.tags),
        "state": take.state,
        "duration": round(found.duration, 6),
        "width": found.format.width,
        "height": found.format.height,
    }
    return otio.schema.Clip(
        name=shot.shot.id,
        media_reference=ref,
        source_range=whole,
        metadata={METADATA_KEY: meta},
    )


def _gap(shot: CutShot, rate: float) -> otio.schema.Gap:
    length = otio.opentime.RationalTime(round(shot.shot.duration * rate), rate)
    meta = {
        "shot": shot.shot.id,
        "prompt": shot.shot.prompt,
        "tags": list(shot.shot.tags),
        "state": shot.missing,
        "jobs": list(shot.job_keys),
    }
    gap = otio.schema.Gap(
        source_range=otio.opentime.TimeRange(otio.opentime.RationalTime(0, rate), length)
    )
    gap.name = shot.shot.id
    gap.metadata[METADATA_KEY] = meta
    return gap


def timeline_of(
    cut: Cut, st: RunState, name: str, *, probed: Callable[[], None] | None = None
) -> tuple[otio.schema.Timeline, dict[str, Probe]]:
    """The timeline of ``cut``, and the probe of each take by job key."""
    probes: dict[str, Probe] = {}
    for take in cut.takes:
        probes[take.key] = probe(take.path, take.key)
        if probed is not None:
            probed()
    first = next(iter(probes.values()), None)
    rate = _rate(first) if first is not None else _DEFAULT_RATE
    track = otio.schema.Track(name="V1", kind=otio.schema.TrackKind.Video)
    for shot in cut.shots:
        if not shot.takes:
            track.append(_gap(shot, rate))
        for take in shot.takes:
            track.append(_clip(shot, take, probes[take.key], st))
    timeline = otio.schema.Timeline(
        name=name, global_start_time=otio.opentime.RationalTime(0, rate)
    )
    timeline.tracks.append(track)
    timeline.metadata[METADATA_KEY] = {"takes": cut.mode.value}
    return timeline, probes


def write_timeline(
    cut: Cut,
    st: RunState,
    target: Path,
    name: str,
    *,
    probed: Callable[[], None] | None = None,
) -> Timeline:
    """Write the timeline of ``cut`` to ``target`` (``.otio`` JSON, atomically)."""
    timeline, probes = timeline_of(cut, st, name, probed=probed)
    text = otio.adapters.write_to_string(timeline, "otio_json")
    write_whole(target, text.encode("utf-8"))
    duration = timeline.duration()
    return Timeline(
        path=target,
        shots=len(cut.shots),
        takes=len(probes),
        gaps=len(cut.missing),
        duration=duration.to_seconds(),
    )
