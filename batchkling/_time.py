"""RFC 3339 times in UTC, each rule written once: the clock, formatting, parsing.

Imports nothing of batchkling, so that any module (the emulator included) may use it.

Times are written in UTC with a ``Z`` (``2026-11-24T03:20:57.123Z``): the ledger
with microseconds, the API and its usage list with milliseconds. Any RFC 3339
time is read, with ``Z``, ``z`` or an offset; a time without an offset is taken
as UTC. Python 3.10's ``datetime.fromisoformat`` does not accept ``Z``, so it is
turned into ``+00:00`` first.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Literal

__all__ = [
    "format_rfc3339",
    "format_rfc3339_ms",
    "now_rfc3339",
    "parse_rfc3339",
    "parse_rfc3339_ms",
    "utc_now",
]

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)

Timespec = Literal["seconds", "milliseconds", "microseconds"]


def utc_now() -> datetime:
    """The current time, as an aware datetime in UTC."""
    return datetime.now(timezone.utc)


def format_rfc3339(moment: datetime, *, timespec: Timespec = "milliseconds") -> str:
    """``moment`` in UTC with a ``Z``: ``2026-11-24T03:20:57.123Z`` (digits as ``timespec``).

    A naive ``moment`` is taken as local time, as ``datetime.astimezone`` does.
    """
    text = moment.astimezone(timezone.utc).isoformat(timespec=timespec)
    return text.replace("+00:00", "Z")


def now_rfc3339() -> str:
    """The current time in UTC with microseconds: ``2026-11-24T03:20:57.123456Z``."""
    return format_rfc3339(utc_now(), timespec="microseconds")


def parse_rfc3339(text: str) -> datetime:
    """An RFC 3339 time as an aware datetime in UTC; ``ValueError`` if ``text`` is not one.

    Surrounding blank space is ignored; a time without an offset is UTC.
    """
    text = text.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:
        return moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc)


def format_rfc3339_ms(ms: int) -> str:
    """Milliseconds since the epoch as RFC 3339 in UTC: ``2026-11-24T03:20:57.123Z``."""
    # Whole milliseconds added to the epoch: no float rounding on the way.
    return format_rfc3339(_EPOCH + timedelta(milliseconds=ms), timespec="milliseconds")


def parse_rfc3339_ms(text: str) -> int:
    """Milliseconds since the epoch of an RFC 3339 time (rounded to the nearest)."""
    return round(parse_rfc3339(text).timestamp() * 1000)
