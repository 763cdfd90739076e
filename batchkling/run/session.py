"""``run_manifest``: one run of a manifest from start to end, the same with or without the CLI.

The sequence: lock and read the run directory (writing the ledger's header if
it is new); decide the work, refusing a run over budget before anything is
written; record ``run_started``; settle creates an earlier run left in doubt;
decide the work again with what that settled; pre-flight (the account and the
images, free calls only); then the runner. ``run_ended`` is recorded however
the run ends, a refusal included, except when the process is killed.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

import anyio
import httpx

from batchkling import __version__
from batchkling.api.client import SjinnClient
from batchkling.errors import BatchklingError, PreflightError
from batchkling.ledger import Ledger
from batchkling.model import JobState, Manifest
from batchkling.preflight.checks import run_preflight
from batchkling.reconcile.usage import reconcile_ledger
from batchkling.report.rows import intact_videos
from batchkling.run.events import Checked, Opened, Planned, Reconciled, RunEvent, Started
from batchkling.run.options import RunOptions, RunResult
from batchkling.run.runner import Runner
from batchkling.run.selection import Selection, select_work
from batchkling.schedule import Rate

__all__ = [
    "EXIT_INCOMPLETE",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "LEDGER_FORMAT",
    "exit_status",
    "open_run",
    "run_manifest",
]

# The version of the ledger's line format, written in its header.
LEDGER_FORMAT = 1

EXIT_OK, EXIT_INCOMPLETE, EXIT_INTERRUPTED = 0, 1, 130


def open_run(manifest: Manifest, run_dir: Path) -> tuple[Ledger, tuple[str, ...]]:
    """Lock and read the run directory's ledger, writing its header if it is new.

    Returns the open ledger and the warnings to show (a torn tail that was cut
    off, a run directory made for another manifest).
    """
    ledger = Ledger.open(run_dir)
    try:
        warnings = list(ledger.warnings)
        path = str(Path(manifest.path).absolute())
        header = ledger.state.header
        if header is None:
            ledger.append_sync(
                "header",
                None,
                version=__version__,
                format=LEDGER_FORMAT,
                manifest=path,
                manifest_sha256=manifest.sha256,
            )
        elif header.get("manifest") != path:
            # Job keys are only meaningful within one manifest: say so, but the budget
            # still counts everything this ledger committed.
            warnings.append(
                f"the run directory {run_dir} was made for {header.get('manifest')}, not "
                f"{path}; jobs with the same keys are taken as the same jobs."
            )
    except BaseException:
        ledger.close()
        raise
    return ledger, tuple(warnings)


async def run_manifest(
    manifest: Manifest,
    run_dir: Path,
    *,
    client: SjinnClient,
    options: RunOptions | None = None,
    progress: Callable[[RunEvent], None] | None = None,
    http: httpx.AsyncClient | None = None,
    preflight: bool = True,
    rate: Rate | None = None,
    stop: anyio.Event | None = None,
) -> RunResult:
    """Render ``manifest`` in ``run_dir``; running it again resumes. Raises what refuses the run.

    ``progress`` receives every ``RunEvent`` (the default ignores them). ``http``
    fetches the images for pre-flight (a client of its own when None);
    ``preflight=False`` skips the account and image checks; ``rate`` is recorded
    in the ledger as the client's request rate. Setting ``stop`` stops the work
    once it has started (``Started``): no new creates, those already sent record
    their answer. Refusals are raised: ``BudgetError`` before the run is recorded
    as started, ``PreflightError`` or an ``AccountError`` from pre-flight before any
    create; an account refused mid-run is ``RunResult.account_error`` instead.
    """
    opt = options if options is not None else RunOptions()
    emit = progress if progress is not None else _ignore
    ledger, warnings = open_run(manifest, run_dir)
    with ledger:
        emit(Opened(run_dir, warnings))
        _select(manifest, ledger, run_dir, opt)  # over budget: refused before anything is sent
        started = time.monotonic()
        _record_start(ledger, manifest, opt, rate)
        try:
            result = await _work(
                manifest,
                ledger,
                run_dir,
                client,
                opt,
                emit,
                http=http,
                preflight=preflight,
                stop=stop,
            )
        except BatchklingError as exc:
            # Refused before or during the run (pre-flight, account): the ledger says so.
            ledger.append_sync(
                "run_ended", None, exit_status=exc.exit_code, api_calls=_api_calls(client)
            )
            raise
        _finish(result, manifest, ledger, client, opt, since=started)
    return result


def exit_status(result: RunResult, *, no_download: bool) -> int:
    """The exit status of a finished run: 0 when every job is where it should be."""
    if result.interrupted and result.account_error is None:
        return EXIT_INTERRUPTED
    if result.account_error is not None and not result.interrupted:
        return result.account_error.exit_code
    fine = {JobState.DONE, JobState.SKIPPED}
    if no_download:
        fine.add(JobState.COMPLETED)
    if all(state in fine for state in result.states.values()):
        return EXIT_OK
    return EXIT_INCOMPLETE


def _finish(
    result: RunResult,
    manifest: Manifest,
    ledger: Ledger,
    client: SjinnClient,
    opt: RunOptions,
    *,
    since: float,
) -> None:
    """Complete the result with what the run ended with, and record ``run_ended``."""
    result.states = {job.key: ledger.state.state_of(job.key) for job in manifest.jobs}
    result.exit_status = exit_status(result, no_download=opt.no_download)
    result.api_calls = _api_calls(client)
    result.elapsed = time.monotonic() - since
    ledger.append_sync(
        "run_ended",
        None,
        exit_status=result.exit_status,
        api_calls=result.api_calls,
        counts=result.counts,
    )


async def _work(
    manifest: Manifest,
    ledger: Ledger,
    run_dir: Path,
    client: SjinnClient,
    opt: RunOptions,
    emit: Callable[[RunEvent], None],
    *,
    http: httpx.AsyncClient | None,
    preflight: bool,
    stop: anyio.Event | None,
) -> RunResult:
    if opt.usage_settle is not None and any(
        ledger.state.state_of(job.key) is JobState.IN_DOUBT for job in manifest.jobs
    ):
        emit(Reconciled(await reconcile_ledger(ledger, client, settle=opt.usage_settle)))
    selection = _select(manifest, ledger, run_dir, opt)
    emit(Planned(selection))
    if preflight and selection.submit:
        report = await run_preflight(
            client, manifest, needed=selection.to_commit, http=http, run_dir=run_dir
        )
        emit(Checked(report.account, report.warnings))
        if report.errors:
            raise PreflightError(list(report.errors))
    runner = Runner(
        jobs=manifest.jobs,
        selection=selection,
        ledger=ledger,
        client=client,
        options=opt,
        progress=emit,
    )
    emit(Started())
    async with anyio.create_task_group() as tg:
        if stop is not None:
            tg.start_soon(_relay_stop, stop, runner)
        result = await runner.run()
        tg.cancel_scope.cancel()
    return result


def _select(manifest: Manifest, ledger: Ledger, run_dir: Path, opt: RunOptions) -> Selection:
    return select_work(
        manifest.jobs,
        ledger.state,
        budget=manifest.budget,
        allow_partial=opt.allow_partial,
        retry_failed=opt.retry_failed,
        resubmit_in_doubt=opt.resubmit_in_doubt,
        rerender_changed=opt.rerender_changed,
        present=intact_videos(run_dir, ledger.state),
    )


def _record_start(ledger: Ledger, manifest: Manifest, opt: RunOptions, rate: Rate | None) -> None:
    extra = {} if rate is None else {"rate": str(rate)}
    ledger.append_sync(
        "run_started",
        None,
        pid=os.getpid(),
        version=__version__,
        manifest_sha256=manifest.sha256,
        budget=manifest.budget,
        concurrency=opt.concurrency,
        **extra,
    )


async def _relay_stop(stop: anyio.Event, runner: Runner) -> None:
    await stop.wait()
    runner.stop()


def _api_calls(client: SjinnClient) -> int:
    return client.gate.calls if client.gate is not None else 0


def _ignore(event: RunEvent) -> None:
    """The default progress callback."""
