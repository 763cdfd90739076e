"""The run's concurrency slots, and creates in doubt keeping theirs until they are settled.

A slot is held from a job's create until its task finishes on the server. A
create whose answer was lost may be generating all the same, so it keeps its
slot until reconciliation settles it: adopted (its task is then followed in that
slot), or proved never created (the slot is then used to send it again). One
that cannot be settled in this run keeps its slot for as long as the run may
still want to start work; when every slot is held that way, no slot will come
free and the jobs still waiting for one are not sent (``acquire`` says so).

The number of slots that may be held adapts to the account (AIMD, as TCP does):
a create refused for too many tasks at once (``refused``) brings the limit down
to the tasks running now (never below 1), and each task that then finishes with
no refusal since its create raises it by one, never above ``concurrency``.
"""

from __future__ import annotations

from enum import Enum

import anyio
import anyio.lowlevel

__all__ = ["Settlement", "Slots"]


class Settlement(Enum):
    """How the create in doubt that holds a slot was settled."""

    ADOPTED = "adopted"  # its task was found: follow it
    NOT_CREATED = "not_created"  # proved never created: send it again
    FINAL = "final"  # it stays in doubt in this run


class Slots:
    """``concurrency`` slots; jobs in doubt hold theirs through ``hold_in_doubt``."""

    def __init__(self, concurrency: int) -> None:
        self._n = concurrency
        self._limit = concurrency  # slots that may be held now
        self._held = 0
        self._running = 0  # held slots whose task exists on the server
        self._epoch = 0  # refusals so far
        self._changed = anyio.Event()  # set (and replaced) when a slot may have come free
        self.refusals = 0
        self.allowed: int | None = None  # the limit set by the last refusal
        self._stuck = 0  # slots held by creates in doubt for the rest of the run
        self._full = False  # every slot is stuck: none will come free
        self._waiting: set[anyio.CancelScope] = set()
        self._released = anyio.Event()  # nobody waits for a slot any more
        self._holders: dict[str, anyio.Event] = {}
        self._verdicts: dict[str, Settlement] = {}
        self._settling = True  # something may still settle the holders

    @property
    def free(self) -> int:
        """Slots free now."""
        return max(0, self._limit - self._held)

    @property
    def limit(self) -> int:
        """How many slots may be held now."""
        return self._limit

    @property
    def full(self) -> bool:
        """True once every slot is held by a create in doubt that this run cannot settle."""
        return self._full

    async def acquire(self) -> bool:
        """Take a slot; False (and none taken) once no slot will come free in this run."""
        got = False
        with anyio.CancelScope() as scope:
            self._waiting.add(scope)
            try:
                await anyio.lowlevel.checkpoint()
                while not self._full:
                    if self._held < self._limit:
                        self._held += 1
                        got = True
                        break
                    await self._changed.wait()
            finally:
                self._waiting.discard(scope)
        return got

    def release(self) -> None:
        """Give a slot back."""
        self._held -= 1
        self._notify()

    def running(self) -> int:
        """A held slot's task now exists on the server; returns a mark for ``finished``."""
        self._running += 1
        return self._epoch

    def finished(self, mark: int, *, clean: bool) -> None:
        """The task marked ``mark`` no longer runs; ``clean``: it finished on the server.

        A clean finish with no refusal since the task was created raises the limit by one.
        """
        self._running -= 1
        if clean and mark == self._epoch and self._limit < self._n:
            self._limit += 1
            self._notify()

    def refused(self) -> None:
        """A create was refused for too many tasks at once: allow only what runs now."""
        self.refusals += 1
        self._epoch += 1
        self._limit = max(1, min(self._limit, self._running))
        self.allowed = self._limit

    async def requeue(self) -> bool:
        """Give the slot back and wait for one within the limit; False: none will come.

        On False the slot is counted as held all the same, so ``release`` stays paired.
        """
        self.release()
        if await self.acquire():
            return True
        self._held += 1
        return False

    def _notify(self) -> None:
        self._changed.set()
        self._changed = anyio.Event()

    def expect(self, key: str) -> None:
        """``key``'s create is about to be sent from its slot: its verdict will come here.

        Called before the create, so that a verdict reached while the submission
        is still winding down (the pause after a create in doubt) is not lost.
        """
        self._holders[key] = anyio.Event()
        self._verdicts.pop(key, None)

    def forget(self, key: str) -> None:
        """``key``'s slot no longer waits for a verdict."""
        self._holders.pop(key, None)
        self._verdicts.pop(key, None)

    async def hold_in_doubt(self, key: str) -> Settlement:
        """Keep the slot of ``key``'s create in doubt until it is settled, and say how.

        ``expect(key)`` came before the create. When it cannot be settled in this
        run, the slot is kept until nobody waits for one any more (``release_stuck``),
        and ``FINAL`` is returned.
        """
        event = self._holders.get(key)
        if event is not None and self._settling:
            await event.wait()
        verdict = self._verdicts.get(key, Settlement.FINAL)
        self.forget(key)
        if verdict is Settlement.FINAL:
            await self._stay()
        return verdict

    def settle(self, key: str, verdict: Settlement) -> bool:
        """Hand ``verdict`` to the slot waiting for ``key``'s; False when none does."""
        event = self._holders.get(key)
        if event is None:
            return False
        self._verdicts[key] = verdict
        event.set()
        return True

    def settling_over(self) -> None:
        """Nothing settles creates in doubt any more in this run: every holder's is final."""
        self._settling = False
        for key, event in list(self._holders.items()):
            if not event.is_set():  # a verdict handed over already stands
                self.settle(key, Settlement.FINAL)

    def release_stuck(self) -> None:
        """Nobody waits for a slot any more: holders of unsettled creates may let go."""
        self._released.set()

    async def _stay(self) -> None:
        self._stuck += 1
        if self._stuck >= self._limit:
            self._full = True
            for scope in self._waiting:
                scope.cancel()
        try:
            await self._released.wait()
        finally:
            self._stuck -= 1
            self._full = self._stuck >= self._limit
