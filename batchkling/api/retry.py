"""The one retry loop: every retried call (a create, a download, the account call) goes through it.

The policy (how many attempts, how long to wait) is the pure ``RetryPolicy`` of
``batchkling.schedule``; this module only sleeps and calls again. Which errors
are worth retrying is the caller's decision, because only the caller knows
whether a failed call can have had an effect (a create that may have been
charged must never be retried blindly).
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable
from typing import TypeAlias, TypeVar

import anyio

from batchkling.errors import ApiError
from batchkling.schedule import RetryPolicy

__all__ = ["RetryOn", "retrying"]

T = TypeVar("T")

# Which failures to retry: exception classes (retried on the policy's schedule),
# or a function of the failure that returns False (give up), True (retry on the
# policy's schedule) or a number of seconds to wait instead (0: retry at once).
RetryOn: TypeAlias = (
    type[Exception] | tuple[type[Exception], ...] | Callable[[Exception], bool | float]
)


def _decide(retry_on: RetryOn, exc: Exception) -> bool | float:
    if isinstance(retry_on, (type, tuple)):
        return isinstance(exc, retry_on)
    return retry_on(exc)


async def retrying(
    attempt: Callable[[int], Awaitable[T]],
    *,
    policy: RetryPolicy,
    retry_on: RetryOn,
    rand: Callable[[], float] = random.random,
    sleep: Callable[[float], Awaitable[None]] = anyio.sleep,
) -> T:
    """Await ``attempt(n)`` for n = 0, 1, ... until it returns; re-raise the last failure.

    A failure ``retry_on`` accepts is retried after the policy's delay (honouring a
    ``Retry-After`` the error carries) while attempts are left; any other failure,
    and the last one, propagate as they are.
    """
    number = 0
    while True:
        try:
            return await attempt(number)
        except Exception as exc:
            decision = _decide(retry_on, exc)
            if decision is False or number + 1 >= policy.attempts:
                raise
            if decision is True:
                retry_after = exc.retry_after if isinstance(exc, ApiError) else None
                delay = policy.delay(number, retry_after=retry_after, rand=rand())
            else:
                delay = float(decision)
            number += 1
        await sleep(delay)
