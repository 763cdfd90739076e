"""What an answer that is not a success means: one table from status and error code to exception.

The exception's class is what the caller acts on, and for a create it decides
whether money may have been spent:

    TransientError      provably not processed: retry it
    InDoubtError        may have been processed: a create may have been charged
    RefusedError        refused as sent: retrying changes nothing
    TaskNotFoundError   the server does not know the task
    AccountError        nothing more can be created with this key

An answer is read in this order: a ``success: false`` body (outside the
statuses of an overloaded server) by its ``error_code`` (``BY_ERROR_CODE``);
else the HTTP status (``BY_STATUS_WITH_RETRY_AFTER`` when the answer says when
to come back, then the endpoint's ``BY_STATUS``); else a 5xx, or a 200 that is
not a success, is in doubt and anything else refused.
"""

from __future__ import annotations

import email.utils
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import httpx

from batchkling.errors import (
    AccountError,
    ApiError,
    AuthError,
    BatchklingError,
    InDoubtError,
    InsufficientBalanceError,
    MembershipError,
    RefusedError,
    TaskNotFoundError,
    TransientError,
)

__all__ = [
    "BY_ERROR_CODE",
    "BY_STATUS",
    "BY_STATUS_WITH_RETRY_AFTER",
    "CREATE_BY_STATUS",
    "Meaning",
    "parse_retry_after",
    "unwrap",
]


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or an HTTP date)."""
    if value is None:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


@dataclass(frozen=True)
class Meaning:
    """One row of the error table: the exception a failed answer raises.

    The class says what the caller may do: ``TransientError`` (provably not
    processed, retry), ``InDoubtError`` (may have been processed: a create may
    be charged), ``RefusedError`` / ``TaskNotFoundError`` (retrying changes
    nothing), an ``AccountError`` (nothing more can be created with this key).
    ``text`` is formatted with ``what`` (the endpoint), ``code`` (the HTTP
    status), ``err`` (the API's error code) and ``msg`` (its ``errorMsg``).
    """

    error: type[BatchklingError]
    text: str
    hint: str | None = None
    retry_after: bool = False  # the error carries the server's Retry-After
    error_code: int | None = None  # the API error code the error carries

    def exception(
        self,
        *,
        what: str,
        code: int,
        retry_after: float | None,
        err: Any = None,
        msg: str = "",
        error_code: Any = None,
    ) -> BatchklingError:
        """The exception for one answer; ``error_code`` overrides the row's."""
        message = self.text.format(what=what, code=code, err=err, msg=msg)
        error = self.error
        if issubclass(error, ApiError):
            return error(
                message,
                status_code=code,
                error_code=self.error_code if error_code is None else error_code,
                retry_after=retry_after if self.retry_after else None,
            )
        return error(message, hint=self.hint)


_KEY_HINT = "Check SJINN_API_KEY or --api-key-file."
_KEY_REFUSED = Meaning(AuthError, "The API key was not accepted (HTTP {code}).", hint=_KEY_HINT)

# What an HTTP status means when the body is not a functional error. A status not
# here: a 5xx (or a 200 that is not a success) is in doubt, anything else refused.
BY_STATUS: Mapping[int, Meaning] = {
    429: Meaning(TransientError, "{what}: HTTP {code} (rate limited).", retry_after=True),
    408: Meaning(TransientError, "{what}: HTTP {code} (request timeout)."),
    401: _KEY_REFUSED,
    403: _KEY_REFUSED,
    402: Meaning(InsufficientBalanceError, "The account's balance is too low (HTTP {code})."),
    404: Meaning(TaskNotFoundError, "{what}: HTTP {code} (not found)."),
}
# A create names no task: its 404 is a refusal of the request, not an unknown task.
CREATE_BY_STATUS: Mapping[int, Meaning] = {k: v for k, v in BY_STATUS.items() if k != 404}
# A server that says when to come back has not processed the request.
BY_STATUS_WITH_RETRY_AFTER: Mapping[int, Meaning] = {
    503: Meaning(TransientError, "{what}: HTTP {code} (unavailable).", retry_after=True),
}
# The server may have acted before failing: a create may be charged.
_NO_USABLE_ANSWER = Meaning(
    InDoubtError, "{what}: HTTP {code} (no usable answer).", retry_after=True
)
_REFUSED = Meaning(RefusedError, "{what}: HTTP {code} (refused).")
# Answers of an overloaded server: a ``success: false`` body in one is not a functional error.
_OVERLOADED = frozenset({429, 500, 502, 503, 504})

# The ``error_code`` of a ``success: false`` answer (100.0 is 100). An account error
# wins over a message saying "not found", which wins over the other codes.
BY_ERROR_CODE: Mapping[float, Meaning] = {
    401: Meaning(AuthError, "The API key was not accepted ({msg}).", hint=_KEY_HINT),
    101: Meaning(
        MembershipError,
        "The account has no active membership ({msg}).",
        hint="Task creation needs an active subscription.",
    ),
    100: Meaning(
        InsufficientBalanceError,
        "The account's balance is too low ({msg}).",
        hint="Top up the account, then run again to resume.",
    ),
    400: Meaning(RefusedError, "{what}: the API refused the input: {msg}.", error_code=400),
}
_NOT_FOUND_MESSAGE = Meaning(TaskNotFoundError, "{what}: {msg}.")
# Any other refusal (a limit, an unknown code) created nothing: retry later.
_OTHER_CODE = Meaning(TransientError, "{what}: refused with error {err}: {msg}.", retry_after=True)


def unwrap(resp: httpx.Response, what: str, by_status: Mapping[int, Meaning]) -> Any:
    """The ``data`` of a successful answer from endpoint ``what``; else raise what it means.

    ``by_status`` is the endpoint's table of HTTP statuses (``BY_STATUS``, or
    ``CREATE_BY_STATUS`` for a create).
    """
    code = resp.status_code
    retry_after = parse_retry_after(resp.headers.get("Retry-After"))
    try:
        body: Any = resp.json()
    except ValueError:
        body = None
    wrapped = isinstance(body, dict) and "success" in body
    if code == 200 and wrapped and body.get("success") is True:
        return body.get("data")
    if wrapped and body.get("success") is False and code not in _OVERLOADED:
        raise _functional_error(body, what, code, retry_after)
    meaning = None
    if retry_after is not None:
        meaning = BY_STATUS_WITH_RETRY_AFTER.get(code)
    if meaning is None:
        meaning = by_status.get(code)
    if meaning is None:
        meaning = _NO_USABLE_ANSWER if code >= 500 or code == 200 else _REFUSED
    raise meaning.exception(what=what, code=code, retry_after=retry_after)


def _functional_error(
    body: Mapping[str, Any], what: str, code: int, retry_after: float | None
) -> BatchklingError:
    err = body.get("error_code")
    msg = str(body.get("errorMsg") or "").strip() or "no message"
    # Only a number can match a row (a JSON list or object is not even hashable).
    meaning = BY_ERROR_CODE.get(err) if isinstance(err, (int, float)) else None
    error_code = None
    if (meaning is None or not issubclass(meaning.error, AccountError)) and (
        "not found" in msg.lower()
    ):
        meaning, error_code = _NOT_FOUND_MESSAGE, err
    elif meaning is None:
        meaning, error_code = _OTHER_CODE, err if isinstance(err, int) else None
    return meaning.exception(
        what=what, code=code, retry_after=retry_after, err=err, msg=msg, error_code=error_code
    )
