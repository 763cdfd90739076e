"""The account half of pre-flight: the key is accepted, the subscription is active, and the
balance covers the credits the run still has to commit. Free API calls only.

It is the first request a command makes, so it is also where an API that cannot be
reached is found: a failure to connect is tried again for up to ``reach_timeout``
seconds (a server restarting, a network coming back), and a 404 at once means the
base URL holds no sjinn API. Either is an ``UnreachableError``, before anything is
sent.
"""

from __future__ import annotations

import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace

import anyio

from batchkling.api.answers import Account
from batchkling.api.client import SjinnClient
from batchkling.api.retry import retrying
from batchkling.errors import (
    InDoubtError,
    InsufficientBalanceError,
    MembershipError,
    TaskNotFoundError,
    TransientError,
    UnreachableError,
)
from batchkling.model import DEFAULT_REACH_TIMEOUT
from batchkling.preflight.reach import unreached_reason
from batchkling.schedule import RetryPolicy, backoff_step

__all__ = ["ACCOUNT_RETRY", "REACH_TIMEOUT", "check_account"]

# A free call with nothing to spread apart: wait each whole backoff step.
ACCOUNT_RETRY = RetryPolicy(attempts=5, base=1.0, cap=60.0, full_jitter=False)
# How long an API that refuses connections is tried before pre-flight gives up.
REACH_TIMEOUT = DEFAULT_REACH_TIMEOUT


@dataclass
class _Patience:
    """Which failures of the account call are tried again, and after how long.

    Failures to connect are tried until ``deadline`` (the last wait cut to fit);
    any other failure that changed nothing gets the attempts of ``ACCOUNT_RETRY``.
    """

    deadline: float
    clock: Callable[[], float]
    unreached: int = 0
    other: int = 0

    def __call__(self, exc: Exception) -> bool | float:
        if unreached_reason(exc) is not None:
            left = self.deadline - self.clock()
            if left <= 0:
                return False
            step = backoff_step(self.unreached, base=ACCOUNT_RETRY.base, cap=ACCOUNT_RETRY.cap)
            self.unreached += 1
            return min(step, left)
        if not isinstance(exc, (TransientError, InDoubtError)):
            return False
        self.other += 1
        return self.other < ACCOUNT_RETRY.attempts


async def check_account(
    client: SjinnClient,
    *,
    needed: int,
    rand: Callable[[], float] = random.random,
    sleep: Callable[[float], Awaitable[None]] = anyio.sleep,
    clock: Callable[[], float] = time.monotonic,
    reach_timeout: float = REACH_TIMEOUT,
) -> Account:
    """Raise an ``AccountError`` (exit 4) unless the account can pay for ``needed`` credits.

    ``UnreachableError`` when no connection could be made for ``reach_timeout``
    seconds, or the account's endpoint is not found (a wrong base URL).
    """
    account = await _ask_account(
        client, rand=rand, sleep=sleep, clock=clock, reach_timeout=reach_timeout
    )  # AuthError when the key is refused
    if needed <= 0:
        return account
    if account.subscription is not None and not account.subscription_active:
        status = account.subscription.get("status")
        raise MembershipError(
            f"the account's subscription is not active (status {status!r}); task creation "
            "needs an active membership. Nothing was sent."
        )
    if account.subscription is None:
        raise MembershipError(
            "the account has no subscription; task creation needs an active membership. "
            "Nothing was sent."
        )
    if account.balance is not None and account.balance < needed:
        raise InsufficientBalanceError(
            f"the account's balance of {account.balance:.0f} credits does not cover the "
            f"{needed} credits this run still has to commit. Nothing was sent.",
            hint="Top up the account, lower the plan, or use --budget with --allow-partial.",
        )
    return account


async def _ask_account(
    client: SjinnClient,
    *,
    rand: Callable[[], float],
    sleep: Callable[[float], Awaitable[None]],
    clock: Callable[[], float],
    reach_timeout: float,
) -> Account:
    started = clock()
    patience = _Patience(deadline=started + reach_timeout, clock=clock)
    try:
        # Free and changing nothing: retry anything that is not a refusal, even a lost answer.
        return await retrying(
            lambda _n: client.account(),
            policy=replace(ACCOUNT_RETRY, attempts=1_000_000),  # ``patience`` decides
            retry_on=patience,
            rand=rand,
            sleep=sleep,
        )
    except TransientError as exc:
        reason = unreached_reason(exc)
        if reason is None:
            raise
        raise UnreachableError(reason, waited=clock() - started) from None
    except TaskNotFoundError as exc:
        # The account call names no task: "not found" is the path, not a task.
        code = exc.status_code
        what = f"HTTP {code} (not found)" if code is not None else f"not found: {exc.message}"
        raise UnreachableError(what, waited=clock() - started, status_code=code) from None
