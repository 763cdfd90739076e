"""Reconciliation against the live account: page the credits usage, match, write the outcome."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone

from batchkling.api.client import SjinnClient
from batchkling.errors import AccountError, ApiError
from batchkling.ledger import Ledger
from batchkling.model import USAGE_TASK_TYPE
from batchkling.reconcile.match import (
    DEFAULT_SETTLE,
    Charge,
    Reconciliation,
    in_doubt_windows,
    match,
    parse_ts,
    usage_since,
)

__all__ = ["ReconcileOutcome", "fetch_charges", "reconcile_ledger"]

MAX_PAGES = 500
PAGE_SIZE = 200


def _utc_now() -> datetime:
    return datetime.now(timezone.utc)


def _rfc3339(dt: datetime) -> str:
    return dt.astimezone(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


async def fetch_charges(client: SjinnClient, since: datetime) -> list[Charge]:
    """Every Kling image-to-video charge since ``since``, newest first, all pages."""
    out: list[Charge] = []
    cursor: str | None = None
    for _ in range(MAX_PAGES):
        page = await client.credits_usage(
            limit=PAGE_SIZE, cursor=cursor, start_time=_rfc3339(since), task_type=USAGE_TASK_TYPE
        )
        for rec in page.records:
            try:
                at = parse_ts(rec.create_time)
            except ValueError:
                continue
            out.append(
                Charge(
                    id=rec.id,
                    task_id=rec.task_id,
                    credits=rec.cost_credits,
                    at=at,
                    task_type=rec.task_type,
                )
            )
        if page.next_cursor is None or not page.records:
            break
        if min(parse_ts(r.create_time) for r in page.records) < since:
            break  # a server that ignores start_time: we have gone back far enough
        cursor = page.next_cursor
    return out


@dataclass(frozen=True)
class ReconcileOutcome:
    """A reconciliation that ran (``result``), or why it could not (``unavailable``)."""

    result: Reconciliation | None
    unavailable: str | None = None


async def reconcile_ledger(
    ledger: Ledger,
    client: SjinnClient,
    *,
    settle: float = DEFAULT_SETTLE,
    now: Callable[[], datetime] = _utc_now,
    on_event: Callable[[str, str], None] | None = None,
) -> ReconcileOutcome:
    """Match the ledger's in-doubt jobs to the usage and write ``reconciled``/``not_created``.

    If the usage endpoint is unavailable or refuses the key, nothing changes.
    """
    doubts = in_doubt_windows(ledger.state)
    since = usage_since(doubts)
    if since is None:
        return ReconcileOutcome(result=None)
    try:
        charges = await fetch_charges(client, since)
    except (ApiError, AccountError) as exc:
        return ReconcileOutcome(result=None, unavailable=str(exc))
    result = match(ledger.state, charges, now=now(), covered_from=since, settle=settle)
    for job, charge in result.adopted:
        await ledger.append(
            "reconciled",
            job,
            task_id=charge.task_id,
            usage_id=charge.id,
            charged_at=_rfc3339(charge.at),
        )
        if on_event is not None:
            on_event("reconciled", job)
    for job in result.not_created:
        await ledger.append(
            "not_created", job, reason="no charge in the settled credits usage for its window"
        )
        if on_event is not None:
            on_event("not_created", job)
    return ReconcileOutcome(result=result)
