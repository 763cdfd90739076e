"""`batchkling reconcile`: settle in-doubt creates against the account's credits usage."""

from __future__ import annotations

import argparse
import contextlib
from typing import TYPE_CHECKING, Any

from batchkling._util import plural
from batchkling.cli._manifest_args import ledger_of_run, run_dir_of
from batchkling.cli._options import (
    ApiSettings,
    add_api_options,
    add_rate_option,
    add_run_dir_option,
    api_settings_from,
    client_from,
    print_reconciliation,
    state_dir_from_env,
)
from batchkling.cli._types import finite_seconds
from batchkling.model import JobState
from batchkling.reconcile.match import DEFAULT_SETTLE

if TYPE_CHECKING:
    from batchkling.cli._io import IO
    from batchkling.journal import AccountJournal
    from batchkling.ledger import Ledger
    from batchkling.reconcile.usage import ReconcileOutcome

__all__ = ["cmd_reconcile", "register"]

# The reconciliation's machinery (anyio, the ledger, the journal, the HTTP stack) is
# imported when the command runs, so that building the parser loads none of it.


def register(sub: argparse._SubParsersAction[Any]) -> None:
    """Add `reconcile`."""
    r = sub.add_parser(
        "reconcile",
        help="settle in-doubt creates against the account's credits usage",
        description="Match the run's in-doubt creates against the account's credits usage: "
        "adopt a charge that matches one job, return a job that was never charged to pending, "
        "list what stays ambiguous and charges no job claims.",
    )
    r.add_argument("manifest", nargs="?", metavar="MANIFEST")
    add_run_dir_option(r)
    add_api_options(r)
    add_rate_option(r)
    r.add_argument(
        "--usage-settle",
        type=finite_seconds,
        default=DEFAULT_SETTLE,
        metavar="S",
        help=f"settle delay of the credits usage, seconds (default {DEFAULT_SETTLE:g})",
    )
    r.set_defaults(handler=cmd_reconcile)


def cmd_reconcile(args: argparse.Namespace, io: IO) -> int:
    """Reconcile; exit 0 when nothing is left in doubt."""
    import anyio

    from batchkling.journal import AccountJournal
    from batchkling.ledger import Ledger

    # The ledger alone says what is in doubt: the manifest is only a way to name the run.
    run_dir = run_dir_of(args, "reconcile")
    api = api_settings_from(args)
    ledger_of_run(args.manifest, run_dir)
    journal = AccountJournal.open(state_dir_from_env(), api.base, api.key)
    with contextlib.closing(journal), Ledger.open(run_dir) as ledger:
        for warning in ledger.warnings:
            print(f"batchkling: warning: {warning}", file=io.err)
        outcome = anyio.run(_reconcile, api, ledger, args.usage_settle, journal)
        if outcome.result is None and outcome.unavailable is None:
            print("nothing in doubt.", file=io.out)
            return 0
        print_reconciliation(outcome, io)
        left = [k for k, r in ledger.state.jobs.items() if r.state is JobState.IN_DOUBT]
        print(f"{plural(len(left), 'job')} still in doubt.", file=io.out)
        return 0 if not left and outcome.unavailable is None else 1


async def _reconcile(
    api: ApiSettings, ledger: Ledger, settle: float, journal: AccountJournal
) -> ReconcileOutcome:
    from batchkling.reconcile.usage import reconcile_ledger
    from batchkling.run.settle import journal_adoptions

    # Tasks of the account's other run directories are never adopted here; those
    # adopted are recorded in the journal as this run directory's.
    foreign = journal.foreign_tasks(ledger.run_dir.resolve())
    async with client_from(api) as (client, _http):
        outcome = await reconcile_ledger(ledger, client, settle=settle, foreign=foreign)
    if outcome.result is not None:
        await journal_adoptions(journal, ledger.run_dir, ledger.state, outcome.result.adopted)
    return outcome
