"""`batchkling run`: the command line of ``run_manifest``: arguments in, lines and a status out.

Signals are handled here: the first SIGINT or SIGTERM asks the run to stop
cleanly (no new creates; creates already sent record their answer), a second
one leaves at once.
"""

from __future__ import annotations

import argparse
import os
import signal
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio

from batchkling.cli._io import IO
from batchkling.cli._manifest_args import add_manifest_options, load_manifest_from_args
from batchkling.cli._options import (
    ApiSettings,
    add_api_options,
    add_run_dir_option,
    api_settings_from,
    client_from,
    print_reconciliation,
    run_dir_from,
    state_dir_from_env,
)
from batchkling.cli._types import finite_seconds, positive_seconds, seconds_range
from batchkling.cli.audit import write_audit
from batchkling.errors import UsageError
from batchkling.model import DEFAULT_CONCURRENCY, DEFAULT_RATE, JobState, Manifest
from batchkling.reconcile.match import DEFAULT_SETTLE
from batchkling.run.events import Checked, Opened, Planned, Reconciled, RunEvent, Started
from batchkling.run.options import (
    DEFAULT_GONE_AFTER,
    DEFAULT_POLL_MAX,
    DEFAULT_POLL_MIN,
    DEFAULT_STALL_AFTER,
    DEFAULT_TASK_TIMEOUT,
    Progress,
    RunOptions,
    RunResult,
)

if TYPE_CHECKING:
    from batchkling.cli._progress import ProgressPrinter
    from batchkling.journal import AccountJournal
    from batchkling.reconcile.audit import Audit
    from batchkling.run.selection import Selection

__all__ = ["cmd_run", "parse_poll_interval", "register"]

# The run's machinery (the HTTP stack, the runner, the progress bar) is imported
# when the command runs, so that building the parser for any command loads none of it.


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
    _add_selection_options(p)
    _add_pacing_options(p)
    p.add_argument("--quiet", action="store_true", help="no progress output")
    p.add_argument(
        "--skip-preflight",
        action="store_true",
        help="do not check the account and the images before sending creates",
    )
    p.add_argument(
        "--usage-settle",
        type=finite_seconds,
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


def _add_selection_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--allow-partial",
        action="store_true",
        help="submit the jobs that fit the budget in manifest order, skip the rest",
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
        "--allow-duplicate",
        action="store_true",
        help="send a request even when another run directory of this account already has it "
        "running or done (it is paid again)",
    )


def _add_pacing_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--concurrency",
        type=_positive_int,
        default=DEFAULT_CONCURRENCY,
        help=f"jobs in flight at once (default {DEFAULT_CONCURRENCY})",
    )
    p.add_argument(
        "--rate",
        default=DEFAULT_RATE,
        help=f"API requests per second or minute: N/s, N/min or N (default {DEFAULT_RATE})",
    )
    p.add_argument(
        "--poll-interval",
        type=seconds_range(DEFAULT_POLL_MAX),
        default=(DEFAULT_POLL_MIN, DEFAULT_POLL_MAX),
        metavar="MIN[,MAX]",
        help="bounds of the delay between polls of a task, seconds",
    )
    p.add_argument(
        "--task-timeout",
        type=positive_seconds,
        default=DEFAULT_TASK_TIMEOUT,
        metavar="S",
        help=f"how long this run waits for one task (default {DEFAULT_TASK_TIMEOUT:g})",
    )
    p.add_argument(
        "--gone-after",
        type=positive_seconds,
        default=DEFAULT_GONE_AFTER,
        metavar="S",
        help="how long a recorded task may answer 'not found' before it counts as deleted "
        f"and its job fails (default {DEFAULT_GONE_AFTER:g})",
    )
    p.add_argument(
        "--stall-after",
        type=positive_seconds,
        default=DEFAULT_STALL_AFTER,
        metavar="S",
        help="how long a task's status may stay the same before it is named as stalled, "
        f"until a task like it has finished (default {DEFAULT_STALL_AFTER:g})",
    )


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def parse_poll_interval(text: str) -> tuple[float, float]:
    """``MIN`` or ``MIN,MAX`` seconds; a lone MIN keeps the default MAX (or MIN, if larger)."""
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


def _options_from(args: argparse.Namespace) -> RunOptions:
    # The argument types refused bad numbers already, before the key was looked for.
    poll_min, poll_max = args.poll_interval
    return RunOptions(
        concurrency=args.concurrency,
        no_wait=args.no_wait,
        no_download=args.no_download,
        poll_min=poll_min,
        poll_max=poll_max,
        task_timeout=args.task_timeout,
        gone_after=args.gone_after,
        stall_after=args.stall_after,
        usage_settle=None if args.no_reconcile else args.usage_settle,
        allow_partial=args.allow_partial,
        retry_failed=args.retry_failed,
        resubmit_in_doubt=args.resubmit_in_doubt,
        rerender_changed=args.rerender_changed,
        allow_duplicate=args.allow_duplicate,
    )


def cmd_run(args: argparse.Namespace, io: IO) -> int:
    """Run the manifest; the exit status says whether every job ended where it should."""
    from batchkling.cli._progress import ProgressPrinter

    api = api_settings_from(args)  # first: a missing key is reported before anything is read
    options = _options_from(args)
    manifest = load_manifest_from_args(args, io)
    run_dir = run_dir_from(args, manifest.path)
    journal = _open_journal(api)
    printer = ProgressPrinter(io.err, enabled=not args.quiet)
    display = _Display(
        io, printer, manifest, run_dir, quiet=args.quiet, skip_preflight=args.skip_preflight
    )
    try:
        result = anyio.run(
            _run, manifest, run_dir, api, options, display, not args.skip_preflight, journal
        )
    finally:
        printer.close()
        journal.close()
    _print_summary(result, manifest, run_dir, io)
    if result.account_error is not None and not result.interrupted:
        print(f"batchkling: error: {result.account_error}", file=io.err)
    return result.exit_status


def _open_journal(api: ApiSettings) -> AccountJournal:
    """The account journal of this API base and key, under the state directory."""
    from batchkling.journal import AccountJournal

    return AccountJournal.open(state_dir_from_env(), api.base, api.key)


async def _run(
    manifest: Manifest,
    run_dir: Path,
    api: ApiSettings,
    options: RunOptions,
    display: _Display,
    preflight: bool,
    journal: AccountJournal,
) -> RunResult:
    from batchkling.run.session import run_manifest

    stop, started = anyio.Event(), anyio.Event()
    display.started = started
    failure: Exception | None = None
    async with client_from(api, pooled=True) as (client, http), anyio.create_task_group() as tg:
        tg.start_soon(_watch_signals, started, stop, display.printer, options.create_answer_timeout)
        try:
            result = await run_manifest(
                manifest,
                run_dir,
                client=client,
                http=http,
                options=options,
                progress=display.show,
                preflight=preflight,
                rate=api.rate,
                stop=stop,
                journal=journal,
            )
        except Exception as exc:
            failure = exc  # raised below as it is, not wrapped in the task group's group
        tg.cancel_scope.cancel()
    if failure is not None:
        raise failure
    return result


async def _watch_signals(
    started: anyio.Event, stop: anyio.Event, printer: ProgressPrinter, answer_timeout: float
) -> None:
    from batchkling.run.session import EXIT_INTERRUPTED

    await started.wait()  # until the work starts, a signal interrupts as for any command
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        seen = 0
        async for _ in signals:
            seen += 1
            if seen == 1:
                printer.message(
                    "batchkling: stopping: no new creates; waiting for creates already sent "
                    f"(at most {answer_timeout:g} s). Press Ctrl-C again to quit at once."
                )
                stop.set()
            else:
                # The ledger is consistent after every single write; leave now.
                os._exit(EXIT_INTERRUPTED)


class _Display:
    """Shows what the run tells as it goes: warnings, the plan, progress."""

    def __init__(
        self,
        io: IO,
        printer: ProgressPrinter,
        manifest: Manifest,
        run_dir: Path,
        *,
        quiet: bool,
        skip_preflight: bool,
    ) -> None:
        self.io = io
        self.printer = printer
        self._manifest = manifest
        self._run_dir = run_dir
        self._quiet = quiet
        self._skip_preflight = skip_preflight
        self.started: anyio.Event | None = None  # set once the work starts

    def show(self, event: RunEvent) -> None:
        """The progress callback of the run."""
        err = self.io.err
        if isinstance(event, Progress):
            self.printer.update(event)
        elif isinstance(event, Opened):
            for warning in event.warnings:
                print(f"batchkling: warning: {warning}", file=err)
            if self._skip_preflight:
                print(
                    "batchkling: WARNING: --skip-preflight: the account and the images are NOT "
                    "checked before credits are spent.",
                    file=err,
                )
        elif isinstance(event, Reconciled):
            print_reconciliation(event.outcome, self.io)
        elif isinstance(event, Planned):
            self._plan(event.selection)
        elif isinstance(event, Checked):
            for problem in event.warnings:
                print(problem, file=err)
        elif isinstance(event, Started) and self.started is not None:
            self.started.set()

    def _plan(self, sel: Selection) -> None:
        err = self.io.err
        for job in sel.changed:
            print(
                f"batchkling: warning: {job.key}: the manifest entry changed since it was sent; "
                "left as it is (--rerender-changed resubmits it).",
                file=err,
            )
        for note in sel.notes:
            print(f"batchkling: {note}", file=err)
        if self._quiet:
            return
        budget = "no budget" if sel.budget is None else f"budget {sel.budget}"
        print(
            f"batchkling: {len(self._manifest.jobs)} jobs; to submit {len(sel.submit)} "
            f"({sel.to_commit} credits), to poll {len(sel.follow)}, to download "
            f"{len(sel.download)}; {sel.committed} credits already committed, {budget}; "
            f"run directory {self._run_dir}",
            file=err,
        )


def _print_summary(result: RunResult, manifest: Manifest, run_dir: Path, io: IO) -> None:
    counts = ", ".join(f"{k} {v}" for k, v in sorted(result.counts.items()))
    print(
        f"{len(manifest.jobs)} jobs: {counts}; {result.credits_committed} credits committed; "
        f"{result.api_calls} API calls in {result.elapsed:.1f} s",
        file=io.out,
    )
    if result.polls:
        mean = sum(result.polls.values()) / len(result.polls)
        delay = result.median_detection_delay
        extra = f", median detection delay <= {delay:.1f} s" if delay is not None else ""
        print(f"polls per job {mean:.1f}{extra}", file=io.out)
    for old, new in result.moves:
        print(
            f"moved: {old} -> {new} (the same request under a new key; nothing is rendered again)",
            file=io.out,
        )
    _print_in_doubt(result, io)
    failed = result.jobs_in(JobState.FAILED)
    if failed:
        print(f"failed: {', '.join(failed)} (--retry-failed resubmits them)", file=io.out)
    _print_findings(result, io)
    _print_audit(result, io)
    if result.audit is not None:
        write_audit(run_dir, result.audit)
    if result.interrupted:
        print(
            f"interrupted. To resume, run the same command again (run directory {run_dir}).",
            file=io.out,
        )


def _print_in_doubt(result: RunResult, io: IO) -> None:
    in_doubt = result.jobs_in(JobState.IN_DOUBT)
    if in_doubt:
        print(
            f"in doubt (the create's answer was lost; it may have been charged): "
            f"{', '.join(in_doubt)}. `batchkling reconcile` checks the account's credits "
            f"usage; --resubmit-in-doubt sends them again and may pay twice.",
            file=io.out,
        )
    for key in in_doubt:
        why = result.doubt_reasons.get(key)
        if why is not None:
            print(f"{key}: still in doubt: {why}.", file=io.out)
    if result.held_back:
        print(
            "not sent: every slot is held by a create in doubt, which may be generating: "
            f"{', '.join(result.held_back)}. Run again once they are settled.",
            file=io.out,
        )


def _print_findings(result: RunResult, io: IO) -> None:
    for key, value in result.unknown_status.items():
        print(
            f"{key}: the API answered the undocumented status {value!r}; treated as running.",
            file=io.out,
        )
    for key, reason in result.fail_reasons.items():
        print(f"{key}: failed: {reason}.", file=io.out)
    for key, n in result.finishing.items():
        if key not in result.fail_reasons:
            print(f"{key}: answered completed with no video URL yet {n} times.", file=io.out)
    if result.stalled:
        print(
            f"stalled (status unchanged for longer than expected): {', '.join(result.stalled)}",
            file=io.out,
        )
    if result.allowed_at_once is not None:
        print(
            f"the account allowed {result.allowed_at_once} at once "
            f"({result.limit_refusals} creates refused for too many tasks, none charged)",
            file=io.out,
        )
    if result.timed_out:
        print(f"still running after --task-timeout: {', '.join(result.timed_out)}", file=io.out)
    for note in result.notes:
        print(note, file=io.out)
    for key, other in result.duplicates.items():
        print(
            f"{key}: not sent: the same request is already running or done in the run "
            f"directory {other.run_dir} (job {other.job}, task {other.task_id}); "
            "--allow-duplicate sends it anyway, and it is paid again.",
            file=io.out,
        )
    for charge in result.orphans:
        print(
            f"orphan charge: task {charge.task_id}, {charge.credits:g} credits at "
            f"{charge.at.isoformat()}, claimed by no job of this run.",
            file=io.out,
        )


def _print_audit(result: RunResult, io: IO) -> None:
    """The verdict of the end-of-run audit of the account's charges."""
    if result.audit_problem is not None:
        print(f"audit: not done: {result.audit_problem}.", file=io.out)
    audit = result.audit
    if audit is None:
        return
    if not audit.clean:
        _print_audit_findings(audit, result, io)
        return
    unlisted = sum(1 for j in audit.jobs if j.charges == 0 and j.tasks > 0)
    doubts = len(result.jobs_in(JobState.IN_DOUBT))
    found = (
        f"{len(audit.settled)} charges, {audit.charged:g} credits; "
        f"{audit.committed} credits committed"
    )
    gaps = [f"{unlisted} task(s) not in the credits usage yet"] if unlisted else []
    gaps += [f"{doubts} job(s) in doubt"] if doubts else []
    if gaps:
        verdict = f"no unexplained charge so far ({found}); not proven: {'; '.join(gaps)}"
    else:
        verdict = f"clean: every charge of this run directory's runs is in its ledger ({found})"
    print(f"audit: {verdict}.", file=io.out)


def _print_audit_findings(audit: Audit, result: RunResult, io: IO) -> None:
    if audit.problem is not None:
        print(
            f"audit: not proven: the credits usage read is incomplete ({audit.problem}).",
            file=io.out,
        )
    for c in audit.unexplained:
        print(
            f"audit: unexplained charge: task {c.task_id}, {c.credits:g} credits at "
            f"{c.at.isoformat()}: no task of this run directory or of another one of this "
            "account.",
            file=io.out,
        )
    if audit.unexplained and result.jobs_in(JobState.IN_DOUBT):
        print(
            "audit: the jobs in doubt may account for unexplained charges; "
            "`batchkling reconcile` settles them.",
            file=io.out,
        )
    for j in audit.jobs:
        if j.twice:
            print(
                f"audit: {j.job} was {j.verdict} for {j.tasks} task(s) ({j.credits:g} credits).",
                file=io.out,
            )
