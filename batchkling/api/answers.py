"""What the sjinn API answers, as frozen values, each read from the answer's ``data``.

Reading is lenient: a field of an unexpected type is dropped, not an error, because
a status poll or a usage page that cannot be read at all is retried by the caller.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any
from urllib.parse import urlsplit

import httpx

__all__ = [
    "MAX_MESSAGE",
    "OUTPUT_URL_FIELDS",
    "Account",
    "Phase",
    "TaskStatus",
    "UsagePage",
    "UsageRecord",
    "clip",
    "pick_video",
    "read_status",
    "url_problem",
]

# The most of a message from the API (``errorMsg``, a failure reason) that is kept:
# a server can send megabytes, and every message ends up in a ledger line or on a terminal.
MAX_MESSAGE = 2000
# Where answers have been seen to put the output URLs, in the order they are read;
# ``data.output.video_url`` besides.
OUTPUT_URL_FIELDS = ("output_urls", "output_url_list", "output_url", "outputUrls", "urls", "url")


def clip(text: str, limit: int = MAX_MESSAGE) -> str:
    """``text`` cut to at most ``limit`` characters, ending in "…" where it was cut."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def url_problem(url: str) -> str | None:
    """Why ``url`` cannot be downloaded (not an absolute http(s) URL), or None if it can."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 (reading it checks it)
        httpx.URL(url)
    except (ValueError, httpx.InvalidURL) as exc:
        return f"{clip(url, 200)!r} is not a valid URL ({clip(str(exc), 200)})"
    if parts.scheme.lower() not in ("http", "https"):
        return f"{clip(url, 200)!r} is not an http or https URL"
    if not parts.hostname or any(c.isspace() for c in parts.netloc):
        return f"{clip(url, 200)!r} names no valid host"
    return None


def pick_video(urls: Sequence[str]) -> str:
    """The first URL whose path ends in ``.mp4``, else the first (``urls`` is not empty)."""
    for url in urls:
        if url.split("?", 1)[0].lower().endswith(".mp4"):
            return url
    return urls[0]


class Phase(Enum):
    """Where a task is, as far as its status says."""

    RUNNING = "running"
    COMPLETED = "completed"  # finished on the server; a success only with an output URL
    FAILED = "failed"  # failed, cancelled or deleted
    UNKNOWN = "unknown"  # a value the reference does not document: treated as running


_PHASE_OF_CODE = {0: Phase.RUNNING, 1: Phase.COMPLETED, -1: Phase.FAILED}
_CODE_OF_PHASE = {phase: code for code, phase in _PHASE_OF_CODE.items()}
# The words the provider's own tools and public clients use, compared ignoring case.
_PHASE_OF_WORD = {
    **dict.fromkeys(
        ("created", "pending", "queued", "submitted", "processing", "running", "in_progress"),
        Phase.RUNNING,
    ),
    **dict.fromkeys(("completed", "succeed", "succeeded", "success"), Phase.COMPLETED),
    **dict.fromkeys(("failed", "failure", "cancelled", "canceled", "deleted"), Phase.FAILED),
}
_NUMBER_TEXT = re.compile(r"[+-]?[0-9]+(?:\.0*)?")


def read_status(value: object) -> tuple[Phase, int | None]:
    """The phase a ``status`` value stands for, and its number (0, 1, -1, or as sent).

    Numbers 0, 1 and -1 (also as ``1.0`` or ``"1"``) and the documented words in
    any case are known; anything else is ``UNKNOWN``, with its number when it is a
    whole number. A boolean is never a status.
    """
    if isinstance(value, str):
        word = value.strip().lower().replace(" ", "_").replace("-", "_")
        if word in _PHASE_OF_WORD:
            phase = _PHASE_OF_WORD[word]
            return phase, _CODE_OF_PHASE[phase]
        if not _NUMBER_TEXT.fullmatch(word):
            return Phase.UNKNOWN, None
        value = int(float(word))
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        return Phase.UNKNOWN, None
    return _PHASE_OF_CODE.get(value, Phase.UNKNOWN), value


def _url_values(data: Mapping[str, Any]) -> Iterator[object]:
    for name in OUTPUT_URL_FIELDS:
        yield data.get(name)
    output = data.get("output")
    if isinstance(output, dict):
        yield output.get("video_url")


def _output_urls(data: Mapping[str, Any]) -> tuple[tuple[str, ...], str | None]:
    """Every usable output URL of an answer, in order, once; and why the first bad one is not."""
    urls: list[str] = []
    problem = None
    for value in _url_values(data):
        items = value if isinstance(value, list) else [value]
        for url in items:
            if not isinstance(url, str) or not url.strip() or url.strip() in urls:
                continue
            url = url.strip()
            why = url_problem(url)
            if why is None:
                urls.append(url)
            elif problem is None:
                problem = f"the output URL {why}"
    return tuple(urls), problem


def _raw(value: object) -> object:
    """A status value as it can be shown: a JSON scalar, a long string cut short."""
    if isinstance(value, str):
        return clip(value, 100)
    if value is None or isinstance(value, (bool, int, float)):
        return value
    return clip(repr(value), 100)


def _text(value: object) -> str | None:
    if value is None or value == "":
        return None
    return clip(value if isinstance(value, str) else str(value))


@dataclass(frozen=True)
class TaskStatus:
    """One answer of ``query_tool_task_status``.

    ``status`` is the number the answer stands for (0 running, 1 completed, -1
    failed, or an undocumented number as sent; None for a word the reference
    does not know); ``raw_status`` is the value exactly as the server sent it.
    ``output_urls`` holds only URLs that can be downloaded; ``url_problem`` says
    why one that was sent cannot.
    """

    task_id: str
    status: int | None
    output_urls: tuple[str, ...] = ()
    error: str | None = None
    phase: Phase | None = None  # None: derived from ``status``
    raw_status: object = None
    url_problem: str | None = None

    def __post_init__(self) -> None:
        if self.phase is None:
            object.__setattr__(self, "phase", read_status(self.status)[0])
        if self.raw_status is None:
            object.__setattr__(self, "raw_status", self.status)

    @property
    def succeeded(self) -> bool:
        """Finished with a video to download: completed, and a usable output URL."""
        return self.phase is Phase.COMPLETED and bool(self.output_urls)

    @property
    def finishing(self) -> bool:
        """Completed, but no usable output URL yet: not a success; poll again."""
        return self.phase is Phase.COMPLETED and not self.output_urls

    @property
    def failed(self) -> bool:
        """Failed, cancelled or deleted on the server."""
        return self.phase is Phase.FAILED

    @property
    def known(self) -> bool:
        """False for a status value the reference does not document (logged, treated as running)."""
        return self.phase is not Phase.UNKNOWN

    def video_url(self) -> str | None:
        """The first output URL ending in ``.mp4``, else the first."""
        return pick_video(self.output_urls) if self.output_urls else None

    @classmethod
    def from_data(
        cls, data: Mapping[str, Any], task_id: str, *, message: str | None = None
    ) -> TaskStatus:
        """A ``query_tool_task_status`` answer; ``task_id`` (the one asked for) if it names none.

        ``message`` is the answer's top-level ``errorMsg``, where some servers put the
        reason a task failed.
        """
        raw_status = data.get("status")
        phase, status = read_status(raw_status)
        urls, problem = _output_urls(data)
        error = _text(data.get("error") or data.get("error_msg") or data.get("errorMsg"))
        if phase is Phase.FAILED and error is None:
            error = _text(message) or (
                f"the task is {raw_status.strip().lower()}" if isinstance(raw_status, str) else None
            )
        answered = data.get("task_id")
        return cls(
            task_id=answered if isinstance(answered, str) and 0 < len(answered) <= 200 else task_id,
            status=status,
            output_urls=urls,
            error=error,
            phase=phase,
            raw_status=_raw(raw_status),
            url_problem=problem,
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
        email, name = data.get("email"), data.get("name")
        subscription = data.get("subscription")
        return cls(
            email=clip(email, 200) if isinstance(email, str) else None,
            name=clip(name, 200) if isinstance(name, str) else None,
            balance=_credits(data.get("balances")),
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
            keys = clip(", ".join(sorted(map(str, data))), 200) or "none"
            return cls((), None, problem=f"the answer holds no list of records (keys: {keys})")
        parsed = [UsageRecord.from_data(rec) for rec in data[found]]
        records = tuple(r for r in parsed if r is not None)
        nxt = data.get("next_cursor") or data.get("nextCursor") or data.get("cursor")
        return cls(
            records=records,
            next_cursor=str(nxt) if nxt else None,
            unparsed=len(parsed) - len(records),
        )
