"""Reconciliation against the live account: read the credits usage, match, write the verdicts."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from batchkling._time import format_rfc3339, utc_now
from batchkling.api.answers import UsageRecord
from batchkling.api.client import SjinnClient
from batchkling.errors import AccountError, ApiError
from batchkling.ledger import Ledger
from batchkling.model import USAGE_TASK_TYPE
from batchkling.reconcile.audit import Audit, audit, audit_span
from batchkling.reconcile.match import (
    DEFAULT_SETTLE,
    Charge,
    Listing,
    Reconciliation,
    in_doubt_windows,
    match,
    parse_ts,
    usage_since,
)
from batchkling.state import RunState

__all__ = ["MAX_PAGES", "ReconcileOutcome", "audit_run_dir", "read_usage", "reconcile_ledger"]

MAX_PAGES = 500
PAGE_SIZE = 200


def _charges(records: Sequence[UsageRecord]) -> tuple[list[Charge], int]:
    """The records whose time can be read, as charges, and how many could not be."""
    out: list[Charge] = []
    for rec in records:
        try:
            at = parse_ts(rec.create_time)
        except (TypeError, ValueError, OverflowError):
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
    return out, len(records) - len(out)


async def read_usage(
    client: SjinnClient,
    since: datetime,
    *,
    now: Callable[[], datetime] = utc_now,
    max_pages: int = MAX_PAGES,
) -> Listing:
    """Every Kling image-to-video record since ``since``, all pages, and how complete the read is.

    A record that cannot be parsed is counted, never dropped silently: the
    listing is then unproven. A server that ignores ``start_time`` is read only
    until a record older than ``since`` shows that the read reached back.
    """
    charges: list[Charge] = []
    unparsed = 0
    reached_back = False
    problem: str | None = None
    cursor: str | None = None
    for _ in range(max_pages):
        page = await client.credits_usage(
            limit=PAGE_SIZE,
            cursor=cursor,
            start_time=format_rfc3339(since),
            task_type=USAGE_TASK_TYPE,
        )
        unparsed += page.unparsed
        if page.problem is not None:
            problem = page.problem
            break
        read, bad = _charges(page.records)
        charges += read
        unparsed += bad
        reached_back = reached_back or any(c.at < since for c in read)
        if page.next_cursor is None or not page.records:
            reached_back = True  # the provider's last page
            break
        if reached_back:
            break
        cursor = page.next_cursor
    else:
        problem = f"the read was cut short after {max_pages} pages"
    return Listing(
        charges=tuple(charges),
        since=since,
        read_at=now(),
        reached_back=reached_back,
        unparsed=unparsed,
        problem=problem,
    )


@dataclass(frozen=True)
class ReconcileOutcome:
    """A reconciliation that ran (``result``), or why it could not (``unavailable``)."""

    result: Reconciliation | None
    unavailable: str | None = None
    listing: Listing | None = None


async def reconcile_ledger(
    ledger: Ledger,
    client: SjinnClient,
    *,
    settle: float = DEFAULT_SETTLE,
    now: Callable[[], datetime] = utc_now,
    on_event: Callable[[str, str], None] | None = None,
    foreign: frozenset[str] = frozenset(),
    lag_seen: float = 0.0,
) -> ReconcileOutcome:
    """Match the ledger's in-doubt jobs to the usage and write ``reconciled``/``not_created``.

    If the usage endpoint is unavailable or refuses the key, nothing changes.
    """
    since = usage_since(in_doubt_windows(ledger.state))
    if since is None:
        return ReconcileOutcome(result=None)
    try:
        listing = await read_usage(client, since, now=now)
    except (ApiError, AccountError) as exc:
        return ReconcileOutcome(result=None, unavailable=str(exc))
    result = match(
        ledger.state, listing, now=now(), settle=settle, foreign=foreign, lag_seen=lag_seen
    )
    for job, charge in result.adopted:
        await ledger.append(
            "reconciled",
            job,
            task_id=charge.task_id,
            usage_id=charge.id,
            charged_at=format_rfc3339(charge.at),
        )
        if on_event is not None:
            on_event("reconciled", job)
    for job in result.not_created:
        await ledger.append(
            "not_created",
            job,
            reason="the settled credits usage is complete over its window and holds no charge "
            "for it",
        )
        if on_event is not None:
            on_event("not_created", job)
    return ReconcileOutcome(result=result, listing=listing)


async def audit_run_dir(
    st: RunState,
    client: SjinnClient,
    *,
    settle: float = DEFAULT_SETTLE,
    elsewhere: Mapping[str, str] | None = None,
    now: Callable[[], datetime] = utc_now,
) -> Audit | None:
    """The audit of a run directory: the account's credits usage over its runs, against its ledger.

    ``st`` is the ledger's fold; ``elsewhere`` maps the task ids of the account's
    other run directories to those directories (``AccountJournal.task_dirs``).
    None when the ledger records no run. Raises ``ApiError`` or ``AccountError``
    when the usage cannot be read.
    """
    span = audit_span(st, settle=settle)
    if span is None:
        return None
    listing = await read_usage(client, span[0], now=now)
    return audit(st, listing, span=span, elsewhere=elsewhere or {})
