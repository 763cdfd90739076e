"""The real API's variants, each shown by an emulator switch: codes, URLs, statuses, refusals."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from batchkling.api.answers import MAX_MESSAGE, Phase, TaskStatus, clip, read_status, url_problem
from batchkling.api.client import SjinnClient, make_http_client
from batchkling.api.gate import RequestGate
from batchkling.emulator.config import OUTPUT_URL_FIELDS
from batchkling.errors import (
    AuthError,
    ConcurrencyLimitError,
    InDoubtError,
    InsufficientBalanceError,
    MembershipError,
    RefusedError,
    TaskNotFoundError,
    TransientError,
)
from batchkling.schedule import Rate
from tests.emulator_fixtures import TEST_KEY, InProcessEmulator, kling_body

pytestmark = pytest.mark.anyio

Factory = Callable[..., InProcessEmulator]
BODY = kling_body()


def client_for(emu: InProcessEmulator, http: httpx.AsyncClient, **kwargs: Any) -> SjinnClient:
    return SjinnClient(http, base_url=emu.base_url, api_key=TEST_KEY, **kwargs)


async def finished_status(emu: InProcessEmulator, *, polls: int = 1) -> list[TaskStatus]:
    """Create one task, let it finish, and query it ``polls`` times."""
    async with make_http_client(transport=emu.transport) as http:
        api = client_for(emu, http)
        task_id = await api.create(BODY)
        assert task_id is not None
        await anyio.sleep(0.03)
        return [await api.query(task_id) for _ in range(polls)]


# -- statuses -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "phase", "number"),
    [
        (0, Phase.RUNNING, 0),
        (1, Phase.COMPLETED, 1),
        (-1, Phase.FAILED, -1),
        (1.0, Phase.COMPLETED, 1),
        (-1.0, Phase.FAILED, -1),
        ("1", Phase.COMPLETED, 1),
        (" Completed ", Phase.COMPLETED, 1),
        ("SUCCEED", Phase.COMPLETED, 1),
        ("success", Phase.COMPLETED, 1),
        ("created", Phase.RUNNING, 0),
        ("Pending", Phase.RUNNING, 0),
        ("processing", Phase.RUNNING, 0),
        ("RUNNING", Phase.RUNNING, 0),
        ("failed", Phase.FAILED, -1),
        ("Cancelled", Phase.FAILED, -1),
        ("deleted", Phase.FAILED, -1),
        (2, Phase.UNKNOWN, 2),
        (1.5, Phase.UNKNOWN, None),
        (float("nan"), Phase.UNKNOWN, None),
        ("rendering", Phase.UNKNOWN, None),
        (True, Phase.UNKNOWN, None),
        (None, Phase.UNKNOWN, None),
        ([1], Phase.UNKNOWN, None),
    ],
)
def test_every_status_form_reads_as_its_phase(value: Any, phase: Phase, number: int | None) -> None:
    """Numbers, floats, numeric strings and words in any case; a boolean is never a status."""
    assert read_status(value) == (phase, number)


def test_a_success_needs_an_output_url_and_keeps_the_raw_value() -> None:
    """Completed without a URL is "finishing", never success; the value sent is kept as sent."""
    done = TaskStatus.from_data({"status": "Completed", "url": "https://cdn.x/v.mp4"}, "t")
    assert done.succeeded and not done.finishing and done.raw_status == "Completed"
    waiting = TaskStatus.from_data({"status": 1, "output_urls": []}, "t")
    assert waiting.finishing and not waiting.succeeded and waiting.known
    odd = TaskStatus.from_data({"status": "rendering"}, "t")
    assert not odd.known and odd.raw_status == "rendering" and odd.status is None
    gone = TaskStatus.from_data({"status": "deleted"}, "t")
    assert gone.failed and gone.error == "the task is deleted"


async def test_string_and_float_statuses_from_the_emulator(emulator_factory: Factory) -> None:
    """--status-style word and float: a finished task is still a success with its video."""
    for style in ("word", "float"):
        emu = emulator_factory(gen_seconds=(0.0, 0.0), status_style=style)
        (status,) = await finished_status(emu)
        assert status.succeeded and status.video_url() is not None
        assert status.raw_status == ("Completed" if style == "word" else 1.0)


async def test_failed_words_carry_the_reason(emulator_factory: Factory) -> None:
    """A failed task answered as a word is failed, with its reason."""
    emu = emulator_factory(gen_seconds=(0.0, 0.0), status_style="word", fail_rate=1.0)
    (status,) = await finished_status(emu)
    assert status.failed and status.raw_status == "Failed"
    assert status.error is not None and status.error.startswith("generation failed")


async def test_status_1_without_a_url_is_still_finishing(emulator_factory: Factory) -> None:
    """--no-url-polls 2: two answers of status 1 with no URL, then the URL; never success early."""
    emu = emulator_factory(gen_seconds=(0.0, 0.0), no_url_polls=2)
    first, second, third = await finished_status(emu, polls=3)
    assert first.finishing and second.finishing
    assert not first.succeeded and not second.succeeded
    assert third.succeeded and not third.finishing


# -- output URLs --------------------------------------------------------------------------


@pytest.mark.parametrize("field", OUTPUT_URL_FIELDS)
@pytest.mark.parametrize("single", [False, True], ids=["list", "string"])
async def test_output_urls_under_every_name(
    emulator_factory: Factory, field: str, single: bool
) -> None:
    """Each field name public clients read, as a list or a single string, gives the video."""
    emu = emulator_factory(
        gen_seconds=(0.0, 0.0), output_url_field=field, output_url_single=single, cover_url=True
    )
    (status,) = await finished_status(emu)
    assert status.succeeded
    video = status.video_url()
    assert video is not None and video.endswith(".mp4")


async def test_a_bad_output_url_is_kept_out_with_a_reason(
    emulator_factory: Factory, tmp_path: Path
) -> None:
    """--bad-output-url: http://[::1 is no usable URL; the reason says why; nothing crashes."""
    emu = emulator_factory(gen_seconds=(0.0, 0.0), bad_output_url=True)
    (status,) = await finished_status(emu)
    assert status.output_urls == () and not status.succeeded and status.finishing
    assert status.url_problem is not None and "http://[::1" in status.url_problem
    async with make_http_client(transport=emu.transport) as http:
        with pytest.raises(RefusedError, match="not valid"):
            await client_for(emu, http).download("http://[::1", tmp_path / "v.mp4")


def test_usable_urls_are_absolute_http() -> None:
    """Only absolute http(s) URLs with a host can be downloaded; any host is fine."""
    assert url_problem("https://render.other-host.example/v.mp4?sig=1") is None
    for bad in ("http://[::1", "ftp://x/v.mp4", "/v.mp4", "http:///v.mp4", "http://x:99999/"):
        assert url_problem(bad) is not None, bad
    mixed = TaskStatus.from_data(
        {"status": 1, "output_urls": ["http://[::1", "https://cdn.x/v.mp4"]}, "t"
    )
    assert mixed.output_urls == ("https://cdn.x/v.mp4",) and mixed.url_problem is not None


# -- error codes and messages -------------------------------------------------------------


async def test_the_error_code_is_read_from_code_everywhere(emulator_factory: Factory) -> None:
    """--error-code-field code: create, query, account and usage refusals map as documented."""
    emu = emulator_factory(error_code_field="code", no_membership=True, api_keys=(TEST_KEY,))
    async with make_http_client(transport=emu.transport) as http:
        api = client_for(emu, http)
        with pytest.raises(MembershipError):
            await api.create(BODY)
        with pytest.raises(TaskNotFoundError):
            await api.query("no-such-task")
        stranger = SjinnClient(http, base_url=emu.base_url, api_key="someone-else")
        for call in (stranger.account, stranger.credits_usage, lambda: stranger.query("t")):
            with pytest.raises(AuthError):
                await call()
    emu = emulator_factory(error_code_field="code", balance=0)
    async with make_http_client(transport=emu.transport) as http:
        with pytest.raises(InsufficientBalanceError):
            await client_for(emu, http).create(BODY)


async def test_a_huge_error_message_is_cut(emulator_factory: Factory) -> None:
    """--error-msg-size 3,000,000: a refusal and a failure reason keep 2,000 characters."""
    emu = emulator_factory(gen_seconds=(0.0, 0.0), fail_rate=1.0, error_msg_size=3_000_000)
    (status,) = await finished_status(emu)
    assert status.failed and status.error is not None and len(status.error) == MAX_MESSAGE
    emu = emulator_factory(no_membership=True, error_msg_size=3_000_000)
    async with make_http_client(transport=emu.transport) as http:
        with pytest.raises(MembershipError) as refused:
            await client_for(emu, http).create(BODY)
    assert len(str(refused.value)) < MAX_MESSAGE + 200
    assert clip("x" * 5000).endswith("…") and len(clip("x" * 5000)) == MAX_MESSAGE


async def test_an_answer_over_8_mb_is_a_clear_error(emulator_factory: Factory) -> None:
    """--error-msg-size 9,000,000: the answer is refused as too large, not read into memory."""
    emu = emulator_factory(no_membership=True, error_msg_size=9_000_000)
    async with make_http_client(transport=emu.transport) as http:
        with pytest.raises(InDoubtError, match="larger than 8 MB"):
            await client_for(emu, http).create(BODY)


# -- concurrency refusals -----------------------------------------------------------------


@pytest.mark.parametrize(
    "style",
    [
        pytest.param({}, id="HTTP 429"),
        pytest.param({"max_running_code": 1303}, id="error 1303"),
        pytest.param({"max_running_code": 102, "errors_as_http": True}, id="a message, as HTTP"),
    ],
)
async def test_a_concurrency_refusal_is_its_own_class(
    emulator_factory: Factory, style: dict[str, Any]
) -> None:
    """--max-running in every answer style: ConcurrencyLimitError, and nothing charged."""
    emu = emulator_factory(max_running=1, gen_seconds=(5.0, 5.0), **style)
    gate = RequestGate(Rate(1000, 1.0))
    async with make_http_client(transport=emu.transport) as http:
        api = client_for(emu, http, gate=gate)
        assert await api.create(BODY) is not None
        with pytest.raises(ConcurrencyLimitError) as refused:
            await api.create(BODY)
    assert isinstance(refused.value, TransientError)
    assert emu.stats()["tasks_created"] == 1
    assert emu.stats()["credits_charged"][TEST_KEY] == 1000


async def test_a_rate_limit_is_not_a_concurrency_refusal(emulator_factory: Factory) -> None:
    """--rate-limit's 429 stays a plain TransientError: it says nothing of tasks running."""
    emu = emulator_factory(rate_limit=1)
    async with make_http_client(transport=emu.transport) as http:
        api = client_for(emu, http)
        await api.create(BODY)
        with pytest.raises(TransientError) as refused:
            await api.create(BODY)
    assert type(refused.value) is TransientError and refused.value.status_code == 429


# -- a query refused ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "fault",
    [
        {"query_http_status": 400},
        {"query_http_status": 403},
        {"query_http_status": 405},
        {"query_http_status": 302},
        {"query_error_code": 400},
        {"query_error_code": 101},
    ],
    ids=lambda f: "-".join(map(str, f.items())),
)
async def test_a_refused_query_is_asked_again(
    emulator_factory: Factory, fault: dict[str, int]
) -> None:
    """HTTP 400/403/405, a redirect or success:false 400 on a query: transient, retried later."""
    emu = emulator_factory(**fault)
    gate = RequestGate(Rate(1000, 1.0), breaker_threshold=1)
    async with make_http_client(transport=emu.transport) as http:
        with pytest.raises(TransientError) as caught:
            await client_for(emu, http, gate=gate).query("t1")
    assert type(caught.value) is TransientError
    assert gate.pauses == 0  # not a server pushing back: nobody else waits


async def test_a_query_with_a_refused_key_stops_everything(emulator_factory: Factory) -> None:
    """success:false 401 on a query is the key refused: AuthError, as on any endpoint."""
    emu = emulator_factory(query_error_code=401)
    async with make_http_client(transport=emu.transport) as http:
        with pytest.raises(AuthError):
            await client_for(emu, http).query("t1")
