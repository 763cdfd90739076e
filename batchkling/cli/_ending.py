"""The end of `batchkling run`: the audit's file, the report, the summary, the notifiers.

What comes after the work, whichever way it ended: ``end_run`` for a run that
returned a result (done, failed, interrupted, the account refused mid-run), and
``notify_refusal`` for one stopped by an error (pre-flight, the budget, the run
directory). Neither a report that cannot be written nor a notifier that fails
changes the exit status: each is one warning line.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import TYPE_CHECKING

from batchkling.cli.audit import write_audit
from batchkling.errors import BatchklingError, PreflightError
from batchkling.model import JobState

if TYPE_CHECKING:
    from batchkling.cli._io import IO
    from batchkling.cli._options import ApiSettings
    from batchkling.model import Manifest
    from batchkling.preflight.reach import ReachWatch
    from batchkling.run.notify import Verdict
    from batchkling.run.options import RunResult
    from batchkling.state import RunState

__all__ = ["EXIT_PREFLIGHT", "end_run", "notify_refusal"]

EXIT_PREFLIGHT = PreflightError.exit_code  # an API never reached, even with --skip-preflight
# A --notify command writes to our standard error: its words never mix with the
# summary on standard output, which a script may read.
_STDERR_FD = 2


def end_run(
    result: RunResult,
    args: argparse.Namespace,
    api: ApiSettings,
    manifest: Manifest,
    run_dir: Path,
    reach: ReachWatch,
    io: IO,
) -> int:
    """After the work: the audit's file, the report, the summary, the notifiers; the status."""
    from batchkling.cli._summary import Ending, print_summary

    status = result.exit_status
    unreachable = _unreached(api, reach) if result.account_error is None else None
    if unreachable is not None and not result.interrupted:
        status = EXIT_PREFLIGHT
    if result.audit is not None:
        write_audit(run_dir, result.audit)
    report = _write_report(run_dir, manifest, io)
    state = _ledger_state(run_dir)
    print_summary(result, manifest, run_dir, io, state=state, ending=Ending(report, unreachable))
    if result.account_error is not None and not result.interrupted:
        print(f"batchkling: error: {result.account_error}", file=io.err)
    _notify(args, _verdict(status, manifest, run_dir, state, report), io)
    return status


def _unreached(api: ApiSettings, reach: ReachWatch) -> str | None:
    """The summary's line when no request reached the API at its URL (``--skip-preflight``)."""
    from batchkling._util import span

    if reach.never_reached:
        # Every request failed to connect: none left this machine, so nothing was sent.
        return (
            f"{api.where} could not be reached for {span(reach.tried_for)} "
            f"({reach.reason}); nothing was sent."
        )
    if reach.only_not_found:
        return (
            f"{api.where} answered HTTP 404 (not found) to every request: no sjinn API at "
            "that URL; check it. A create refused so was not charged; once the URL is right, "
            "--retry-failed sends the jobs it failed."
        )
    return None


def notify_refusal(
    args: argparse.Namespace, exc: BatchklingError, manifest: Manifest, run_dir: Path, io: IO
) -> None:
    if args.notify is not None or args.notify_url is not None:
        _notify(args, _verdict(exc.exit_code, manifest, run_dir, _ledger_state(run_dir), None), io)


def _write_report(run_dir: Path, manifest: Manifest, io: IO) -> Path | None:
    """``report.html`` in the run directory; a failure is one warning, never a failed run."""
    from batchkling.report.publish import run_report

    try:
        return run_report(run_dir, manifest)
    except BatchklingError as exc:
        why = exc.message
    except OSError as exc:
        why = f"{run_dir / 'report.html'}: {exc.strerror or exc}"
    except Exception as exc:  # the run is over and recorded; a report is not worth a traceback
        why = f"{type(exc).__name__}: {exc}"
    print(f"batchkling: warning: the report was not written: {why}", file=io.err)
    return None


def _ledger_state(run_dir: Path) -> RunState | None:
    """The run directory's ledger folded, read without the lock; None if it cannot be read."""
    from batchkling.ledger import LEDGER_NAME, fold_ledger

    try:
        return fold_ledger(run_dir / LEDGER_NAME).state
    except (BatchklingError, OSError):
        return None


def _verdict(
    status: int, manifest: Manifest, run_dir: Path, state: RunState | None, report: Path | None
) -> Verdict:
    from batchkling.run.notify import Verdict

    states = [state.state_of(j.key) if state else JobState.PENDING for j in manifest.jobs]
    return Verdict(
        exit_status=status,
        done=states.count(JobState.DONE),
        failed=states.count(JobState.FAILED),
        in_doubt=states.count(JobState.IN_DOUBT),
        credits=state.credits_committed if state else 0,
        total=len(manifest.jobs),
        report=None if report is None else str(report),
        manifest=str(Path(manifest.path).absolute()),
        run_dir=str(run_dir),
    )


def _notify(args: argparse.Namespace, verdict: Verdict, io: IO) -> None:
    """Run ``--notify`` and POST to ``--notify-url``; a failure is one warning line."""
    from batchkling.run.notify import post_verdict, run_command

    if args.notify is None and args.notify_url is None:
        return
    io.out.flush()  # the summary first, then whatever the command prints
    io.err.flush()
    problems: list[str | None] = []
    if args.notify is not None:
        problems.append(
            run_command(
                args.notify,
                verdict,
                inherited=os.environ,
                timeout=args.notify_timeout,
                stdout=_STDERR_FD,
            )
        )
    if args.notify_url is not None:
        problems.append(post_verdict(args.notify_url, verdict))
    for problem in problems:
        if problem is not None:
            print(
                f"batchkling: warning: {problem}; the run's exit status is unchanged.",
                file=io.err,
            )
