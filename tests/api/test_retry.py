"""The one retry policy (pure) and the one retry loop every retried call goes through."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from batchkling.api.retry import retrying
from batchkling.errors import InDoubtError, RefusedError, TransientError
from batchkling.preflight.account import ACCOUNT_RETRY
from batchkling.schedule import RetryPolicy

pytestmark = pytest.mark.anyio

POLICY = RetryPolicy(attempts=4, base=1.0, cap=60.0)


@given(st.integers(0, 200), st.floats(0.0, 0.999))
def test_full_jitter_stays_under_the_capped_step(retry: int, rand: float) -> None:
    """Without Retry-After a delay is a draw below min(cap, base * 2**retry)."""
    delay = POLICY.delay(retry, rand=rand)
    assert 0.0 <= delay < min(60.0, 2.0**retry)


@given(st.floats(0.0, 3600.0), st.floats(0.0, 0.999))
def test_a_retry_after_is_never_undercut(retry_after: float, rand: float) -> None:
    """With Retry-After the wait is at least what the server asked, with a small spread."""
    delay = POLICY.delay(0, retry_after=retry_after, rand=rand)
    assert retry_after <= delay <= retry_after + 0.1 * max(1.0, retry_after)


def test_the_account_call_waits_each_whole_step() -> None:
    """The account call's policy waits 1, 2, 4, 8 s (plus at most a tenth) over 5 attempts."""
    assert ACCOUNT_RETRY.attempts == 5
    assert [ACCOUNT_RETRY.delay(n, rand=0.0) for n in range(4)] == [1.0, 2.0, 4.0, 8.0]
    assert ACCOUNT_RETRY.delay(3, rand=0.999) == pytest.approx(8.0 * 1.0999)


class Flaky:
    """Fails with the given errors in turn, then answers its attempt number."""

    def __init__(self, *errors: Exception) -> None:
        self.errors = list(errors)
        self.calls: list[int] = []

    async def __call__(self, number: int) -> int:
        self.calls.append(number)
        if self.errors:
            raise self.errors.pop(0)
        return number


class Sleeps:
    """A sleep that only writes down how long it was asked to wait."""

    def __init__(self) -> None:
        self.seen: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.seen.append(seconds)


async def test_retries_until_an_attempt_succeeds() -> None:
    """Retryable failures are retried after the policy's delays; the success is returned."""
    attempt, sleep = Flaky(TransientError("a"), TransientError("b")), Sleeps()
    got = await retrying(
        attempt, policy=POLICY, retry_on=TransientError, rand=lambda: 0.5, sleep=sleep
    )
    assert got == 2 and attempt.calls == [0, 1, 2]
    assert sleep.seen == [0.5, 1.0]


async def test_the_last_failure_is_raised_when_attempts_run_out() -> None:
    """After ``attempts`` failures the last one propagates, with no wait after it."""
    attempt, sleep = Flaky(*(TransientError(str(i)) for i in range(5))), Sleeps()
    with pytest.raises(TransientError, match="3"):
        await retrying(attempt, policy=POLICY, retry_on=TransientError, sleep=sleep)
    assert attempt.calls == [0, 1, 2, 3] and len(sleep.seen) == 3


async def test_a_failure_not_retried_propagates_at_once() -> None:
    """An error outside ``retry_on`` (a create that may be charged) is never retried."""
    attempt, sleep = Flaky(InDoubtError("lost")), Sleeps()
    with pytest.raises(InDoubtError):
        await retrying(attempt, policy=POLICY, retry_on=TransientError, sleep=sleep)
    assert attempt.calls == [0] and sleep.seen == []


async def test_the_servers_retry_after_is_honoured() -> None:
    """A failure carrying Retry-After waits that long, not the backoff."""
    attempt, sleep = Flaky(TransientError("429", retry_after=7.0)), Sleeps()
    await retrying(attempt, policy=POLICY, retry_on=TransientError, rand=lambda: 0.0, sleep=sleep)
    assert sleep.seen == [7.0]


async def test_retry_on_may_choose_the_wait() -> None:
    """A function as ``retry_on`` can retry one kind of failure at once and give up on others."""

    def decide(exc: Exception) -> bool | float:
        return 0.0 if isinstance(exc, RefusedError) else False

    attempt, sleep = Flaky(RefusedError("expired")), Sleeps()
    assert await retrying(attempt, policy=POLICY, retry_on=decide, sleep=sleep) == 1
    assert sleep.seen == [0.0]
    with pytest.raises(TransientError):
        await retrying(Flaky(TransientError("x")), policy=POLICY, retry_on=decide, sleep=sleep)
