"""Progress on stderr: two live lines on a terminal, one plain line every 30 s otherwise.

On a terminal, the first line is the bar: jobs done, the run's clock, the ETA
and the credits; the second says what the jobs are and what the run is doing
(``running 4 · sending 1 · at once 4 · waiting for 4 tasks, the next is due in
about 40 s``). The runner sends a snapshot at least once a second, so both lines
move while nothing happens. tqdm draws them, without its own rate or ETA: a
rate counted from the bar's start would take jobs done by an earlier run for
speed.

When stderr is not a terminal, a plain line (a UTC time, the same fields) is
printed at the first snapshot and then every ``PLAIN_EVERY`` seconds, so the
log of a long run reads well afterwards: never a bar, never a carriage return.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from datetime import datetime
from typing import TextIO

from tqdm import tqdm

from batchkling._time import format_rfc3339, utc_now
from batchkling._util import of_budget, span
from batchkling.model import JobState
from batchkling.run.options import Progress

__all__ = ["EVERY_VARIABLE", "PLAIN_EVERY", "ProgressPrinter", "counts_text", "plain_every"]

PLAIN_EVERY = 30.0
EVERY_VARIABLE = "BATCHKLING_PROGRESS_EVERY"  # seconds between plain lines, instead of 30
_REDRAW = 0.1  # at most ten redraws a second, whatever the rate of events


def plain_every(environ: dict[str, str] | None = None) -> float:
    """Seconds between plain lines: ``$BATCHKLING_PROGRESS_EVERY`` if a positive number."""
    text = (os.environ if environ is None else environ).get(EVERY_VARIABLE, "")
    try:
        every = float(text)
    except ValueError:
        return PLAIN_EVERY
    return every if math.isfinite(every) and every > 0 else PLAIN_EVERY


def _count(p: Progress, *states: JobState) -> int:
    return sum(p.counts.get(state.value, 0) for state in states)


def _done(p: Progress) -> int:
    return _count(p, JobState.DONE, JobState.SKIPPED)


def _eta(p: Progress) -> str:
    if p.eta is None:
        return "ETA unknown"
    if _done(p) + _count(p, JobState.FAILED) >= p.total:
        return "finished"
    # Below a second, tasks are due or overdue: their end is any moment, not a number.
    return "ETA under 1 s" if p.eta < 1 else f"ETA {span(p.eta)}"


def _credits(p: Progress) -> str:
    return f"credits {of_budget(p.credits_committed, p.budget)}"


def counts_text(p: Progress, sep: str = " · ") -> str:
    """The jobs by what they are doing: ``running 4 · sending 1 · in doubt 2 · failed 1``."""
    parts = [f"running {_count(p, JobState.RUNNING)}"]
    extra = [
        ("sending", p.sending),
        ("in doubt", p.in_doubt),
        ("failed", _count(p, JobState.FAILED)),
    ]
    parts += [f"{name} {n}" for name, n in extra if n]
    if p.limit is not None:
        parts.append(f"at once {p.limit}")
    return sep.join(parts)


def _literal(text: str) -> str:
    """``text`` as it reads, inside a tqdm ``bar_format``."""
    return text.replace("{", "{{").replace("}", "}}")


class _Lines:
    """The two live lines on a terminal."""

    def __init__(self, stream: TextIO, total: int) -> None:
        self.bar: tqdm[None] = tqdm(
            total=total, file=stream, dynamic_ncols=True, position=0, bar_format="{bar}"
        )
        self.status: tqdm[None] = tqdm(
            total=None, file=stream, dynamic_ncols=True, position=1, leave=False, bar_format=""
        )

    def draw(self, p: Progress) -> None:
        left = f"{_done(p)}/{p.total} done"
        right = f"elapsed {span(p.elapsed)} · {_eta(p)} · {_credits(p)}"
        self.bar.bar_format = f"{_literal(left)} |{{bar}}| {_literal(right)}"
        self.bar.total = p.total
        self.bar.n = _done(p)
        status = counts_text(p) + ("" if p.activity is None else f" · {p.activity}")
        self.status.bar_format = _literal(status)
        self.status.refresh()
        self.bar.refresh()

    def close(self) -> None:
        self.status.close()
        self.bar.close()


class ProgressPrinter:
    """The runner's progress callback for the command line.

    ``every``: seconds between plain lines (default ``plain_every()``).
    """

    def __init__(
        self,
        stream: TextIO,
        *,
        enabled: bool = True,
        every: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        now: Callable[[], datetime] = utc_now,
    ) -> None:
        self._stream = stream
        self._enabled = enabled
        self._tty = enabled and hasattr(stream, "isatty") and stream.isatty()
        self._lines: _Lines | None = None
        self._every = plain_every() if every is None else every
        self._clock = clock
        self._now = now
        self._last_draw: float | None = None  # when the screen (or the log) last got a line
        self._last: Progress | None = None
        self._drawn = True  # whether the screen shows ``_last``

    def update(self, p: Progress) -> None:
        """Show ``p``: redraw the lines, or print a line when the last is ``every`` s old."""
        if not self._enabled:
            return
        self._last = p
        if p.message:
            self.message(p.message)
        now = self._clock()
        if self._tty:
            self._drawn = False
            if self._last_draw is None or now - self._last_draw >= _REDRAW or p.message:
                self._draw(p, now)
            return
        if self._last_draw is None or now - self._last_draw >= self._every:
            self._last_draw = now
            print(self.plain_line(p), file=self._stream, flush=True)

    def _draw(self, p: Progress, now: float) -> None:
        if self._lines is None:
            self._lines = _Lines(self._stream, p.total)
        self._lines.draw(p)
        self._last_draw = now
        self._drawn = True

    def plain_line(self, p: Progress) -> str:
        """One line for a log: ``batchkling: TIME elapsed 4 min 12 s: 12/30 done, ...``."""
        stamp = format_rfc3339(self._now(), timespec="seconds")
        line = (
            f"batchkling: {stamp} elapsed {span(p.elapsed)}: {_done(p)}/{p.total} done, "
            f"{counts_text(p, ', ')}, {_credits(p)}, {_eta(p)}"
        )
        return line if p.activity is None else f"{line}; {p.activity}"

    def message(self, text: str) -> None:
        """Print ``text`` on a line of its own (above the live lines, when they are drawn)."""
        if not self._enabled:
            return
        if self._lines is not None:
            self._lines.bar.write(text, file=self._stream)
        else:
            print(text, file=self._stream, flush=True)

    def close(self) -> None:
        """Draw the last snapshot, then leave the bar and remove the status line."""
        if self._lines is not None and self._last is not None and not self._drawn:
            self._lines.draw(self._last)
        if self._lines is not None:
            self._lines.close()
            self._lines = None
