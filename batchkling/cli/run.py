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

from batchkling._util import plural, span, thousands
from batchkling.cli._ending import end_run, notify_refusal
from batchkling.cli._manifest_args import add_manifest_options, load_manifest_from_args
from batchkling.cli._options import (
    ApiSettings,
    add_api_options,
    add_reach_option,
    add_run_dir_option,
    api_settings_from,
    client_from,
    print_reconciliation,
    run_dir_from,
    state_dir_from_env,
    unreachable_message,
)
from batchkling.cli._types import finite_seconds, positive_seconds, seconds_range
from batchkling.cli._upload_args import uploader_from
from batchkling.errors import BatchklingError, UnreachableError, UsageError
from batchkling.model import DEFAULT_CONCURRENCY, DEFAULT_RATE
from batchkling.reconcile.match import DEFAULT_SETTLE
from batchkling.run.notify import COMMAND_TIMEOUT
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
    import anyio

    from batchkling.cli._io import IO
    from batchkling.cli._progress import ProgressPrinter
    from batchkling.journal import AccountJournal
    from batchkling.model import Manifest
    from batchkling.preflight.reach import ReachWatch
    from batchkling.run.events import RunEvent
    from batchkling.run.selection import Selection
    from batchkling.storage.prepare import Uploader

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
    _add_notify_options(p)
    add_reach_option(p)
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


def _add_notify_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--notify",
        metavar="CMD",
        help="when the run ends, run CMD through the shell with the verdict in BATCHKLING_* "
        "variables (its output goes to stderr)",
    )
    p.add_argument(
        "--notify-url",
        type=_http_url,
        metavar="URL",
        help="when the run ends, POST the verdict as JSON to URL (10 s timeout, no retry)",
    )
    p.add_argument(
        "--notify-timeout",
        type=positive_seconds,
        default=COMMAND_TIMEOUT,
        metavar="S",
        help=f"how long the --notify command may run before it is stopped "
        f"(default {COMMAND_TIMEOUT:g})",
    )


def _http_url(text: str) -> str:
    if not text.startswith(("http://", "https://")) or len(text) < 9:
        raise argparse.ArgumentTypeError(f"{text!r} is not an http(s) URL")
    return text


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
        reach_timeout=args.reach_timeout,
    )


def cmd_run(args: argparse.Namespace, io: IO) -> int:
    """Run the manifest; the exit status says whether every job ended where it should."""
    import anyio

    from batchkling.cli._progress import ProgressPrinter
    from batchkling.preflight.reach import ReachWatch

    api = api_settings_from(args)  # first: a missing key is reported before anything is read
    options = _options_from(args)
    manifest = load_manifest_from_args(args, io)
    run_dir = run_dir_from(args, manifest.path)
    journal = _open_journal(api)
    printer = ProgressPrinter(io.err, enabled=not args.quiet)
    display = _Display(
        io, printer, manifest, run_dir, quiet=args.quiet, skip_preflight=args.skip_preflight
    )
    reach = ReachWatch()
    # On a terminal the uploads get a bar of their own; they end before the run's bar starts.
    terminal = not args.quiet and io.err.isatty()
    uploader = uploader_from(
        args,
        manifest,
        say=None if args.quiet else printer.message,
        bar=io.err if terminal else None,
    )
    try:
        result = anyio.run(
            _run,
            manifest,
            run_dir,
            api,
            options,
            display,
            not args.skip_preflight,
            journal,
            reach,
            uploader,
        )
    except UnreachableError as exc:
        print(f"batchkling: error: {unreachable_message(api, exc)}", file=io.err)
        notify_refusal(args, exc, manifest, run_dir, io)
        return exc.exit_code
    except BatchklingError as exc:
        # Refused or stopped (pre-flight, budget, the run directory): the notifiers hear
        # of it too; the error itself is printed as for any command.
        notify_refusal(args, exc, manifest, run_dir, io)
        raise
    finally:
        printer.close()
        journal.close()
    return end_run(result, args, api, manifest, run_dir, reach, io)


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
    reach: ReachWatch,
    uploader: Uploader | None = None,
) -> RunResult:
    import anyio

    from batchkling.run.session import run_manifest

    stop, started = anyio.Event(), anyio.Event()
    display.started = started
    failure: Exception | None = None
    connection = client_from(api, pooled=True, reach=reach)
    async with connection as (client, http), anyio.create_task_group() as tg:
        tg.start_soon(_watch_signals, started, stop, display, options.create_answer_timeout)
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
                uploader=uploader,
            )
        except Exception as exc:
            failure = exc  # raised below as it is, not wrapped in the task group's group
        tg.cancel_scope.cancel()
    if failure is not None:
        raise failure
    return result


async def _watch_signals(
    started: anyio.Event, stop: anyio.Event, display: _Display, answer_timeout: float
) -> None:
    import anyio

    from batchkling.run.session import EXIT_INTERRUPTED

    await started.wait()  # until the work starts, a signal interrupts as for any command
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        seen = 0
        async for _ in signals:
            seen += 1
            if seen == 1:
                display.say(_first_stop_message(display.sending, answer_timeout))
                stop.set()
            else:
                display.say(SECOND_STOP)
                # The ledger is consistent after every single write; leave now (flushed
                # first: ``os._exit`` skips it).
                display.io.err.flush()
                os._exit(EXIT_INTERRUPTED)


SECOND_STOP = (
    "batchkling: stopping now; a create in flight may be in doubt, the next run settles it"
)


def _first_stop_message(sending: int, answer_timeout: float) -> str:
    """What the first Ctrl-C prints: a wait to sit through only when creates await answers."""
    if not sending:
        return (
            "batchkling: stopping: no new creates; no create awaits an answer, so the run ends now."
        )
    return (
        f"batchkling: stopping: no new creates; waiting for the answer to "
        f"{plural(sending, 'create')} already sent (at most {span(answer_timeout)}). "
        "Press Ctrl-C again to quit at once."
    )


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
        self.sending = 0  # creates sent whose answer is awaited, as the last progress said

    def say(self, text: str) -> None:
        """A line on stderr, above the progress bar when one is drawn; even with --quiet."""
        if not self._quiet:
            self.printer.message(text)
        else:
            print(text, file=self.io.err, flush=True)

    def show(self, event: RunEvent) -> None:
        """The progress callback of the run."""
        from batchkling.run.events import Checked, Opened, Planned, Reconciled, Started

        err = self.io.err
        if isinstance(event, Progress):
            self.sending = event.sending
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
        budget = "no budget" if sel.budget is None else f"budget {thousands(sel.budget)}"
        print(
            f"batchkling: {plural(len(self._manifest.jobs), 'job')}; to submit "
            f"{len(sel.submit)} ({thousands(sel.to_commit)} credits), to poll "
            f"{len(sel.follow)}, to download {len(sel.download)}; "
            f"{thousands(sel.committed)} credits already committed, {budget}; "
            f"run directory {self._run_dir}",
            file=err,
        )
