"""Validation of a ``create_tool_task`` body, as the API reference describes it.

The first problem found is reported, in the reference's wording style
(``errorMsg`` names the field), because the real API answers one error at a
time. Fields the reference does not document are kept in the recorded input
and otherwise ignored.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from batchkling.model import (
    DEFAULT_DURATION,
    DEFAULT_MODE,
    MAX_DURATION,
    MIN_DURATION,
    RATES,
    TOOL_TYPE,
)

__all__ = ["CreateRequest", "InvalidInput", "is_public_url", "parse_create"]


class InvalidInput(Exception):
    """The body breaks a documented rule; the message is the API's ``errorMsg``."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass(frozen=True)
class CreateRequest:
    """A valid create request, normalised: duration parsed and clamped, defaults applied."""

    prompt: str
    image: str
    duration: float
    multi_shot: bool
    model_mode: str
    tail_image_url: str | None
    raw_input: dict[str, Any]

    @property
    def cost(self) -> float:
        """Credits charged at creation: the clamped duration times the mode's rate."""
        return self.duration * RATES[self.model_mode]


def is_public_url(value: object) -> bool:
    """True for a complete http or https URL with a host."""
    if not isinstance(value, str) or not value or value != value.strip():
        return False
    try:
        parts = urlsplit(value)
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.hostname)


def _duration(value: Any) -> float:
    if value is None:
        return float(DEFAULT_DURATION)
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise InvalidInput("duration must be a number of seconds")
    try:
        number = float(value.strip()) if isinstance(value, str) else float(value)
    except ValueError:
        raise InvalidInput("duration must be a number of seconds") from None
    if not math.isfinite(number):
        raise InvalidInput("duration must be a number of seconds")
    return min(max(number, float(MIN_DURATION)), float(MAX_DURATION))


def parse_create(body: Any) -> CreateRequest:
    """The normalised request, or InvalidInput naming the first bad field."""
    if not isinstance(body, dict):
        raise InvalidInput("request body must be a JSON object")
    tool_type = body.get("tool_type")
    if not tool_type:
        raise InvalidInput("tool_type is required")
    if tool_type != TOOL_TYPE:
        raise InvalidInput(f"unsupported tool_type: {tool_type}")
    raw = body.get("input")
    if not isinstance(raw, dict):
        raise InvalidInput("input is required")
    prompt = raw.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        raise InvalidInput("prompt is required")
    image = raw.get("image")
    if image is None or image == "":
        raise InvalidInput("image is required")
    if not is_public_url(image):
        raise InvalidInput("image must be a complete http or https URL")
    duration = _duration(raw.get("duration"))
    multi_shot = raw.get("multi_shot", True)
    if multi_shot is None:
        multi_shot = True
    if not isinstance(multi_shot, bool):
        raise InvalidInput("multi_shot must be true or false")
    mode = raw.get("model_mode")
    mode = DEFAULT_MODE if mode is None else mode
    if not isinstance(mode, str) or mode not in RATES:
        raise InvalidInput('model_mode must be "standard" or "pro"')
    tail = raw.get("tail_image_url")
    if tail is not None and not is_public_url(tail):
        raise InvalidInput("tail_image_url must be a complete http or https URL")
    return CreateRequest(
        prompt=prompt,
        image=image,
        duration=duration,
        multi_shot=multi_shot,
        model_mode=mode,
        tail_image_url=tail,
        raw_input=raw,
    )
