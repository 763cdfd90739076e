"""`batchkling check`: pre-flight, the account and every image; no credits spent."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

from batchkling.cli._manifest_args import add_manifest_options, load_manifest_from_args
from batchkling.cli._options import (
    ApiSettings,
    add_api_options,
    add_rate_option,
    add_reach_option,
    add_run_dir_option,
    api_settings_from,
    client_from,
    run_dir_from,
    unreachable_message,
)
from batchkling.cli._types import positive_seconds
from batchkling.errors import PreflightError, UnreachableError
from batchkling.model import DEFAULT_IMAGE_TIMEOUT

if TYPE_CHECKING:
    from batchkling.cli._io import IO
    from batchkling.model import Manifest
    from batchkling.preflight.checks import PreflightReport

# The check's machinery (anyio, the ledger, the HTTP stack) is imported when the
# command runs, so that building the parser for any command loads none of it.

__all__ = ["cmd_check", "register"]


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
    add_rate_option(c)
    add_reach_option(c)
    c.add_argument(
        "--image-timeout",
        type=positive_seconds,
        default=DEFAULT_IMAGE_TIMEOUT,
        metavar="S",
        help=f"timeout of each image request (default {DEFAULT_IMAGE_TIMEOUT:g})",
    )
    c.set_defaults(handler=cmd_check)


def cmd_check(args: argparse.Namespace, io: IO) -> int:
    """Run pre-flight; exit 0 when everything passed."""
    import anyio

    from batchkling.ledger import LEDGER_NAME, fold_ledger
    from batchkling.run.selection import select_work

    api = api_settings_from(args)
    manifest = load_manifest_from_args(args, io)
    run_dir = run_dir_from(args, manifest.path)
    # What the run would still commit: the balance must cover that, not the whole plan.
    st = fold_ledger(run_dir / LEDGER_NAME).state
    needed = select_work(manifest.jobs, st, budget=manifest.budget, allow_partial=True).to_commit
    try:
        report = anyio.run(
            _check, api, manifest, run_dir, needed, args.image_timeout, args.reach_timeout
        )
    except UnreachableError as exc:
        print(f"batchkling: error: {unreachable_message(api, exc)}", file=io.err)
        return exc.exit_code
    balance = "unknown" if report.account.balance is None else f"{report.account.balance:.0f}"
    print(
        f"account: key accepted, balance {balance} credits, {needed} still to commit",
        file=io.out,
    )
    for problem in report.warnings:
        print(problem, file=io.err)
    if report.errors:
        raise PreflightError(list(report.errors))
    print(f"{manifest.path}: pre-flight passed ({len(manifest.shots)} shots).", file=io.out)
    return 0


async def _check(
    api: ApiSettings,
    manifest: Manifest,
    run_dir: Path,
    needed: int,
    image_timeout: float,
    reach_timeout: float,
) -> PreflightReport:
    from batchkling.preflight.checks import run_preflight

    async with client_from(api) as (client, http):
        return await run_preflight(
            client,
            manifest,
            needed=needed,
            http=http,
            run_dir=run_dir,
            image_timeout=image_timeout,
            reach_timeout=reach_timeout,
        )
