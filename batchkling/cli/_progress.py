"""Progress on stderr: a tqdm bar on a terminal, one plain line every 30 s otherwise."""

from __future__ import annotations

import time
from typing import TextIO

from tqdm import tqdm

from batchkling.model import JobState
from batchkling.run.options import Progress

__all__ = ["PLAIN_EVERY", "ProgressPrinter"]

PLAIN_EVERY = 30.0


def _count(p: Progress, *states: JobState) -> int:
    return sum(p.counts.get(state.value, 0) for state in states)


def _describe(p: Progress) -> str:
    budget = "" if p.budget is None else f"/{p.budget}"
    limit = "" if p.limit is None else f" at once {p.limit}"
    return (
        f"running {_count(p, JobState.RUNNING)} failed {_count(p, JobState.FAILED)} "
        f"in doubt {_count(p, JobState.IN_DOUBT)} credits {p.credits_committed}{budget}{limit}"
    )


class ProgressPrinter:
    """The runner's progress callback for the command line."""

    def __init__(self, stream: TextIO, *, enabled: bool = True, every: float = PLAIN_EVERY) -> None:
        self._stream = stream
        self._enabled = enabled
        self._tty = enabled and hasattr(stream, "isatty") and stream.isatty()
        self._bar: tqdm[None] | None = None
        self._every = every
        self._last_line = time.monotonic()
        self._last: Progress | None = None

    def update(self, p: Progress) -> None:
        """Show ``p``: move the bar, or print a line when the last is ``every`` seconds old."""
        if not self._enabled:
            return
        self._last = p
        done = _count(p, JobState.DONE, JobState.SKIPPED)
        if p.message:
            self.message(p.message)
        if self._tty:
            if self._bar is None:
                self._bar = tqdm(total=p.total, file=self._stream, unit="job", dynamic_ncols=True)
            self._bar.n = done
            self._bar.set_postfix_str(_describe(p), refresh=False)
            self._bar.refresh()
            return
        now = time.monotonic()
        if now - self._last_line >= self._every:
            self._last_line = now
            print(
                f"batchkling: {done}/{p.total} done, {_describe(p)}", file=self._stream, flush=True
            )

    def message(self, text: str) -> None:
        """Print ``text`` on a line of its own (above the bar, when there is one)."""
        if not self._enabled:
            return
        if self._bar is not None:
            self._bar.write(text, file=self._stream)
        else:
            print(text, file=self._stream, flush=True)

    def close(self) -> None:
        """Remove the bar, if one was drawn."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None
