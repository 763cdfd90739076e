"""The ways real answers differ from the reference's, as pure rewrites of the emulator's own.

Each rewrite takes what the emulator would answer and the settings, and gives
back the variant the settings ask for: the error code under ``code``, statuses
as floats or words, output URLs under another name or as one string, an
unparseable URL, messages padded to megabytes, a query refused with an HTTP
status or an error code.
"""

from __future__ import annotations

from typing import Any

from batchkling.emulator.config import EmulatorConfig

__all__ = [
    "BAD_URL",
    "STATUS_WORDS",
    "padded",
    "place_output_urls",
    "query_refusal",
    "rewrite_payload",
    "status_value",
]

BAD_URL = "http://[::1"  # what urlsplit and httpx both refuse: an IPv6 host left open
# The words of the provider's own tools, in the mixed case a client must accept.
STATUS_WORDS = {0: "Processing", 1: "Completed"}
_FAILED_WORD = "Failed"


def padded(text: str, size: int | None) -> str:
    """``text`` repeated (then cut) to ``size`` characters; as it is when ``size`` is None."""
    if size is None or not text:
        return text
    return (text + " ") * (size // (len(text) + 1)) + text[: size % (len(text) + 1)]


def status_value(status: int, config: EmulatorConfig) -> Any:
    """A task's status as the settings write it: a number, a float, or a word."""
    if config.status_style == "float":
        return float(status)
    if config.status_style == "word":
        if status == config.failed_status:
            return _FAILED_WORD
        return STATUS_WORDS.get(status, status)  # an undocumented status stays a number
    return status


def place_output_urls(data: dict[str, Any], urls: list[str], config: EmulatorConfig) -> None:
    """Put ``urls`` into a query's ``data`` under the configured name, as a list or one string."""
    value: Any = urls
    if config.output_url_single:
        value = next((u for u in urls if u.split("?")[0].endswith(".mp4")), urls[0] if urls else "")
    name = config.output_url_field
    if name == "output.video_url":
        data["output"] = {"video_url": value}
    else:
        data[name] = value


def rewrite_payload(payload: Any, config: EmulatorConfig) -> Any:
    """A JSON wrapper with its error code where the settings put it and its message padded."""
    if not isinstance(payload, dict):
        return payload
    out = dict(payload)
    if config.error_code_field == "code" and "error_code" in out:
        out["code"] = out.pop("error_code")
    if out.get("errorMsg"):
        out["errorMsg"] = padded(str(out["errorMsg"]), config.error_msg_size)
    return out


def query_refusal(config: EmulatorConfig, origin: str) -> tuple[int, Any, dict[str, str]] | None:
    """(HTTP status, payload, headers) of a query the settings refuse, or None.

    A 3xx redirects to another path of the same server.
    """
    status = config.query_http_status
    if status is not None:
        payload = {"success": False, "errorMsg": f"HTTP {status}", "error_code": status}
        headers = {"location": origin + "/moved"} if status < 400 else {}
        return status, payload, headers
    code = config.query_error_code
    if code is not None:
        return 200, {"success": False, "errorMsg": f"refused ({code})", "error_code": code}, {}
    return None
