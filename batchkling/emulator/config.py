"""The emulator's settings: one frozen object holding every command-line flag.

The same object is built by ``batchkling mock-server`` from its flags, by tests
directly, and by ``POST /__emulator/config``, which replaces the live settings
with a copy carrying the fields it names (``with_changes``). Values are checked
here, once, so the server never runs with a setting it cannot honour.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import Field, asdict, dataclass, field, fields, replace
from typing import Any

from batchkling.emulator.clips import CLIP_SIZE, check_size, parse_size
from batchkling.emulator.usage_variants import USAGE_DEFECTS

__all__ = [
    "CURSOR_FIELDS",
    "DEFAULT_GEN_SECONDS",
    "DEFAULT_HOST",
    "DEFAULT_PORT",
    "ERROR_CODE_FIELDS",
    "FAILURE_FIELDS",
    "OUTPUT_URL_FIELDS",
    "RUNTIME_FIELDS",
    "STATUS_STYLES",
    "EmulatorConfig",
    "parse_range",
    "parse_sizes",
]

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8765
DEFAULT_GEN_SECONDS = (2.0, 6.0)
CURSOR_FIELDS = ("next_cursor", "nextCursor", "cursor")
FAILURE_FIELDS = ("error", "error_msg", "errorMsg")
ERROR_CODE_FIELDS = ("error_code", "code")
OUTPUT_URL_FIELDS = (
    "output_urls",
    "output_url_list",
    "output_url",
    "outputUrls",
    "urls",
    "url",
    "output.video_url",
)
STATUS_STYLES = ("number", "float", "word")


def parse_range(text: str) -> tuple[float, float]:
    """``"MIN,MAX"`` (or one number for both) as two non-negative floats, MIN <= MAX."""
    parts = [p.strip() for p in text.split(",")]
    if len(parts) == 1:
        parts = parts * 2
    if len(parts) != 2:
        raise ValueError(f"expected MIN,MAX, got {text!r}")
    try:
        low, high = float(parts[0]), float(parts[1])
    except ValueError:
        raise ValueError(f"expected two numbers MIN,MAX, got {text!r}") from None
    return _check_range((low, high), "range")


def _check_range(value: tuple[float, float], name: str) -> tuple[float, float]:
    low, high = value
    if not (math.isfinite(low) and math.isfinite(high)) or low < 0 or high < low:
        raise ValueError(f"{name} must be two numbers 0 <= MIN <= MAX, got {low},{high}")
    return (float(low), float(high))


def _check_rate(value: float, name: str) -> None:
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must be a probability from 0 to 1, got {value}")


# How a field takes a JSON value (``POST /__emulator/config``): its parser, whether
# null is a value, and whether it can change while the server runs.
_Parse = Callable[[str, Any], Any]


def _setting(default: Any, parse: _Parse, *, nullable: bool = False, live: bool = True) -> Any:
    return field(default=default, metadata={"parse": parse, "nullable": nullable, "live": live})


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _a_range(name: str, value: Any) -> tuple[float, float]:
    if isinstance(value, str):
        return parse_range(value)
    if _is_number(value):
        return (float(value), float(value))
    if isinstance(value, list) and len(value) == 2 and all(_is_number(v) for v in value):
        return (float(value[0]), float(value[1]))
    raise ValueError(f'{name} must be [MIN, MAX] or "MIN,MAX"')


def _strings(name: str, value: Any) -> tuple[str, ...]:
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return tuple(value)
    raise ValueError(f"{name} must be a list of strings")


def _a_bool(name: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    raise ValueError(f"{name} must be true or false")


def _an_int(name: str, value: Any) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    raise ValueError(f"{name} must be an integer")


def _a_float(name: str, value: Any) -> float:
    if _is_number(value):
        return float(value)
    raise ValueError(f"{name} must be a number")


def _a_size(name: str, value: Any) -> tuple[int, int]:
    if isinstance(value, str):
        return parse_size(value)
    if isinstance(value, list) and len(value) == 2 and all(type(v) is int for v in value):
        return check_size((value[0], value[1]))
    raise ValueError(f'{name} must be "WxH" or [W, H]')


def _sizes(name: str, value: Any) -> tuple[tuple[int, int], ...]:
    if isinstance(value, str):
        return parse_sizes(value)
    if isinstance(value, list):
        return tuple(_a_size(name, v) for v in value)
    raise ValueError(f'{name} must be "WxH,WxH" or a list of sizes')


def parse_sizes(text: str) -> tuple[tuple[int, int], ...]:
    """``"160x90,320x180"`` as a tuple of frame sizes (empty text: none)."""
    return tuple(parse_size(part) for part in text.split(",") if part.strip())


def _a_str(name: str, value: Any) -> str:
    if isinstance(value, str):
        return value
    raise ValueError(f"{name} must be a string")


@dataclass(frozen=True)
class EmulatorConfig:
    """Every setting of the emulator; the defaults are a well-behaved server."""

    # Accounts and billing. A balance is per key (POST /__emulator/balance sets one).
    api_keys: tuple[str, ...] = _setting((), _strings)  # empty: any non-empty key is accepted
    balance: float | None = _setting(None, _a_float, nullable=True, live=False)  # None: unlimited
    refund_failed: bool = _setting(False, _a_bool)
    no_membership: bool = _setting(False, _a_bool)
    # Inputs: fetch a create's images as the provider does; error 400 when one is no image.
    fetch_images: bool = _setting(False, _a_bool)
    # Generation. The seed only matters when the generators are built.
    gen_seconds: tuple[float, float] = _setting(DEFAULT_GEN_SECONDS, _a_range)
    seed: int | None = _setting(None, _an_int, nullable=True, live=False)
    fail_rate: float = _setting(0.0, _a_float)
    # Variants the API reference leaves open.
    errors_as_http: bool = _setting(False, _a_bool)
    failed_status: int = _setting(-1, _an_int)
    extra_status: int | None = _setting(None, _an_int, nullable=True)
    cursor_field: str = _setting("next_cursor", _a_str)
    # Where a failed task's reason goes: data.error, data.error_msg, or the top-level errorMsg.
    failure_field: str = _setting("error", _a_str)
    cover_url: bool = _setting(False, _a_bool)  # output_urls lists a .png cover before the .mp4
    download_content_type: str = _setting("video/mp4", _a_str)
    # Where the wrapper's error code goes: error_code (documented) or code.
    error_code_field: str = _setting("error_code", _a_str)
    # Where a query puts the output URLs (one of OUTPUT_URL_FIELDS), and as one string.
    output_url_field: str = _setting("output_urls", _a_str)
    output_url_single: bool = _setting(False, _a_bool)
    bad_output_url: bool = _setting(False, _a_bool)  # the video's URL is http://[::1
    # Statuses as numbers (0, 1, -1), floats (0.0, 1.0, -1.0) or words (Processing, ...).
    status_style: str = _setting("number", _a_str)
    # A finished task answers status 1 with no output URL to its first N queries.
    no_url_polls: int = _setting(0, _an_int)
    # Every errorMsg and failure reason padded to this many characters.
    error_msg_size: int | None = _setting(None, _an_int, nullable=True)
    # Every query answered with this HTTP status (a 3xx redirects), or with HTTP 200,
    # success: false and this error code.
    query_http_status: int | None = _setting(None, _an_int, nullable=True)
    query_error_code: int | None = _setting(None, _an_int, nullable=True)
    # Every API answer sent one byte at a time, this many seconds apart.
    trickle: float | None = _setting(None, _a_float, nullable=True)
    # Limits.
    # Requests per second per key.
    rate_limit: int | None = _setting(None, _an_int, nullable=True)
    retry_after: bool = _setting(True, _a_bool)  # send Retry-After with every 429
    # Tasks per key generating at once.
    max_running: int | None = _setting(None, _an_int, nullable=True)
    # Too many running: None answers HTTP 429, else success:false with this code.
    max_running_code: int | None = _setting(None, _an_int, nullable=True)
    # Faults.
    error_rate: float = _setting(0.0, _a_float)
    lost_response_rate: float = _setting(0.0, _a_float)
    latency: tuple[float, float] = _setting((0.0, 0.0), _a_range)
    download_fail_rate: float = _setting(0.0, _a_float)
    # Whole-video answers wrong in a way their framing does not show (see ``media``):
    # two thirds of the file with a Content-Length saying that is all, half of it with
    # no Content-Length, the file gzip-compressed whatever the request accepted.
    download_short_length: bool = _setting(False, _a_bool)
    download_no_length: bool = _setting(False, _a_bool)
    download_gzip: bool = _setting(False, _a_bool)
    # Served clips last this many seconds longer than the task asked (negative: shorter).
    video_duration_offset: float = _setting(0.0, _a_float)
    # The frame size of the served clips; with ``clip_sizes``, each task's clip takes the
    # next size of the list in the order the tasks were created (so takes differ).
    clip_size: tuple[int, int] = _setting(CLIP_SIZE, _a_size)
    clip_sizes: tuple[tuple[int, int], ...] = _setting((), _sizes)
    output_url_ttl: float | None = _setting(None, _a_float, nullable=True)
    usage_lag: float = _setting(0.0, _a_float)
    # The provider's clock, as its credits usage shows it, runs this many seconds ahead of ours.
    usage_clock_offset: float = _setting(0.0, _a_float)
    # One of ``usage_variants.USAGE_DEFECTS``: a usage answer that is wrong in that way.
    usage_defect: str | None = _setting(None, _a_str, nullable=True)
    # Persistence: read when the server starts.
    state_file: str | None = _setting(None, _a_str, nullable=True, live=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "gen_seconds", _check_range(self.gen_seconds, "gen_seconds"))
        object.__setattr__(self, "latency", _check_range(self.latency, "latency"))
        object.__setattr__(self, "api_keys", tuple(self.api_keys))
        object.__setattr__(self, "clip_size", check_size(tuple(self.clip_size)))  # type: ignore[arg-type]
        object.__setattr__(
            self,
            "clip_sizes",
            tuple(check_size(tuple(s)) for s in self.clip_sizes),  # type: ignore[arg-type]
        )
        for name in ("fail_rate", "error_rate", "lost_response_rate", "download_fail_rate"):
            _check_rate(getattr(self, name), name)
        if any(not k for k in self.api_keys):
            raise ValueError("api_keys must not contain an empty key")
        if self.balance is not None and self.balance < 0:
            raise ValueError(f"balance must be >= 0, got {self.balance}")
        if self.rate_limit is not None and self.rate_limit < 1:
            raise ValueError(f"rate_limit must be >= 1 request per second, got {self.rate_limit}")
        if self.max_running is not None and self.max_running < 1:
            raise ValueError(f"max_running must be >= 1, got {self.max_running}")
        if self.output_url_ttl is not None and self.output_url_ttl <= 0:
            raise ValueError(f"output_url_ttl must be > 0 seconds, got {self.output_url_ttl}")
        if self.usage_lag < 0:
            raise ValueError(f"usage_lag must be >= 0 seconds, got {self.usage_lag}")
        if self.usage_defect is not None and self.usage_defect not in USAGE_DEFECTS:
            raise ValueError(f"usage_defect must be one of {', '.join(USAGE_DEFECTS)}")
        if not math.isfinite(self.usage_clock_offset):
            raise ValueError("usage_clock_offset must be a number of seconds")
        if not math.isfinite(self.video_duration_offset):
            raise ValueError("video_duration_offset must be a number of seconds")
        if self.cursor_field not in CURSOR_FIELDS:
            raise ValueError(f"cursor_field must be one of {', '.join(CURSOR_FIELDS)}")
        if self.failure_field not in FAILURE_FIELDS:
            raise ValueError(f"failure_field must be one of {', '.join(FAILURE_FIELDS)}")
        self._check_answer_variants()
        if self.failed_status == 1 or self.extra_status in (1, self.failed_status):
            raise ValueError("failed_status and extra_status must differ from 1 and each other")

    def _check_answer_variants(self) -> None:
        for name, allowed in (
            ("error_code_field", ERROR_CODE_FIELDS),
            ("output_url_field", OUTPUT_URL_FIELDS),
            ("status_style", STATUS_STYLES),
        ):
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {', '.join(allowed)}")
        if self.no_url_polls < 0:
            raise ValueError(f"no_url_polls must be >= 0, got {self.no_url_polls}")
        if self.error_msg_size is not None and not 1 <= self.error_msg_size <= 64_000_000:
            raise ValueError(f"error_msg_size must be 1 to 64,000,000, got {self.error_msg_size}")
        if self.query_http_status is not None and not 300 <= self.query_http_status <= 599:
            raise ValueError(f"query_http_status must be 300 to 599, got {self.query_http_status}")
        if self.trickle is not None and not (math.isfinite(self.trickle) and self.trickle > 0):
            raise ValueError(f"trickle must be > 0 seconds, got {self.trickle}")

    def to_json(self) -> dict[str, Any]:
        """The settings as a JSON object (what ``GET /__emulator/config`` answers)."""
        out = asdict(self)
        for name in ("api_keys", "gen_seconds", "latency", "clip_size"):
            out[name] = list(out[name])
        out["clip_sizes"] = [list(size) for size in self.clip_sizes]
        return out

    def clip_size_of(self, order: int) -> tuple[int, int]:
        """The frame size of the clip of the task created ``order``-th (from 0)."""
        if self.clip_sizes:
            return self.clip_sizes[order % len(self.clip_sizes)]
        return self.clip_size

    def with_changes(self, changes: Mapping[str, Any]) -> EmulatorConfig:
        """A copy with ``changes`` (JSON values) applied; ValueError names a bad field."""
        unknown = sorted(set(changes) - RUNTIME_FIELDS)
        if unknown:
            raise ValueError(
                f"cannot change {', '.join(unknown)} at run time; "
                f"settable: {', '.join(sorted(RUNTIME_FIELDS))}"
            )
        coerced = {name: _coerce(name, value) for name, value in changes.items()}
        return replace(self, **coerced)


_FIELDS: dict[str, Field[Any]] = {f.name: f for f in fields(EmulatorConfig)}

RUNTIME_FIELDS = frozenset(name for name, f in _FIELDS.items() if f.metadata["live"])


def _coerce(name: str, value: Any) -> Any:
    """One JSON value as the field takes it."""
    meta = _FIELDS[name].metadata
    if value is None:
        if meta["nullable"]:
            return None
        raise ValueError(f"{name} cannot be null")
    return meta["parse"](name, value)
