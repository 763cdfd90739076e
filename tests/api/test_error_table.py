"""Every answer the client cannot use maps to one exception, with the fields a caller acts on."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from batchkling.api.client import SjinnClient
from batchkling.api.gate import RequestGate
from batchkling.errors import (
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
from batchkling.schedule import Rate

pytestmark = pytest.mark.anyio

BODY = {"tool_type": "kling3-image-to-video-api", "input": {"prompt": "p", "image": "https://x/i"}}
KEY_HINT = "Check SJINN_API_KEY or --api-key-file."


def failure(code: Any, msg: str = "no", status: int = 200) -> tuple[int, Any]:
    return status, {"success": False, "errorMsg": msg, "error_code": code}


def client_answering(
    status: int,
    body: Any,
    headers: dict[str, str] | None = None,
    gate: RequestGate | None = None,
) -> SjinnClient:
    """A client whose every request gets this answer."""

    def answer(request: httpx.Request) -> httpx.Response:
        if isinstance(body, str):
            return httpx.Response(status, text=body, headers=headers)
        return httpx.Response(status, content=json.dumps(body).encode(), headers=headers)

    http = httpx.AsyncClient(transport=httpx.MockTransport(answer))
    return SjinnClient(http, base_url="http://api.test", api_key="k", gate=gate)


# (status, body, headers) -> (exception, message, status_code, error_code, retry_after), for a
# create; the same for a query unless a case says otherwise.
CASES: list[tuple[str, tuple[int, Any], dict[str, str] | None, type[BatchklingError], str, Any]] = [
    (
        "429",
        (429, {}),
        None,
        TransientError,
        "create_tool_task: HTTP 429 (rate limited).",
        (429, None, None),
    ),
    (
        "429 with Retry-After",
        (429, {}),
        {"Retry-After": "7"},
        TransientError,
        "create_tool_task: HTTP 429 (rate limited).",
        (429, None, 7.0),
    ),
    (
        "429 wrapped",
        failure(429, "slow down", 429),
        {"Retry-After": "2"},
        TransientError,
        "create_tool_task: HTTP 429 (rate limited).",
        (429, None, 2.0),
    ),
    (
        "503 with Retry-After",
        (503, "<html/>"),
        {"Retry-After": "3"},
        TransientError,
        "create_tool_task: HTTP 503 (unavailable).",
        (503, None, 3.0),
    ),
    (
        "503 without",
        (503, "<html/>"),
        None,
        InDoubtError,
        "create_tool_task: HTTP 503 (no usable answer).",
        (503, None, None),
    ),
    (
        "408",
        (408, {}),
        {"Retry-After": "4"},
        TransientError,
        "create_tool_task: HTTP 408 (request timeout).",
        (408, None, None),
    ),
    (
        "401",
        (401, {}),
        None,
        AuthError,
        f"The API key was not accepted (HTTP 401). {KEY_HINT}",
        None,
    ),
    (
        "403",
        (403, "forbidden"),
        None,
        AuthError,
        f"The API key was not accepted (HTTP 403). {KEY_HINT}",
        None,
    ),
    (
        "402",
        (402, {}),
        None,
        InsufficientBalanceError,
        "The account's balance is too low (HTTP 402).",
        None,
    ),
    (
        "500 wrapped",
        failure(500, "boom", 500),
        {"Retry-After": "1"},
        InDoubtError,
        "create_tool_task: HTTP 500 (no usable answer).",
        (500, None, 1.0),
    ),
    (
        "502 html",
        (502, "<html>Bad Gateway</html>"),
        None,
        InDoubtError,
        "create_tool_task: HTTP 502 (no usable answer).",
        (502, None, None),
    ),
    (
        "504",
        (504, {}),
        None,
        InDoubtError,
        "create_tool_task: HTTP 504 (no usable answer).",
        (504, None, None),
    ),
    (
        "200 not JSON",
        (200, "ok"),
        None,
        InDoubtError,
        "create_tool_task: HTTP 200 (no usable answer).",
        (200, None, None),
    ),
    (
        "200 unwrapped",
        (200, {"task_id": "t"}),
        None,
        InDoubtError,
        "create_tool_task: HTTP 200 (no usable answer).",
        (200, None, None),
    ),
    (
        "400 plain",
        (400, "bad"),
        None,
        RefusedError,
        "create_tool_task: HTTP 400 (refused).",
        (400, None, None),
    ),
    (
        "418",
        (418, {}),
        None,
        RefusedError,
        "create_tool_task: HTTP 418 (refused).",
        (418, None, None),
    ),
    (
        "error 401",
        failure(401, "invalid API key"),
        None,
        AuthError,
        f"The API key was not accepted (invalid API key). {KEY_HINT}",
        None,
    ),
    (
        "error 401 as HTTP",
        failure(401, "invalid API key", 401),
        None,
        AuthError,
        f"The API key was not accepted (invalid API key). {KEY_HINT}",
        None,
    ),
    (
        "error 101",
        failure(101, "membership required"),
        None,
        MembershipError,
        "The account has no active membership (membership required). "
        "Task creation needs an active subscription.",
        None,
    ),
    (
        "error 100",
        failure(100, "insufficient balance", 402),
        None,
        InsufficientBalanceError,
        "The account's balance is too low (insufficient balance). "
        "Top up the account, then run again to resume.",
        None,
    ),
    (
        "error 100 without message",
        failure(100, "  "),
        None,
        InsufficientBalanceError,
        "The account's balance is too low (no message). "
        "Top up the account, then run again to resume.",
        None,
    ),
    (
        "error 400",
        failure(400, "prompt is required"),
        {"Retry-After": "5"},
        RefusedError,
        "create_tool_task: the API refused the input: prompt is required.",
        (200, 400, None),
    ),
    (
        "error 400 as HTTP",
        failure(400, "image is required", 400),
        None,
        RefusedError,
        "create_tool_task: the API refused the input: image is required.",
        (400, 400, None),
    ),
    (
        "not found by message",
        failure(404, "Task Not Found"),
        None,
        TaskNotFoundError,
        "create_tool_task: Task Not Found.",
        (200, 404, None),
    ),
    (
        "not found beats 400",
        failure(400, "image not found"),
        None,
        TaskNotFoundError,
        "create_tool_task: image not found.",
        (200, 400, None),
    ),
    (
        "not found with a text code",
        failure("E404", "task not found"),
        None,
        TaskNotFoundError,
        "create_tool_task: task not found.",
        (200, "E404", None),
    ),
    (
        "account code beats not found",
        failure(101, "plan not found"),
        None,
        MembershipError,
        "The account has no active membership (plan not found). "
        "Task creation needs an active subscription.",
        None,
    ),
    (
        "unknown code",
        failure(102, "quota exhausted"),
        {"Retry-After": "9"},
        TransientError,
        "create_tool_task: refused with error 102: quota exhausted.",
        (200, 102, 9.0),
    ),
    (
        "unknown code as HTTP",
        failure(102, "try later", 409),
        None,
        TransientError,
        "create_tool_task: refused with error 102: try later.",
        (409, 102, None),
    ),
    (
        "too many tasks",
        failure(102, "too many tasks"),
        {"Retry-After": "9"},
        ConcurrencyLimitError,
        "create_tool_task: refused, too many tasks generating at once (too many tasks).",
        (200, 102, 9.0),
    ),
    (
        "Kling's 1303",
        failure(1303, "over resource pack limit", 409),
        None,
        ConcurrencyLimitError,
        "create_tool_task: refused, too many tasks generating at once (over resource pack limit).",
        (409, 1303, None),
    ),
    (
        "429 about running tasks",
        failure(429, "too many running tasks: at most 2 at once", 429),
        {"Retry-After": "3"},
        ConcurrencyLimitError,
        "create_tool_task: refused, too many tasks generating at once "
        "(too many running tasks: at most 2 at once).",
        (429, None, 3.0),
    ),
    (
        "rate limit by message",
        failure(1302, "rate limit exceeded"),
        None,
        TransientError,
        "create_tool_task: refused with error 1302: rate limit exceeded.",
        (200, 1302, None),
    ),
    (
        "the code in code",
        (200, {"success": False, "errorMsg": "membership required", "code": 101}),
        None,
        MembershipError,
        "The account has no active membership (membership required). "
        "Task creation needs an active subscription.",
        None,
    ),
    (
        "code without success",
        (200, {"code": 100, "msg": "balance low"}),
        None,
        InsufficientBalanceError,
        "The account's balance is too low (balance low). "
        "Top up the account, then run again to resume.",
        None,
    ),
    (
        "an unknown code without success",
        (200, {"code": 7, "msg": "who knows"}),
        None,
        InDoubtError,
        "create_tool_task: HTTP 200 (no usable answer).",
        (200, None, None),
    ),
    (
        "a redirect",
        (302, ""),
        {"Location": "https://sjinn.ai/login"},
        InDoubtError,
        "create_tool_task: HTTP 302 (a redirect to 'https://sjinn.ai/login'; it may have been "
        "processed). API requests are not redirected: check --api-base or SJINN_API_BASE.",
        (302, None, None),
    ),
    (
        "a text code",
        failure("busy", "later"),
        None,
        TransientError,
        "create_tool_task: refused with error busy: later.",
        (200, None, None),
    ),
    (
        "no code",
        (200, {"success": False}),
        None,
        TransientError,
        "create_tool_task: refused with error None: no message.",
        (200, None, None),
    ),
    (
        "a list as code",
        failure([1], "odd"),
        None,
        TransientError,
        "create_tool_task: refused with error [1]: odd.",
        (200, None, None),
    ),
    (
        "success not a bool",
        (200, {"success": "yes", "data": {}}),
        None,
        InDoubtError,
        "create_tool_task: HTTP 200 (no usable answer).",
        (200, None, None),
    ),
]


@pytest.mark.parametrize(
    ("answer", "headers", "error", "message", "fields"),
    [pytest.param(*case[1:], id=case[0]) for case in CASES],
)
async def test_each_answer_maps_to_its_exception(
    answer: tuple[int, Any],
    headers: dict[str, str] | None,
    error: type[BatchklingError],
    message: str,
    fields: tuple[int | None, Any, float | None] | None,
) -> None:
    """A create's failed answer raises exactly this class, message and structured fields."""
    client = client_answering(*answer, headers=headers)
    with pytest.raises(BatchklingError) as caught:
        await client.create(BODY)
    assert type(caught.value) is error
    assert str(caught.value) == message
    if fields is not None:
        exc = caught.value
        assert isinstance(exc, (TransientError, InDoubtError, RefusedError, TaskNotFoundError))
        assert (exc.status_code, exc.error_code, exc.retry_after) == fields


async def test_a_404_is_a_refusal_for_a_create_and_an_unknown_task_for_a_query() -> None:
    """A create names no task, so its 404 is a refusal; a query's 404 means the task is unknown."""
    client = client_answering(404, "missing")
    with pytest.raises(RefusedError) as created:
        await client.create(BODY)
    assert type(created.value) is RefusedError
    assert str(created.value) == "create_tool_task: HTTP 404 (refused)."
    with pytest.raises(TaskNotFoundError) as queried:
        await client.query("t1")
    assert str(queried.value) == "query_tool_task_status: HTTP 404 (not found)."
    assert queried.value.status_code == 404


@pytest.mark.parametrize(
    ("answer", "headers", "pushed"),
    [
        pytest.param((429, {}), None, True, id="429"),
        pytest.param((503, ""), {"Retry-After": "1"}, True, id="503 with Retry-After"),
        pytest.param((502, ""), None, True, id="502"),
        # A refusal for too many tasks at once is about concurrency, not the pace of
        # requests: the runner lowers its limit, and polls are not held back.
        pytest.param(failure(102, "limit"), None, False, id="unknown code"),
        pytest.param(failure(1303, "parallel"), None, False, id="concurrency"),
        pytest.param((401, {}), None, False, id="401"),
        pytest.param(failure(400, "bad"), None, False, id="error 400"),
        pytest.param(failure(100, "low"), None, False, id="error 100"),
        pytest.param((418, {}), None, False, id="418"),
    ],
)
async def test_only_transient_and_in_doubt_answers_push_the_gate_back(
    answer: tuple[int, Any], headers: dict[str, str] | None, pushed: bool
) -> None:
    """The server pushing back (429, 5xx, a limit) counts toward the breaker; a refusal does not."""
    gate = RequestGate(Rate(1000, 1.0), breaker_threshold=1)
    client = client_answering(*answer, headers=headers, gate=gate)
    with pytest.raises(BatchklingError):
        await client.create(BODY)
    assert (gate.pauses == 1) is pushed


async def test_a_connection_error_does_not_push_the_gate_back() -> None:
    """Nothing reached the server: no pause for everyone."""

    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    gate = RequestGate(Rate(1000, 1.0), breaker_threshold=1)
    http = httpx.AsyncClient(transport=httpx.MockTransport(refuse))
    client = SjinnClient(http, base_url="http://api.test", api_key="k", gate=gate)
    with pytest.raises(TransientError) as caught:
        await client.create(BODY)
    assert str(caught.value) == "create_tool_task: could not connect (ConnectError)."
    assert gate.pauses == 0 and gate.calls == 1


@pytest.mark.parametrize(
    ("raised", "message"),
    [
        (httpx.ReadTimeout("slow"), "create_tool_task: no answer (ReadTimeout: slow)."),
        (
            httpx.RemoteProtocolError("gone"),
            "create_tool_task: no answer (RemoteProtocolError: gone).",
        ),
        (RuntimeError("odd"), "create_tool_task: no answer (RuntimeError)."),
    ],
)
async def test_a_send_that_may_have_arrived_is_in_doubt(raised: Exception, message: str) -> None:
    """A timeout after sending, a dropped connection or a foreign failure may have been charged."""

    def fail(request: httpx.Request) -> httpx.Response:
        raise raised

    http = httpx.AsyncClient(transport=httpx.MockTransport(fail))
    client = SjinnClient(http, base_url="http://api.test", api_key="k")
    with pytest.raises(InDoubtError) as caught:
        await client.create(BODY)
    assert str(caught.value) == message and caught.value.status_code is None
    assert caught.value.__cause__ is raised


async def test_a_success_without_a_task_id_is_in_doubt() -> None:
    """The create succeeded but named no task: it may be charged and cannot be followed."""
    client = client_answering(200, {"success": True, "data": {"task_id": ""}})
    with pytest.raises(InDoubtError, match="a success without a task id"):
        await client.create(BODY)
