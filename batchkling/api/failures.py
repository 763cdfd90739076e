"""What an answer that is not a success means: one table from status and error code to exception.

The exception's class is what the caller acts on, and for a create it decides
whether money may have been spent:

    TransientError          provably not processed: retry it
    ConcurrencyLimitError   too many tasks generating at once: nothing charged, retry later
    InDoubtError            may have been processed: a create may have been charged
    RefusedError            refused as sent: retrying changes nothing
    TaskNotFoundError       the server does not know the task
    AccountError            nothing more can be created with this key

Each endpoint has a ``Table``. A query changes nothing and costs nothing, so its
table is short: a refused key stops everything, an unknown task is reported, and
any other answer is asked again later (``TransientError``).

An answer is read in this order: a ``success: false`` body (outside the
statuses of an overloaded server) by its error code, read from ``error_code``
or else ``code``; else the HTTP status (``BY_STATUS_WITH_RETRY_AFTER`` when the
answer says when to come back, then the table's ``by_status``); else a 5xx, or a
200 that is not a success, is in doubt and any other status is the table's
``other_status``. A body without ``success`` counts as a wrapper only when its
code is 0 (a success) or one the table lists: a code this module does not know
could be a success in another dialect, so such an answer is never read as a
refusal that charged nothing.

A refusal whose message speaks of parallel tasks, a limit or being busy (or
Kling's error 1303) is a ``ConcurrencyLimitError``; one that speaks of a request
rate (Kling's 1302) stays a plain ``TransientError``.
"""

from __future__ import annotations

import email.utils
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import httpx

from batchkling.api.answers import clip
from batchkling.errors import (
    AccountError,
    ApiError,
    AuthError,
    BatchklingError,
    ConcurrencyLimitError,
    InDoubtError,
    InsufficientBalanceError,
    MembershipError,
    RefusedError,
    TaskNotFoundError,
    TransientError,
)

__all__ = [
    "API_TABLE",
    "BY_ERROR_CODE",
    "BY_STATUS",
    "BY_STATUS_WITH_RETRY_AFTER",
    "CREATE_BY_STATUS",
    "CREATE_TABLE",
    "QUERY_TABLE",
    "Meaning",
    "Table",
    "error_code_of",
    "is_concurrency_refusal",
    "message_of",
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
    ``overloaded`` marks the answers of a server that is overloaded or failing,
    which hold every request back.
    """

    error: type[BatchklingError]
    text: str
    hint: str | None = None
    retry_after: bool = False  # the error carries the server's Retry-After
    error_code: int | None = None  # the API error code the error carries
    overloaded: bool = False

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
                hint=self.hint,
                overloaded=self.overloaded,
            )
        return error(message, hint=self.hint)


@dataclass(frozen=True)
class Table:
    """What the failed answers of one endpoint mean.

    ``by_status``: HTTP statuses (when the body is not a functional error);
    ``by_error_code``: the error codes of ``success: false`` answers;
    ``other_status``: a 4xx neither lists; ``other_code``: a ``success: false``
    with a code not listed, not about a missing task; ``redirect``: a 3xx (API
    requests never follow one).
    """

    by_status: Mapping[int, Meaning]
    by_error_code: Mapping[float, Meaning]
    other_status: Meaning
    other_code: Meaning
    redirect: Meaning


_KEY_HINT = "Check SJINN_API_KEY or --api-key-file."
_KEY_REFUSED = Meaning(AuthError, "The API key was not accepted (HTTP {code}).", hint=_KEY_HINT)
_RATE_LIMITED = Meaning(
    TransientError, "{what}: HTTP {code} (rate limited).", retry_after=True, overloaded=True
)
_REQUEST_TIMEOUT = Meaning(
    TransientError, "{what}: HTTP {code} (request timeout).", overloaded=True
)

# What an HTTP status means when the body is not a functional error. A status not
# here: a 5xx (or a 200 that is not a success) is in doubt, anything else refused.
BY_STATUS: Mapping[int, Meaning] = {
    429: _RATE_LIMITED,
    408: _REQUEST_TIMEOUT,
    401: _KEY_REFUSED,
    403: _KEY_REFUSED,
    402: Meaning(InsufficientBalanceError, "The account's balance is too low (HTTP {code})."),
    404: Meaning(TaskNotFoundError, "{what}: HTTP {code} (not found)."),
}
# A create names no task: its 404 is a refusal of the request, not an unknown task.
CREATE_BY_STATUS: Mapping[int, Meaning] = {k: v for k, v in BY_STATUS.items() if k != 404}
# A server that says when to come back has not processed the request.
BY_STATUS_WITH_RETRY_AFTER: Mapping[int, Meaning] = {
    503: Meaning(
        TransientError, "{what}: HTTP {code} (unavailable).", retry_after=True, overloaded=True
    ),
}
# The server may have acted before failing: a create may be charged.
_NO_USABLE_ANSWER = Meaning(
    InDoubtError, "{what}: HTTP {code} (no usable answer).", retry_after=True, overloaded=True
)
_REFUSED = Meaning(RefusedError, "{what}: HTTP {code} (refused).")
_REDIRECT_HINT = "API requests are not redirected: check --api-base or SJINN_API_BASE."
# A create answered with a redirect may have been processed first (POST, then 303).
_CREATE_REDIRECTED = Meaning(
    InDoubtError,
    "{what}: HTTP {code} (a redirect to {msg}; it may have been processed).",
    _REDIRECT_HINT,
)
_REDIRECTED = Meaning(RefusedError, "{what}: HTTP {code} (a redirect to {msg}).", _REDIRECT_HINT)
# Answers of an overloaded server: a ``success: false`` body in one is not a functional error.
_OVERLOADED = frozenset({429, 500, 502, 503, 504})

# The error code of a ``success: false`` answer (100.0 is 100). An account error
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
_OTHER_CODE = Meaning(
    TransientError,
    "{what}: refused with error {err}: {msg}.",
    retry_after=True,
    overloaded=True,
)
_CONCURRENCY = Meaning(
    ConcurrencyLimitError,
    "{what}: refused, too many tasks generating at once ({msg}).",
    retry_after=True,
    overloaded=True,
)

API_TABLE = Table(BY_STATUS, BY_ERROR_CODE, _REFUSED, _OTHER_CODE, _REDIRECTED)
CREATE_TABLE = Table(CREATE_BY_STATUS, BY_ERROR_CODE, _REFUSED, _OTHER_CODE, _CREATE_REDIRECTED)
# A query changes nothing: only a refused key and an unknown task mean more than "ask again".
QUERY_TABLE = Table(
    by_status={429: _RATE_LIMITED, 408: _REQUEST_TIMEOUT, 401: _KEY_REFUSED, 404: BY_STATUS[404]},
    by_error_code={401: BY_ERROR_CODE[401]},
    other_status=Meaning(TransientError, "{what}: HTTP {code} (unexpected; asked again later)."),
    other_code=Meaning(
        TransientError, "{what}: refused with error {err}: {msg} (asked again later)."
    ),
    redirect=Meaning(TransientError, "{what}: HTTP {code} (a redirect to {msg}; not followed)."),
)

_CONCURRENCY_CODES = frozenset({1303})
_RATE_CODES = frozenset({1302})
_RATE_WORDS = re.compile(r"\brate\b|too many requests|frequen|per (?:second|minute)|\bqps\b", re.I)
_CONCURRENCY_WORDS = re.compile(
    r"concurren|parallel|at once|running|busy|in progress|\blimit|too many|resource pack|queue",
    re.I,
)


def is_concurrency_refusal(err: Any, msg: str) -> bool:
    """Whether a refusal says the account has too many tasks generating now."""
    number = err if isinstance(err, int) and not isinstance(err, bool) else None
    if number in _CONCURRENCY_CODES:
        return True
    if number in _RATE_CODES or _RATE_WORDS.search(msg):
        return False
    return _CONCURRENCY_WORDS.search(msg) is not None


def _number(value: Any) -> Any:
    """A numeric string as its number; anything else as it is."""
    if isinstance(value, str) and re.fullmatch(r"-?[0-9]+", value.strip()):
        return int(value)
    return value


def error_code_of(body: Mapping[str, Any]) -> Any:
    """The error code of an answer: ``error_code``, else ``code`` when that one is absent or 0."""
    documented = _number(body.get("error_code"))
    if documented not in (None, 0):
        return documented
    other = _number(body.get("code"))
    return documented if other is None else other


def message_of(body: Mapping[str, Any]) -> str:
    """The answer's message (``errorMsg``, else ``message`` or ``msg``), cut to a sane length."""
    for name in ("errorMsg", "message", "msg"):
        value = body.get(name)
        if isinstance(value, str) and value.strip():
            return clip(value.strip())
    return ""


def _verdict(body: Any, table: Table) -> bool | None:
    """True for a success wrapper, False for a functional failure, None for no wrapper."""
    if not isinstance(body, dict):
        return None
    if "success" in body:
        success = body["success"]
        return success if isinstance(success, bool) else None
    err = error_code_of(body)
    if err == 0 and ("error_code" in body or "code" in body):
        return True
    known = isinstance(err, (int, float)) and not isinstance(err, bool)
    return False if known and err in table.by_error_code else None


def unwrap(resp: httpx.Response, what: str, table: Table = API_TABLE) -> Any:
    """A successful answer from endpoint ``what`` (the wrapper, a dict); else raise what it means.

    ``table`` is the endpoint's (``API_TABLE``, ``CREATE_TABLE`` or ``QUERY_TABLE``).
    """
    code = resp.status_code
    retry_after = parse_retry_after(resp.headers.get("Retry-After"))
    try:
        body: Any = resp.json()
    except ValueError:
        body = None
    verdict = _verdict(body, table)
    if code == 200 and verdict is True:
        return body
    if verdict is False and code not in _OVERLOADED:
        raise _functional_error(body, what, code, retry_after, table)
    err = error_code_of(body) if isinstance(body, dict) else None
    msg = message_of(body) if isinstance(body, dict) else ""
    if 300 <= code < 400:
        msg = repr(clip(resp.headers.get("Location", ""), 200))
    meaning = _status_meaning(code, err, msg, table, retry_after is not None)
    raise meaning.exception(what=what, code=code, retry_after=retry_after, err=err, msg=msg)


def _status_meaning(code: int, err: Any, msg: str, table: Table, has_retry_after: bool) -> Meaning:
    if code == 429 and is_concurrency_refusal(err, msg):
        return _CONCURRENCY
    meaning = BY_STATUS_WITH_RETRY_AFTER.get(code) if has_retry_after else None
    if meaning is None:
        meaning = table.by_status.get(code)
    if meaning is None and 300 <= code < 400:
        meaning = table.redirect
    if meaning is None:
        meaning = _NO_USABLE_ANSWER if code >= 500 or code == 200 else table.other_status
    return meaning


def _functional_error(
    body: Mapping[str, Any], what: str, code: int, retry_after: float | None, table: Table
) -> BatchklingError:
    err = error_code_of(body)
    msg = message_of(body) or "no message"
    # Only a number can match a row (a JSON list or object is not even hashable).
    number = isinstance(err, (int, float)) and not isinstance(err, bool)
    meaning = table.by_error_code.get(err) if number else None
    error_code = None
    if (meaning is None or not issubclass(meaning.error, AccountError)) and (
        "not found" in msg.lower()
    ):
        meaning, error_code = _NOT_FOUND_MESSAGE, err
    elif meaning is None:
        meaning = _CONCURRENCY if is_concurrency_refusal(err, msg) else table.other_code
        error_code = err if isinstance(err, int) and not isinstance(err, bool) else None
    return meaning.exception(
        what=what, code=code, retry_after=retry_after, err=err, msg=msg, error_code=error_code
    )
