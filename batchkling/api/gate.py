"""The gate every API request passes: even pacing, creates first, one shared pause on pushback."""

from __future__ import annotations

import contextlib
import itertools
import math
import random
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum

import anyio

from batchkling.schedule import Pacer, Rate, retry_after_delay

__all__ = ["DEFAULT_AGING", "GateQueue", "Priority", "RequestGate", "Ticket"]

# How long a poll may be held back by creates before it goes first: the default
# shortest poll interval (a run sets its own, ``RequestGate.aging``).
DEFAULT_AGING = 5.0


class Priority(Enum):
    """What a request is, for the order in which waiting requests are sent."""

    CREATE = "create"  # fills a free slot: goes before the others
    POLL = "poll"  # a status query, and every other free call


@dataclass(frozen=True)
class Ticket:
    """One request waiting for its turn: its kind, when it began to wait, its place."""

    priority: Priority
    since: float
    seq: int


class GateQueue:
    """Who goes next among the waiting requests. Pure: the time is passed in.

    Creates go before polls, in the order they came; polls go in the order they
    came. A poll that has waited ``aging`` seconds (one poll interval) is due: it
    no longer yields to every create, only to every other one, so that polls are
    never starved by a stream of creates and creates still get half the slots
    when there are more polls than the rate carries.
    """

    def __init__(self, aging: float = DEFAULT_AGING) -> None:
        self.aging = aging
        self._creates: deque[Ticket] = deque()
        self._polls: deque[Ticket] = deque()
        self._seq = itertools.count()
        self._jumped = False  # the last slot went to a due poll while a create waited

    def __len__(self) -> int:
        return len(self._creates) + len(self._polls)

    def add(self, priority: Priority, now: float) -> Ticket:
        """A request begins to wait."""
        ticket = Ticket(priority, now, next(self._seq))
        (self._creates if priority is Priority.CREATE else self._polls).append(ticket)
        return ticket

    def remove(self, ticket: Ticket) -> None:
        """A request no longer waits (it was sent, or given up)."""
        line = self._creates if ticket.priority is Priority.CREATE else self._polls
        with contextlib.suppress(ValueError):  # already taken
            line.remove(ticket)

    def head(self, now: float) -> Ticket | None:
        """The request that gets the next slot, or None when none waits."""
        if not self._creates:
            return self._polls[0] if self._polls else None
        if not self._polls:
            return self._creates[0]
        poll = self._polls[0]
        if now - poll.since >= self.aging and not self._jumped:
            return poll
        return self._creates[0]

    def take(self, ticket: Ticket) -> None:
        """``ticket`` got its slot (it was the head)."""
        self._jumped = ticket.priority is Priority.POLL and bool(self._creates)
        self.remove(ticket)


class RequestGate:
    """Evenly paced API requests, creates first, and one shared pause when the server pushes back.

    Waiting requests go out one interval apart in the order ``GateQueue`` gives:
    a create, which fills a free slot, goes before polls waiting already; a poll
    held back for ``aging`` seconds goes before creates every other slot.

    A 429 or 503 with ``Retry-After`` holds every request back until then (the
    limit is the account's, not one job's). Repeated 429/5xx answers without one
    open a breaker: one shared pause that doubles while failures continue.
    """

    def __init__(
        self,
        rate: Rate,
        *,
        clock: Callable[[], float] = time.monotonic,
        rand: Callable[[], float] = random.random,
        breaker_threshold: int = 3,
        breaker_cap: float = 60.0,
        aging: float = DEFAULT_AGING,
    ) -> None:
        self.rate = rate
        self._pacer = Pacer(rate)
        self._clock = clock
        self._rand = rand
        self._queue = GateQueue(aging)
        self._bells: dict[int, anyio.Event] = {}  # by ticket: set to wake its waiter
        self._paused_until = 0.0
        self._failures = 0
        self._threshold = breaker_threshold
        self._cap = breaker_cap
        self.calls = 0
        self.pauses = 0
        # What the run's summary and live display tell: answers that pushed back by
        # kind, and how long requests were held back for them in all.
        self.answers_429 = 0
        self.answers_5xx = 0
        self.paused_seconds = 0.0

    @property
    def aging(self) -> float:
        """Seconds a poll yields to creates before it is due (one poll interval)."""
        return self._queue.aging

    @aging.setter
    def aging(self, seconds: float) -> None:
        self._queue.aging = seconds

    @property
    def waiting(self) -> int:
        """Requests waiting for their turn now."""
        return len(self._queue)

    async def wait(self, priority: Priority = Priority.POLL, *, count: bool = True) -> None:
        """Return when the next API request may be sent; counts it unless not ``count``.

        ``count=False``: a request that had its slot already and must take a new
        one (it waited for something else meanwhile).

        Only the head of the queue sleeps until the next slot; the others sleep
        until it hands the turn on, so a create that comes in while polls wait is
        sent at the next slot.
        """
        queue = self._queue
        ticket = queue.add(priority, self._clock())
        self._bells[ticket.seq] = anyio.Event()
        try:
            while True:
                now = self._clock()
                head = queue.head(now)
                if head is not ticket:
                    if head is not None:
                        self._ring(head)  # the turn is the head's: make sure it is awake
                    await self._sleep(ticket, None)
                    continue
                at = max(self._paused_until, self._pacer.tat, now)
                if at > now:
                    await self._sleep(ticket, at - now)
                    continue
                self._pacer.reserve(now)
                queue.take(ticket)
                self.calls += count
                return
        finally:
            queue.remove(ticket)
            del self._bells[ticket.seq]
            nxt = queue.head(self._clock())
            if nxt is not None:
                self._ring(nxt)

    def _ring(self, ticket: Ticket) -> None:
        self._bells[ticket.seq].set()

    async def _sleep(self, ticket: Ticket, seconds: float | None) -> None:
        """Sleep until the slot (None: no limit), or until woken: the turn may have moved."""
        bell = self._bells[ticket.seq]
        with anyio.move_on_after(math.inf if seconds is None else seconds):
            await bell.wait()
        if bell.is_set():
            self._bells[ticket.seq] = anyio.Event()

    def succeeded(self) -> None:
        self._failures = 0

    def paused_for(self) -> float:
        """Seconds left of the shared pause (0 when requests may go)."""
        return max(0.0, self._paused_until - self._clock())

    def pushed_back(self, retry_after: float | None, status: int | None = None) -> None:
        """The server answered 429 or 5xx; ``retry_after`` is its Retry-After, if any."""
        self._failures += 1
        if status == 429:
            self.answers_429 += 1
        elif status is not None and status >= 500:
            self.answers_5xx += 1
        now = self._clock()
        pause = 0.0
        if retry_after is not None:
            pause = retry_after_delay(retry_after, rand=self._rand())
        elif self._failures >= self._threshold:
            step = min(self._cap, 2.0 ** (self._failures - self._threshold))
            pause = step / 2 + self._rand() * step / 2
        if pause > 0 and now + pause > self._paused_until:
            # Only the part not already covered by a pause under way adds to the total.
            self.paused_seconds += now + pause - max(now, self._paused_until)
            self._paused_until = now + pause
            self._pacer.push_back(self._paused_until)
            self.pauses += 1
