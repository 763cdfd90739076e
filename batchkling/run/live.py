"""What a run is doing now, in words, and how long it has left: read for every snapshot.

The runner's parts each know one thing (the gate its pause, the settler the
in-doubt creates waiting for the usage, the follower its tasks and their ages,
the downloader its downloads); ``LiveView`` gathers them, ``activity`` puts
them in words, and ``batchkling.eta`` makes the estimate. Reading them costs
no I/O, so a snapshot can be sent on every ledger write and every second.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import anyio

from batchkling._util import plural, span
from batchkling.api.gate import RequestGate
from batchkling.eta import Kind, Speeds, estimate, next_due
from batchkling.model import Job, JobState
from batchkling.run.download import Downloader
from batchkling.run.follow import Follower
from batchkling.run.settle import Settler
from batchkling.run.writer import RunWriter

__all__ = ["HEARTBEAT", "Doing", "LiveView", "activity", "heartbeat", "kind_of"]

# Seconds between two snapshots while nothing happens: the display's clock moves at
# least once a second.
HEARTBEAT = 0.5
FRESH = 0.05  # seconds a view is reused: one look serves a burst of ledger writes


def kind_of(job: Job) -> Kind:
    """The job's kind for the ETA: its mode and whole seconds of video."""
    return (job.shot.model_mode, float(math.ceil(job.shot.duration)))


@dataclass(frozen=True)
class Doing:
    """What the run is doing at one instant, as counts and seconds."""

    paused: float = 0.0  # seconds left of the shared pause of every request
    pushed_by: str | None = None  # "429" or "5xx": what the pause answers
    settling: int = 0  # in-doubt creates waiting for the credits usage
    ripe_in: float | None = None  # seconds until the first of them is ripe
    sending: int = 0
    running: int = 0
    due_in: float | None = None  # seconds until the first running task should finish
    downloading: int = 0


def activity(d: Doing) -> str | None:
    """``d`` in words, the most telling first; None when the run is doing nothing.

    A narrow terminal cuts the end of the line: what is left out there matters least.
    """
    parts = []
    if d.paused > 0:
        why = "asked to slow down (429)" if d.pushed_by == "429" else "failed (5xx)"
        parts.append(f"paused {span(d.paused)}: the API {why}")
    if d.settling:
        doubt = f"({d.settling} in doubt)"
        if d.ripe_in is not None and d.ripe_in > 0:
            wait = math.ceil(d.ripe_in)
            parts.append(f"waiting {wait} s for the credits usage to settle {doubt}")
        else:
            parts.append(f"reading the credits usage to settle {doubt}")
    if d.running:
        tasks = f"waiting for {plural(d.running, 'task')}"
        if d.due_in is not None:
            due = "due now" if d.due_in < 1 else f"due in about {span(d.due_in)}"
            tasks += f", the next is {due}"
        parts.append(tasks)
    if d.sending:
        parts.append(f"waiting for the answer to {plural(d.sending, 'create')}")
    if d.downloading:
        parts.append(f"downloading {d.downloading}")
    return "; ".join(parts) if parts else None


class LiveView:
    """Reads the runner's parts for each snapshot: ``view()`` is ``(activity, eta)``.

    ``queued``: the kind of each job still to start, in order; ``creating``: the
    jobs in a slot without a task yet (being sent, retried, or held in doubt).
    Both are the runner's own, kept current by it.
    """

    def __init__(
        self,
        *,
        writer: RunWriter,
        follower: Follower,
        downloader: Downloader,
        settler: Settler | None,
        gate: RequestGate | None,
        slots: Callable[[], int],
        queued: Mapping[str, Kind],
        creating: Mapping[str, Kind],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._writer = writer
        self._follower = follower
        self._downloader = downloader
        self._settler = settler
        self._gate = gate
        self._slots = slots
        self._queued = queued
        self._creating = creating
        self._clock = clock
        self._pushes = (0, 0)  # the gate's 429 and 5xx answers when last looked at
        self._pushed_by: str | None = None
        # The last view and when it was made: a burst of ledger writes reuses it.
        self._cached: tuple[float, tuple[str | None, float | None]] | None = None

    def view(self) -> tuple[str | None, float | None]:
        """What the run is doing in words, and the seconds it has left (None: unknown)."""
        # Freshness by the real clock: an injected clock may stand still.
        real = time.monotonic()
        if self._cached is not None and real - self._cached[0] < FRESH:
            return self._cached[1]
        self._cached = (real, self._look(self._clock()))
        return self._cached[1]

    def _look(self, now: float) -> tuple[str | None, float | None]:
        ages = self._follower.ages(now)
        speeds = Speeds.of(self._follower.generated, self._writer.create_times)
        sent = self._writer.sending
        settling, ripe_in = (0, None) if self._settler is None else self._settler.outlook()
        state = self._writer.state
        creating: list[tuple[Kind, float | None]] = []
        held: list[tuple[Kind, float]] = []
        for key, kind in self._creating.items():
            if key in sent:
                creating.append((kind, now - sent[key]))
            elif state.state_of(key) is JobState.IN_DOUBT:
                held.append((kind, ripe_in or 0.0))  # its slot waits for the settling
            else:
                creating.append((kind, None))
        eta = estimate(
            speeds,
            running=ages,
            creating=creating,
            held=held,
            queued=list(self._queued.values()),
            slots=self._slots(),
        )
        if eta is not None and ripe_in is not None:
            eta = max(eta, ripe_in)  # the run ends only once its in-doubt creates are settled
        doing = Doing(
            paused=self._paused(),
            pushed_by=self._pushed_by,
            settling=settling,
            ripe_in=ripe_in,
            sending=len(sent),
            # The fold's count: a task just created is running before it is followed.
            running=self._writer.counts.get(JobState.RUNNING.value, 0),
            due_in=next_due(speeds, ages),
            downloading=self._downloader.active,
        )
        return activity(doing), eta

    def _paused(self) -> float:
        gate = self._gate
        if gate is None:
            return 0.0
        pushes = (gate.answers_429, gate.answers_5xx)
        if pushes[0] > self._pushes[0]:
            self._pushed_by = "429"
        elif pushes[1] > self._pushes[1]:
            self._pushed_by = "5xx"
        self._pushes = pushes
        return gate.paused_for()


async def heartbeat(emit: Callable[[], None], over: anyio.Event, every: float = HEARTBEAT) -> None:
    """Call ``emit`` every ``every`` seconds until ``over`` is set.

    So the display's clock moves, and what the run waits for is told, while no job moves.
    """
    while not over.is_set():
        with anyio.move_on_after(every):
            await over.wait()
        if not over.is_set():
            emit()
