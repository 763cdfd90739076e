"""Pre-flight: everything that can be checked for free before a single credit is spent.

- the account: the key is accepted, the subscription is active, the balance covers
  the credits this run still has to commit (free API calls only);
- the images: every distinct start and tail image answers with a real image of a
  size and shape the model accepts (``batchkling.preflight.image_fetch``).
"""

from __future__ import annotations

import random
from pathlib import Path

import anyio
import httpx

from batchkling.api.client import Account, SjinnClient
from batchkling.errors import (
    InDoubtError,
    InsufficientBalanceError,
    MembershipError,
    Problem,
    TransientError,
)
from batchkling.model import Manifest
from batchkling.preflight.image_fetch import check_images
from batchkling.preflight.image_rules import problems_for
from batchkling.schedule import retry_after_delay

__all__ = ["check_account", "check_manifest_images"]


ACCOUNT_ATTEMPTS = 5


async def _account(client: SjinnClient) -> Account:
    # A free call: retry anything that is not a refusal, as a create would be.
    for attempt in range(ACCOUNT_ATTEMPTS):
        try:
            return await client.account()
        except (TransientError, InDoubtError) as exc:
            if attempt == ACCOUNT_ATTEMPTS - 1:
                raise
            wait = exc.retry_after if exc.retry_after is not None else 2.0**attempt
            await anyio.sleep(retry_after_delay(wait, rand=random.random()))
    raise AssertionError("unreachable")


async def check_account(client: SjinnClient, *, needed: int) -> Account:
    """Raise an ``AccountError`` (exit 4) unless the account can pay for ``needed`` credits."""
    account = await _account(client)  # AuthError when the key is refused
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


async def check_manifest_images(
    manifest: Manifest, *, http: httpx.AsyncClient, run_dir: Path | None, timeout: float = 10.0
) -> list[Problem]:
    """Fetch every distinct image once; the problems found (warnings included)."""
    if run_dir is not None:
        run_dir.mkdir(parents=True, exist_ok=True)
    infos = await check_images(
        manifest.shots, client=http, cache_dir=run_dir, timeout=timeout, keep_copies=True
    )
    return problems_for(manifest, infos)
