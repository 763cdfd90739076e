"""An account's credit ledger, as ``query_credits_usage`` shows it.

Records are kept ordered by ``(create_ms, seq)``; a page walks them newest
first. The cursor names the position of the last record a page returned, so
records added later (new charges, refunds, a late record behind a usage lag)
never shift a page a client is walking. Times are whole milliseconds, the
precision the API prints, so an inclusive ``end_time`` copied from a record
always includes that record.
"""

from __future__ import annotations

import base64
import binascii
from bisect import bisect_left, insort
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

__all__ = [
    "DEFAULT_LIMIT",
    "MAX_LIMIT",
    "UsageBook",
    "UsageRecord",
    "api_number",
    "decode_cursor",
    "encode_cursor",
    "format_time",
    "parse_time",
]

DEFAULT_LIMIT = 50
MAX_LIMIT = 200


def api_number(value: float) -> float:
    """A credit amount as the API writes it: ``5`` for ``5.0``, anything else unchanged."""
    return int(value) if float(value).is_integer() else value


def format_time(ms: int) -> str:
    """RFC 3339 in UTC with milliseconds: ``2026-11-24T03:20:57.123Z``."""
    seconds, millis = divmod(ms, 1000)
    stamp = datetime.fromtimestamp(seconds, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{stamp}.{millis:03d}Z"


def parse_time(text: str) -> int:
    """Milliseconds since the epoch of an RFC 3339 time; a time without offset is UTC."""
    value = text.strip()
    if value.endswith(("Z", "z")):
        value = value[:-1] + "+00:00"
    moment = datetime.fromisoformat(value)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return round(moment.timestamp() * 1000)


def encode_cursor(create_ms: int, seq: int) -> str:
    """An opaque cursor for the position just after (older than) this record."""
    return base64.urlsafe_b64encode(f"{create_ms}.{seq}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[int, int]:
    """The position a cursor names; ValueError if it was not made by ``encode_cursor``."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        ms, seq = raw.split(".")
        return int(ms), int(seq)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise ValueError("cursor is invalid") from None


@dataclass(frozen=True)
class UsageRecord:
    """One charge (positive) or refund (negative) on one account."""

    id: str
    key: str
    task_type: str
    task_id: str | None
    cost_credits: float
    create_ms: int
    seq: int

    def to_api(self) -> dict[str, Any]:
        """The record as the API lists it."""
        return {
            "id": self.id,
            "task_type": self.task_type,
            "task_id": self.task_id,
            "chat_id": None,
            "cost_credits": api_number(self.cost_credits),
            "create_time": format_time(self.create_ms),
        }

    def to_json(self) -> dict[str, Any]:
        """Everything needed to rebuild the record (for the state file)."""
        return {
            "id": self.id,
            "key": self.key,
            "task_type": self.task_type,
            "task_id": self.task_id,
            "cost_credits": self.cost_credits,
            "create_ms": self.create_ms,
            "seq": self.seq,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> UsageRecord:
        """The inverse of ``to_json``."""
        return cls(**data)


class UsageBook:
    """The records of one account, ordered by time; pages newest first."""

    def __init__(self) -> None:
        self._positions: list[tuple[int, int]] = []
        self._records: dict[tuple[int, int], UsageRecord] = {}

    def __len__(self) -> int:
        return len(self._positions)

    def add(self, record: UsageRecord) -> None:
        """Insert a record at its place in time."""
        position = (record.create_ms, record.seq)
        insort(self._positions, position)
        self._records[position] = record

    def page(
        self,
        *,
        limit: int = DEFAULT_LIMIT,
        cursor: tuple[int, int] | None = None,
        start_ms: int | None = None,
        end_ms: int | None = None,
        task_type: str | None = None,
        visible_until_ms: int | None = None,
    ) -> tuple[list[UsageRecord], str | None]:
        """Up to ``limit`` matching records older than ``cursor``, and the next cursor or None.

        ``visible_until_ms`` hides records newer than it (the usage lag).
        """
        index = len(self._positions)
        if cursor is not None:
            index = bisect_left(self._positions, cursor)
        uppers = [b for b in (end_ms, visible_until_ms) if b is not None]
        if uppers:
            # (ms + 1, -1) sorts after every record of that millisecond: seq >= 0.
            index = min(index, bisect_left(self._positions, (min(uppers) + 1, -1)))
        out: list[UsageRecord] = []
        for i in range(index - 1, -1, -1):
            record = self._records[self._positions[i]]
            if start_ms is not None and record.create_ms < start_ms:
                break
            if task_type is not None and record.task_type != task_type:
                continue
            if len(out) == limit:
                last = out[-1]
                return out, encode_cursor(last.create_ms, last.seq)
            out.append(record)
        return out, None

    def records(self) -> list[UsageRecord]:
        """Every record, oldest first."""
        return [self._records[p] for p in self._positions]
