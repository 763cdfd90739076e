"""`batchkling audit`: every charge of the account over a run directory's runs, explained or not."""

from __future__ import annotations

import argparse
import contextlib
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from batchkling._time import now_rfc3339
from batchkling._util import plural, thousands, write_atomic
from batchkling.cli._manifest_args import ledger_of_run, run_dir_of
from batchkling.cli._options import (
    ApiSettings,
    add_api_options,
    add_rate_option,
    add_run_dir_option,
    api_settings_from,
    client_from,
    state_dir_from_env,
)
from batchkling.cli._types import finite_seconds
from batchkling.errors import AccountError, ApiError, UsageError
from batchkling.reconcile.match import DEFAULT_SETTLE

if TYPE_CHECKING:
    from batchkling.cli._io import IO
    from batchkling.reconcile.audit import Audit
    from batchkling.state import RunState

__all__ = ["AUDIT_NAME", "EXIT_CLEAN", "EXIT_NOT_CLEAN", "cmd_audit", "register", "write_audit"]

# The audit's machinery (anyio, the ledger, the journal, the HTTP stack) is imported
# when the command runs, so that building the parser for any command loads none of it.

AUDIT_NAME = "audit.json"  # the last audit's verdict, in the run directory
EXIT_CLEAN, EXIT_NOT_CLEAN = 0, 1


def register(sub: argparse._SubParsersAction[Any]) -> None:
    """Add `audit`."""
    p = sub.add_parser(
        "audit",
        help="check every charge of the account over a run directory's runs",
        description="Read the account's credits usage over the span of the run directory's "
        "runs and say, for every charge of this tool, whether this ledger settles it, another "
        "run directory of this account has it, or nothing explains it; and for every job how "
        "often it was charged. Exit 0 when every charge is explained and no job was charged "
        "twice, 1 otherwise.",
    )
    p.add_argument("manifest", nargs="?", metavar="MANIFEST")
    add_run_dir_option(p)
    add_api_options(p)
    p.add_argument("--json", action="store_true", help="print the verdict as one JSON object")
    add_rate_option(p)
    p.add_argument(
        "--usage-settle",
        type=finite_seconds,
        default=DEFAULT_SETTLE,
        metavar="S",
        help=f"how long after the last run charges may still appear (default {DEFAULT_SETTLE:g})",
    )
    p.set_defaults(handler=cmd_audit)


def cmd_audit(args: argparse.Namespace, io: IO) -> int:
    """Audit one run directory; print the verdict; keep it as ``audit.json`` beside the ledger."""
    import anyio

    from batchkling.journal import AccountJournal
    from batchkling.ledger import fold_ledger

    # The ledger alone says what was charged: the manifest is only a way to name the run.
    run_dir = run_dir_of(args, "audit")
    api = api_settings_from(args)
    st = fold_ledger(ledger_of_run(args.manifest, run_dir)).state
    if not st.runs:
        raise UsageError(f"the ledger in {run_dir} records no run yet: nothing to audit.")
    journal = AccountJournal.open(state_dir_from_env(), api.base, api.key)
    with contextlib.closing(journal):
        elsewhere = journal.task_dirs(run_dir)
    try:
        verdict = anyio.run(_audit, api, st, args.usage_settle, elsewhere)
    except (ApiError, AccountError) as exc:
        print(f"batchkling: the credits usage could not be read ({exc}).", file=io.err)
        return EXIT_NOT_CLEAN
    assert verdict is not None  # the ledger records a run
    doc = write_audit(run_dir, verdict)
    if args.json:
        io.out.write(json.dumps(doc, ensure_ascii=False) + "\n")
    else:
        _print(verdict, io)
    return EXIT_CLEAN if verdict.clean else EXIT_NOT_CLEAN


async def _audit(
    api: ApiSettings, st: RunState, settle: float, elsewhere: dict[str, str]
) -> Audit | None:
    from batchkling.reconcile.usage import audit_run_dir

    async with client_from(api) as (client, _http):
        return await audit_run_dir(st, client, settle=settle, elsewhere=elsewhere)


def write_audit(run_dir: Path, verdict: Audit) -> dict[str, Any]:
    """Keep the verdict as ``audit.json`` (``status --json`` shows it); return it as JSON."""
    from batchkling.reconcile.audit import audit_json

    doc = {"at": now_rfc3339(), **audit_json(verdict)}
    with contextlib.suppress(OSError):  # a read-only run directory still gets its verdict printed
        write_atomic(run_dir / AUDIT_NAME, json.dumps(doc, ensure_ascii=False, indent=1) + "\n")
    return doc


def _print(a: Audit, io: IO) -> None:
    for j in a.jobs:
        print(f"{j.job}: {j.verdict}", file=io.out)
    for c, other in a.elsewhere:
        print(f"charge of another run directory: task {c.task_id} ({other})", file=io.out)
    for c in a.unexplained:
        print(
            f"unexplained charge: task {c.task_id}, {thousands(c.credits)} credits at "
            f"{c.at.isoformat()}: no task of this run directory or of another one of this account",
            file=io.out,
        )
    if a.problem is not None:
        print(f"not proven: the credits usage read is incomplete ({a.problem})", file=io.out)
    twice = [j.job for j in a.jobs if j.twice]
    state = "clean" if a.clean else "NOT clean"
    print(
        f"audit: {state}: {plural(len(a.settled), 'charge')} settled by this ledger, "
        f"{thousands(len(a.elsewhere))} of other run directories, "
        f"{thousands(len(a.unexplained))} unexplained; {plural(len(twice), 'job')} charged "
        f"twice; {thousands(a.charged)} credits charged, {thousands(a.committed)} committed",
        file=io.out,
    )
