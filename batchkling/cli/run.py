"""`batchkling run`."""

from __future__ import annotations

import argparse
import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio

from batchkling import __version__
from batchkling.api.client import RequestGate, SjinnClient, make_http_client, make_transport
from batchkling.cli._io import IO
from batchkling.cli._manifest_args import (
    add_manifest_options,
    load_manifest_from_args,
)
from batchkling.cli._options import (
    add_api_options,
    add_run_dir_option,
    api_base_from,
    api_key_from,
    open_run,
    print_reconciliation,
)
from batchkling.cli._progress import ProgressPrinter
from batchkling.errors import BatchklingError, PreflightError, UsageError
from batchkling.ledger import Ledger
from batchkling.model import DEFAULT_CONCURRENCY, JobState, Manifest
from batchkling.preflight.account import check_account, check_manifest_images
from batchkling.reconcile.match import DEFAULT_SETTLE
from batchkling.reconcile.usage import reconcile_ledger
from batchkling.report.rows import (
    default_run_dir,
    intact_videos,
)
from batchkling.run.runner import (
    DEFAULT_POLL_MAX,
    DEFAULT_POLL_MIN,
    DEFAULT_TASK_TIMEOUT,
    Runner,
    RunOptions,
    RunResult,
)
from batchkling.run.selection import Selection, select_work
from batchkling.schedule import parse_rate

__all__ = ["register"]

EXIT_OK, EXIT_INCOMPLETE, EXIT_INTERRUPTED = 0, 1, 130


def register(sub: argparse._SubParsersAction[Any]) -> None:
    """Add `run`."""
    p = sub.add_parser(
        "run",
        help="render every job of a manifest (running it again resumes)",
        description="Submit, poll and download every job of MANIFEST, recording each step in "
        "the run directory's ledger. Running the same command again resumes.",
    )
    add_manifest_options(p)
    add_run_dir_option(p)
    add_api_options(p)
    p.add_argument(
        "--allow-partial",
        action="store_true",
        help="submit the jobs that fit the budget in manifest order, skip the rest",
    )
    p.add_argument(
        "--concurrency",
        type=_positive_int,
        default=DEFAULT_CONCURRENCY,
        help=f"jobs in flight at once (default {DEFAULT_CONCURRENCY})",
    )
    p.add_argument(
        "--rate",
        default="2/s",
        help="API requests per second or minute: N/s, N/min or N (default 2/s)",
    )
    p.add_argument("--no-wait", action="store_true", help="submit and exit; a later run collects")
    p.add_argument("--no-download", action="store_true", help="stop at completed")
    p.add_argument("--retry-failed", action="store_true", help="resubmit jobs whose task failed")
    p.add_argument(
        "--resubmit-in-doubt",
        action="store_true",
        help="resubmit jobs whose create outcome is unknown (may pay twice)",
    )
    p.add_argument(
        "--rerender-changed",
        action="store_true",
        help="resubmit jobs whose manifest entry changed since they were sent",
    )
    p.add_argument(
        "--poll-interval",
        default=f"{DEFAULT_POLL_MIN:g},{DEFAULT_POLL_MAX:g}",
        metavar="MIN[,MAX]",
        help="bounds of the delay between polls of a task, seconds",
    )
    p.add_argument(
        "--task-timeout",
        type=float,
        default=DEFAULT_TASK_TIMEOUT,
        metavar="S",
        help="how long this run waits for one task (default 1800)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress output")
    p.add_argument(
        "--skip-preflight",
        action="store_true",
        help="do not check the account and the images before sending creates",
    )
    p.add_argument(
        "--usage-settle",
        type=float,
        default=DEFAULT_SETTLE,
        metavar="S",
        help="how old an in-doubt create must be before the credits usage is trusted "
        f"to show it (default {DEFAULT_SETTLE:g})",
    )
    p.add_argument(
        "--no-reconcile",
        action="store_true",
        help="never read the credits usage: in-doubt jobs stay in doubt",
    )
    p.set_defaults(handler=cmd_run)


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def parse_poll_interval(text: str) -> tuple[float, float]:
    try:
        parts = [float(x) for x in text.split(",")]
    except ValueError:
        parts = []
    if len(parts) not in (1, 2) or min(parts) <= 0:
        raise UsageError(f"--poll-interval {text!r}: expected MIN or MIN,MAX seconds, both > 0.")
    lo = parts[0]
    hi = parts[1] if len(parts) == 2 else max(lo, DEFAULT_POLL_MAX)
    if hi < lo:
        raise UsageError(f"--poll-interval {text!r}: MAX is below MIN.")
    return lo, hi


def cmd_run(args: argparse.Namespace, io: IO) -> int:
    key = api_key_from(args)  # first: a missing key is reported before anything is read
    base = api_base_from(args)
    rate = parse_rate(args.rate)
    poll_min, poll_max = parse_poll_interval(args.poll_interval)
    if args.task_timeout <= 0:
        raise UsageError("--task-timeout must be positive.")
    if args.usage_settle < 0:
        raise UsageError("--usage-settle must not be negative.")
    manifest = load_manifest_from_args(args, io)
    run_dir = (args.run_dir or default_run_dir(manifest.path)).absolute()
    ledger = open_run(manifest, run_dir, io)
    try:

        def select() -> Selection:
            return select_work(
                manifest.jobs,
                ledger.state,
                budget=manifest.budget,
                allow_partial=args.allow_partial,
                retry_failed=args.retry_failed,
                resubmit_in_doubt=args.resubmit_in_doubt,
                rerender_changed=args.rerender_changed,
                present=intact_videos(run_dir, ledger.state),
            )

        select()  # over budget: exit 3 before anything is sent
        options = RunOptions(
            concurrency=args.concurrency,
            no_wait=args.no_wait,
            no_download=args.no_download,
            poll_min=poll_min,
            poll_max=poll_max,
            task_timeout=args.task_timeout,
            usage_settle=None if args.no_reconcile else args.usage_settle,
        )
        if args.skip_preflight:
            print(
                "batchkling: WARNING: --skip-preflight: the account and the images are NOT "
                "checked before credits are spent.",
                file=io.err,
            )
        started = time.monotonic()
        ledger.append_sync(
            "run_started",
            None,
            pid=os.getpid(),
            version=__version__,
            manifest_sha256=manifest.sha256,
            budget=manifest.budget,
            concurrency=args.concurrency,
            rate=str(rate),
        )
        printer = ProgressPrinter(io.err, enabled=not args.quiet)
        gate = RequestGate(rate)
        try:
            result = anyio.run(
                _run_async,
                _Context(
                    manifest=manifest,
                    select=select,
                    ledger=ledger,
                    options=options,
                    gate=gate,
                    base=base,
                    key=key,
                    printer=printer,
                    io=io,
                    run_dir=run_dir,
                    preflight=not args.skip_preflight,
                    quiet=args.quiet,
                ),
            )
        except BatchklingError as exc:
            # Refused before or during the run (pre-flight, account): the ledger says so.
            ledger.append_sync("run_ended", None, exit_status=exc.exit_code, api_calls=gate.calls)
            raise
        finally:
            printer.close()
        status = _exit_status(result, manifest, ledger, options)
        if result.account_error is not None and not result.interrupted:
            status = result.account_error.exit_code
        ledger.append_sync(
            "run_ended", None, exit_status=status, api_calls=gate.calls, counts=result.counts
        )
        _print_summary(
            result, manifest, ledger, run_dir, io, gate.calls, time.monotonic() - started, options
        )
        if result.account_error is not None and not result.interrupted:
            print(f"batchkling: error: {result.account_error}", file=io.err)
        return status
    finally:
        ledger.close()


@dataclass
class _Context:
    manifest: Manifest
    select: Callable[[], Selection]
    ledger: Ledger
    options: RunOptions
    gate: RequestGate
    base: str
    key: str
    printer: ProgressPrinter
    io: IO
    run_dir: Path
    preflight: bool
    quiet: bool


async def _run_async(ctx: _Context) -> RunResult:
    options = ctx.options
    transport = make_transport()
    async with transport, make_http_client() as http:
        client = SjinnClient(
            http, base_url=ctx.base, api_key=ctx.key, gate=ctx.gate, transport=transport
        )
        if options.usage_settle is not None and any(
            ctx.ledger.state.state_of(j.key) is JobState.IN_DOUBT for j in ctx.manifest.jobs
        ):
            print_reconciliation(
                await reconcile_ledger(ctx.ledger, client, settle=options.usage_settle or 0.0),
                ctx.io,
            )
        selection = ctx.select()
        _print_plan(selection, ctx.manifest, ctx.run_dir, ctx.io, quiet=ctx.quiet)
        if ctx.preflight and selection.submit:
            await check_account(client, needed=selection.to_commit)
            problems = await check_manifest_images(ctx.manifest, http=http, run_dir=ctx.run_dir)
            for problem in problems:
                if problem.warning:
                    print(problem, file=ctx.io.err)
            errors = [p for p in problems if not p.warning]
            if errors:
                raise PreflightError(errors)
        runner = Runner(
            jobs=ctx.manifest.jobs,
            selection=selection,
            ledger=ctx.ledger,
            client=client,
            options=options,
            progress=ctx.printer.update,
        )
        async with anyio.create_task_group() as tg:
            tg.start_soon(_watch_signals, runner, ctx.printer)
            result = await runner.run()
            tg.cancel_scope.cancel()
        return result


async def _watch_signals(runner: Runner, printer: ProgressPrinter) -> None:
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        seen = 0
        async for _ in signals:
            seen += 1
            if seen == 1:
                printer.message(
                    "batchkling: stopping: no new creates; waiting for creates already sent "
                    "(at most 30 s). Press Ctrl-C again to quit at once."
                )
                runner.interrupt()
            else:
                # The ledger is consistent after every single write; leave now.
                os._exit(EXIT_INTERRUPTED)


def _exit_status(result: RunResult, manifest: Manifest, ledger: Ledger, opt: RunOptions) -> int:
    if result.interrupted and result.account_error is None:
        return EXIT_INTERRUPTED
    fine = {JobState.DONE, JobState.SKIPPED}
    if opt.no_download:
        fine.add(JobState.COMPLETED)
    for job in manifest.jobs:
        if ledger.state.state_of(job.key) not in fine:
            return EXIT_INCOMPLETE
    return EXIT_OK


def _print_plan(sel: Selection, manifest: Manifest, run_dir: Path, io: IO, *, quiet: bool) -> None:
    for job in sel.changed:
        print(
            f"batchkling: warning: {job.key}: the manifest entry changed since it was sent; "
            "left as it is (--rerender-changed resubmits it).",
            file=io.err,
        )
    for note in sel.notes:
        print(f"batchkling: {note}", file=io.err)
    if quiet:
        return
    budget = "no budget" if sel.budget is None else f"budget {sel.budget}"
    print(
        f"batchkling: {len(manifest.jobs)} jobs; to submit {len(sel.submit)} "
        f"({sel.to_commit} credits), to poll {len(sel.follow)}, to download "
        f"{len(sel.download)}; {sel.committed} credits already committed, {budget}; "
        f"run directory {run_dir}",
        file=io.err,
    )


def _print_summary(
    result: RunResult,
    manifest: Manifest,
    ledger: Ledger,
    run_dir: Path,
    io: IO,
    api_calls: int,
    elapsed: float,
    opt: RunOptions,
) -> None:
    st = ledger.state
    counts = ", ".join(f"{k} {v}" for k, v in sorted(result.counts.items()))
    print(
        f"{len(manifest.jobs)} jobs: {counts}; {st.credits_committed} credits committed; "
        f"{api_calls} API calls in {elapsed:.1f} s",
        file=io.out,
    )
    if result.polls:
        mean = sum(result.polls.values()) / len(result.polls)
        delay = result.median_detection_delay
        extra = f", median detection delay <= {delay:.1f} s" if delay is not None else ""
        print(f"polls per job {mean:.1f}{extra}", file=io.out)
    in_doubt = [j.key for j in manifest.jobs if st.state_of(j.key) is JobState.IN_DOUBT]
    if in_doubt:
        print(
            f"in doubt (the create's answer was lost; it may have been charged): "
            f"{', '.join(in_doubt)}. `batchkling reconcile` checks the account's credits "
            f"usage; --resubmit-in-doubt sends them again and may pay twice.",
            file=io.out,
        )
    failed = [j.key for j in manifest.jobs if st.state_of(j.key) is JobState.FAILED]
    if failed:
        print(f"failed: {', '.join(failed)} (--retry-failed resubmits them)", file=io.out)
    for key, value in result.unknown_status.items():
        print(
            f"{key}: the API answered the undocumented status {value}; treated as running.",
            file=io.out,
        )
    if result.timed_out:
        print(f"still running after --task-timeout: {', '.join(result.timed_out)}", file=io.out)
    for note in result.notes:
        print(note, file=io.out)
    for charge in result.orphans:
        print(
            f"orphan charge: task {charge.task_id}, {charge.credits:g} credits at "
            f"{charge.at.isoformat()}, claimed by no job of this run.",
            file=io.out,
        )
    if result.interrupted:
        print(
            f"interrupted. To resume, run the same command again (run directory {run_dir}).",
            file=io.out,
        )
