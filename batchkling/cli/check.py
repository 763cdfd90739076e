"""`batchkling check`: pre-flight, the account and every image; no credits spent."""

from __future__ import annotations

import argparse
from typing import Any

import anyio

from batchkling.api.client import RequestGate, SjinnClient, make_http_client
from batchkling.cli._io import IO
from batchkling.cli._manifest_args import add_manifest_options, load_manifest_from_args
from batchkling.cli._options import (
    add_api_options,
    add_run_dir_option,
    api_base_from,
    api_key_from,
)
from batchkling.errors import PreflightError
from batchkling.ledger import LEDGER_NAME, fold_ledger
from batchkling.preflight.account import check_account, check_manifest_images
from batchkling.report.rows import default_run_dir
from batchkling.run.selection import select_work
from batchkling.schedule import parse_rate

__all__ = ["register"]


def register(sub: argparse._SubParsersAction[Any]) -> None:
    """Add `check`."""
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
