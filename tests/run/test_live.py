"""What the live display says the run is doing, and how a snapshot is printed for a log."""

from __future__ import annotations

import io
from datetime import datetime, timezone

from batchkling.cli._progress import PLAIN_EVERY, ProgressPrinter, plain_every
from batchkling.run.live import Doing, activity
from batchkling.run.options import Progress


def test_nothing_going_on_says_nothing() -> None:
    """An idle instant has no activity text."""
    assert activity(Doing()) is None


def test_each_wait_in_words_most_pressing_first() -> None:
    """A pause comes first, then the settle wait, the tasks, the creates and the downloads."""
    doing = Doing(
        paused=12.0,
        pushed_by="429",
        settling=3,
        ripe_in=93.2,
        sending=2,
        running=3,
        due_in=40.0,
        downloading=2,
    )
    assert activity(doing) == (
        "paused 12 s: the API asked to slow down (429); "
        "waiting 94 s for the credits usage to settle (3 in doubt); "
        "waiting for 3 tasks, the next is due in about 40 s; "
        "waiting for the answer to 2 creates; "
        "downloading 2"
    )


def test_words_for_one_and_for_what_is_due() -> None:
    """One create, one task; an overdue task is due now; a ripe window is being read."""
    doing = Doing(sending=1, running=1, due_in=0.0, settling=1, ripe_in=-2.0)
    assert activity(doing) == (
        "reading the credits usage to settle (1 in doubt); "
        "waiting for 1 task, the next is due now; waiting for the answer to 1 create"
    )
    assert activity(Doing(running=2)) == "waiting for 2 tasks"  # no basis for when
    assert activity(Doing(paused=3.0, pushed_by="5xx")) == "paused 3.0 s: the API failed (5xx)"


def _snapshot(**fields: object) -> Progress:
    base: dict[str, object] = {
        "total": 30,
        "counts": {"done": 12, "running": 4, "in_doubt": 2, "pending": 12},
        "credits_committed": 12000,
        "budget": 60000,
        "limit": 4,
        "sending": 1,
        "elapsed": 252.0,
    }
    base.update(fields)
    return Progress(**base)  # type: ignore[arg-type]


def test_a_create_being_sent_is_not_in_doubt() -> None:
    """Of two in_doubt jobs in the fold, the one being sent is `sending`, the other in doubt."""
    p = _snapshot()
    assert (p.sending, p.in_doubt) == (1, 1)


def test_plain_lines_for_a_log_every_interval() -> None:
    """Not a terminal: a line at once, then one per interval, with time, counts, credits, ETA."""
    now = [100.0]
    err = io.StringIO()
    printer = ProgressPrinter(
        err,
        every=30.0,
        clock=lambda: now[0],
        now=lambda: datetime(2026, 12, 2, 3, 14, tzinfo=timezone.utc),
    )
    printer.update(_snapshot(eta=130.0, activity="waiting for 4 tasks"))
    now[0] += 29.0
    printer.update(_snapshot())
    now[0] += 1.0
    printer.update(_snapshot(eta=None))
    printer.close()
    lines = err.getvalue().splitlines()
    assert lines == [
        "batchkling: 2026-12-02T03:14:00Z elapsed 4 min 12 s: 12/30 done, running 4, "
        "sending 1, in doubt 1, at once 4, credits 12,000 / 60,000, ETA 2 min 10 s; "
        "waiting for 4 tasks",
        "batchkling: 2026-12-02T03:14:00Z elapsed 4 min 12 s: 12/30 done, running 4, "
        "sending 1, in doubt 1, at once 4, credits 12,000 / 60,000, ETA unknown",
    ]
    assert "\r" not in err.getvalue()


def test_the_interval_comes_from_the_environment_when_it_is_a_positive_number() -> None:
    """BATCHKLING_PROGRESS_EVERY sets the interval; anything else leaves 30 s."""
    assert plain_every({"BATCHKLING_PROGRESS_EVERY": "0.5"}) == 0.5
    for bad in ("", "soon", "0", "-3", "nan", "inf"):
        assert plain_every({"BATCHKLING_PROGRESS_EVERY": bad}) == PLAIN_EVERY
    assert plain_every({}) == PLAIN_EVERY


def test_quiet_prints_nothing() -> None:
    """A disabled printer writes nothing, messages included."""
    err = io.StringIO()
    printer = ProgressPrinter(err, enabled=False)
    printer.update(_snapshot(message="s01: stalled"))
    printer.message("hello")
    printer.close()
    assert err.getvalue() == ""
