"""`batchkling check` (pre-flight, no credits spent) and `batchkling reconcile`."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import anyio

from batchkling.api import RequestGate, SjinnClient, make_http_client
from batchkling.cli import IO
from batchkling.cli._common import (
    add_api_options,
    add_run_dir_option,
    api_base_from,
    api_key_from,
    print_reconciliation,
)
from batchkling.cli._manifest_args import add_manifest_options, load_manifest_from_args
from batchkling.errors import PreflightError, UsageError
from batchkling.ledger import LEDGER_NAME, Ledger, fold_ledger
from batchkling.model import JobState
from batchkling.preflight import check_account, check_manifest_images
from batchkling.reconcile import DEFAULT_SETTLE
from batchkling.reconciler import reconcile_ledger
from batchkling.schedule import parse_rate
from batchkling.selection import select_work
from batchkling.status import default_run_dir

__all__ = ["register"]


def register(sub: argparse._SubParsersAction[Any]) -> None:
    """Add `check` and `reconcile`."""
    c = sub.add_parser(
        "check",
        help="pre-flight: the account and every image, before anything is spent",
        description="Check that the API key is accepted, the subscription is active, the balance "
        "covers what the run still has to commit, and every image is one the model accepts. "
        "Free API calls only. Exit 2 when a check fails, 4 when the account is refused.",
    )
    add_manifest_options(c)
    add_run_dir_option(c)
    add_api_options(c)
    c.add_argument("--rate", default="2/s", help="API requests per second or minute (default 2/s)")
    c.add_argument(
        "--image-timeout",
        type=float,
        default=10.0,
        metavar="S",
        help="timeout of each image request (default 10)",
    )
    c.set_defaults(handler=cmd_check)

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
    r.add_argument("--rate", default="2/s", help="API requests per second or minute (default 2/s)")
    r.add_argument(
        "--usage-settle",
        type=float,
        default=DEFAULT_SETTLE,
        metavar="S",
        help=f"settle delay of the credits usage, seconds (default {DEFAULT_SETTLE:g})",
    )
    r.set_defaults(handler=cmd_reconcile)


def cmd_check(args: argparse.Namespace, io: IO) -> int:
    key = api_key_from(args)
    base = api_base_from(args)
    rate = parse_rate(args.rate)
    manifest = load_manifest_from_args(args, io)
    run_dir = (args.run_dir or default_run_dir(manifest.path)).absolute()
    st = fold_ledger(run_dir / LEDGER_NAME).state
    selection = select_work(manifest.jobs, st, budget=manifest.budget, allow_partial=True)

    async def main() -> list[Any]:
        async with make_http_client() as http:
            client = SjinnClient(http, base_url=base, api_key=key, gate=RequestGate(rate))
            account = await check_account(client, needed=selection.to_commit)
            balance = "unknown" if account.balance is None else f"{account.balance:.0f}"
            print(
                f"account: key accepted, balance {balance} credits, "
                f"{selection.to_commit} still to commit",
                file=io.out,
            )
            return await check_manifest_images(
                manifest, http=http, run_dir=run_dir, timeout=args.image_timeout
            )

    problems = anyio.run(main)
    for problem in problems:
        if problem.warning:
            print(problem, file=io.err)
    errors = [p for p in problems if not p.warning]
    if errors:
        raise PreflightError(errors)
    print(f"{manifest.path}: pre-flight passed ({len(manifest.shots)} shots).", file=io.out)
    return 0


def cmd_reconcile(args: argparse.Namespace, io: IO) -> int:
    if args.manifest is None and args.run_dir is None:
        raise UsageError("reconcile needs MANIFEST or --run-dir DIR.")
    key = api_key_from(args)
    base = api_base_from(args)
    rate = parse_rate(args.rate)
    if args.run_dir is not None:
        run_dir = Path(args.run_dir).absolute()
    else:
        run_dir = default_run_dir(args.manifest)
    if not (run_dir / LEDGER_NAME).exists():
        raise UsageError(f"no ledger at {run_dir / LEDGER_NAME}: nothing has run there.")
    ledger = Ledger.open(run_dir)
    try:
        for warning in ledger.warnings:
            print(f"batchkling: warning: {warning}", file=io.err)

        async def main() -> Any:
            async with make_http_client() as http:
                client = SjinnClient(http, base_url=base, api_key=key, gate=RequestGate(rate))
                return await reconcile_ledger(ledger, client, settle=args.usage_settle)

        outcome = anyio.run(main)
        if outcome.result is None and outcome.unavailable is None:
            print("nothing in doubt.", file=io.out)
            return 0
        print_reconciliation(outcome, io)
        left = [k for k, r in ledger.state.jobs.items() if r.state is JobState.IN_DOUBT]
        print(f"{len(left)} job(s) still in doubt.", file=io.out)
        return 0 if not left and outcome.unavailable is None else 1
    finally:
        ledger.close()
