"""The account half of pre-flight: the key is accepted, the subscription is active, and the
balance covers the credits the run still has to commit. Free API calls only.
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable

import anyio

from batchkling.api.answers import Account
from batchkling.api.client import SjinnClient
from batchkling.api.retry import retrying
from batchkling.errors import (
    InDoubtError,
    InsufficientBalanceError,
    MembershipError,
    TransientError,
)
from batchkling.schedule import RetryPolicy

__all__ = ["ACCOUNT_RETRY", "check_account"]

# A free call with nothing to spread apart: wait each whole backoff step.
ACCOUNT_RETRY = RetryPolicy(attempts=5, base=1.0, cap=60.0, full_jitter=False)


async def check_account(
    client: SjinnClient,
    *,
    needed: int,
    rand: Callable[[], float] = random.random,
    sleep: Callable[[float], Awaitable[None]] = anyio.sleep,
) -> Account:
    """Raise an ``AccountError`` (exit 4) unless the account can pay for ``needed`` credits."""
    # Free and changing nothing: retry anything that is not a refusal, even a lost answer.
    account = await retrying(
        lambda _n: client.account(),
        policy=ACCOUNT_RETRY,
        retry_on=(TransientError, InDoubtError),
        rand=rand,
        sleep=sleep,
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
