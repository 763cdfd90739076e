"""What the sjinn API answers, as frozen values."""

from __future__ import annotations

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


@dataclass(frozen=True)
class UsageRecord:
    """One charge in the account's credits usage."""

    id: str
    task_type: str
    task_id: str | None
    cost_credits: float
    create_time: str


@dataclass(frozen=True)
class UsagePage:
    records: tuple[UsageRecord, ...]
    next_cursor: str | None
