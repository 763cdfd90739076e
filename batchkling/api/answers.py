"""What the sjinn API answers, as frozen values, each read from the answer's ``data``.

Reading is lenient: a field of an unexpected type is dropped, not an error, because
a status poll or a usage page that cannot be read at all is retried by the caller.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["Account", "TaskStatus", "UsagePage", "UsageRecord", "pick_video"]


def pick_video(urls: Sequence[str]) -> str:
    """The first URL whose path ends in ``.mp4``, else the first (``urls`` is not empty)."""
    for url in urls:
        if url.split("?", 1)[0].lower().endswith(".mp4"):
            return url
    return urls[0]


@dataclass(frozen=True)
class TaskStatus:
    """One answer of ``query_tool_task_status``."""

    task_id: str
    status: int | None
    output_urls: tuple[str, ...] = ()
    error: str | None = None

    @property
    def succeeded(self) -> bool:
        return self.status == 1 and bool(self.output_urls)

    @property
    def failed(self) -> bool:
        return self.status == -1

    @property
    def known(self) -> bool:
        """False for a status value the reference does not document (logged, treated as running)."""
        return self.status in (0, 1, -1)

    def video_url(self) -> str | None:
        """The first output URL ending in ``.mp4``, else the first."""
        return pick_video(self.output_urls) if self.output_urls else None

    @classmethod
    def from_data(cls, data: Mapping[str, Any], task_id: str) -> TaskStatus:
        """A ``query_tool_task_status`` answer; ``task_id`` (the one asked for) if it names none."""
        raw_status = data.get("status")
        urls = data.get("output_urls") or ()
        error = data.get("error") or data.get("error_msg")
        return cls(
            task_id=str(data.get("task_id") or task_id),
            status=raw_status if isinstance(raw_status, int) else None,
            output_urls=tuple(str(u) for u in urls if isinstance(u, str)),
            error=str(error) if error else None,
        )


@dataclass(frozen=True)
class Account:
    """``query_account_status``: who the key belongs to, the balance, the subscription."""

    email: str | None
    name: str | None
    balance: float | None
    subscription: Mapping[str, Any] | None

    @property
    def subscription_active(self) -> bool:
        if not self.subscription:
            return False
        return str(self.subscription.get("status", "")).lower() in ("active", "trialing")

    @classmethod
    def from_data(cls, data: Mapping[str, Any]) -> Account:
        """A ``query_account_status`` answer."""
        balance = data.get("balances")
        subscription = data.get("subscription")
        return cls(
            email=data.get("email"),
            name=data.get("name"),
            balance=float(balance) if isinstance(balance, (int, float)) else None,
            subscription=subscription if isinstance(subscription, dict) else None,
        )


# The list of records has been seen under other names than the documented one.
_RECORD_LISTS = ("records", "list", "items", "rows", "usage", "data")
_NUMBER = re.compile(r"-?[0-9]+(?:\.[0-9]+)?")


def _credits(value: object) -> float | None:
    # Only a plain number counts: "1,000" could be a thousand or one and a bit.
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, str) and _NUMBER.fullmatch(value.strip()):
        return float(value)
    return None


@dataclass(frozen=True)
class UsageRecord:
    """One record of the account's credits usage; a negative ``cost_credits`` is a refund."""

    id: str
    task_type: str
    task_id: str | None
    cost_credits: float
    create_time: str | float  # as sent: RFC 3339 text, or epoch seconds or milliseconds

    @classmethod
    def from_data(cls, rec: object) -> UsageRecord | None:
        """One entry of the record list, or None when it cannot be read whole."""
        if not isinstance(rec, dict):
            return None
        rid, task_id, when = rec.get("id"), rec.get("task_id"), rec.get("create_time")
        credits = _credits(rec.get("cost_credits"))
        if not isinstance(rid, (str, int)) or isinstance(rid, bool) or credits is None:
            return None
        if task_id is not None and not isinstance(task_id, str):
            return None
        if isinstance(when, bool) or not isinstance(when, (str, int, float)):
            return None
        return cls(
            id=str(rid),
            task_type=str(rec.get("task_type")),
            task_id=task_id or None,
            cost_credits=credits,
            create_time=when,
        )


@dataclass(frozen=True)
class UsagePage:
    """One page of ``query_credits_usage``, newest first; ``next_cursor`` is None on the last.

    ``unparsed`` counts records that could not be read; ``problem`` says why the
    page as a whole cannot be read (no list in it). Neither is ever silently
    dropped: a listing with either cannot prove that a create never happened.
    """

    records: tuple[UsageRecord, ...]
    next_cursor: str | None
    unparsed: int = 0
    problem: str | None = None

    @classmethod
    def from_data(cls, data: object) -> UsagePage:
        """A ``query_credits_usage`` answer's ``data``, whatever it names its list and cursor."""
        if not isinstance(data, dict):
            return cls((), None, problem=f"the answer's data is {type(data).__name__}, not a page")
        found = next((k for k in _RECORD_LISTS if isinstance(data.get(k), list)), None)
        if found is None:
            keys = ", ".join(sorted(map(str, data))) or "none"
            return cls((), None, problem=f"the answer holds no list of records (keys: {keys})")
        parsed = [UsageRecord.from_data(rec) for rec in data[found]]
        records = tuple(r for r in parsed if r is not None)
        nxt = data.get("next_cursor") or data.get("nextCursor") or data.get("cursor")
        return cls(
            records=records,
            next_cursor=str(nxt) if nxt else None,
            unparsed=len(parsed) - len(records),
        )
