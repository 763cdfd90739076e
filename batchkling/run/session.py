"""``run_manifest``: one run of a manifest from start to end, the same with or without the CLI.

The sequence: lock and read the run directory (writing the ledger's header if
it is new); carry the records of renamed entries over to their new keys
(``moved``); decide the work, refusing a run over budget before anything is
written; record ``run_started``; settle creates an earlier run left in doubt;
decide the work again with what that settled; pre-flight (the account and the
images, free calls only); then the runner. ``run_ended`` is recorded however
the run ends, a refusal included, except when the process is killed or the run
directory can no longer be written. Last, the audit: what the account charged
over the run directory's runs, against the ledger.

Chained shots: the frames of those whose source was done by an earlier run are
extracted before anything is compared with the ledger (``chain.extract_ready``),
so their fingerprints are those they were sent with; the rest wait in the runner.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import anyio
import httpx

from batchkling import __version__
from batchkling.api.client import SjinnClient
from batchkling.errors import (
    AccountError,
    ApiError,
    BatchklingError,
    BudgetError,
    InsufficientBalanceError,
    PreflightError,
)
from batchkling.journal import AccountJournal
from batchkling.ledger import Ledger
from batchkling.model import JobState, Manifest
from batchkling.preflight.checks import run_preflight
from batchkling.reconcile.usage import audit_run_dir, reconcile_ledger
from batchkling.report.rows import intact_videos
from batchkling.run.chain import CHAINED_DIR, Chainer, extract_ready, run_marks
from batchkling.run.events import Checked, Opened, Planned, Reconciled, RunEvent, Started
from batchkling.run.options import RunOptions, RunResult
from batchkling.run.runner import Runner
from batchkling.run.selection import Selection, plan_moves, select_work
from batchkling.run.settle import journal_adoptions
from batchkling.schedule import Rate
from batchkling.storage.prepare import Uploader, prepare_images

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
    journal: AccountJournal | None = None,
    uploader: Uploader | None = None,
) -> RunResult:
    """Render ``manifest`` in ``run_dir``; running it again resumes. Raises what refuses the run.

    ``progress`` receives every ``RunEvent`` (the default ignores them). ``http``
    fetches the images for pre-flight (a client of its own when None);
    ``preflight=False`` skips the account and image checks; ``rate`` is recorded
    in the ledger as the client's request rate. Setting ``stop`` stops the work
    once it has started (``Started``): no new creates, those already sent record
    their answer. ``journal``: the account journal of ``client``'s account (the
    command line always opens one), which makes creates known across run
    directories. Refusals are raised: ``BudgetError`` before the run is recorded
    as started, ``PreflightError`` or an ``AccountError`` from pre-flight before
    any create, ``RunDirWriteError`` once the run directory or the journal cannot
    be written; an account refused mid-run is ``RunResult.account_error`` instead.
    ``uploader`` puts the manifest's local images in the object store after
    pre-flight and before the first create (``StorageError`` when it cannot).
    """
    opt = options if options is not None else RunOptions()
    emit = progress if progress is not None else _ignore
    ledger, warnings = open_run(manifest, run_dir)
    with ledger:
        emit(Opened(run_dir, warnings))
        manifest, moves = _prepare(manifest, ledger, opt)
        _select(manifest, ledger, run_dir, opt)  # over budget: refused before anything is sent
        started = time.monotonic()
        _record_start(ledger, manifest, opt, rate)
        try:
            result = await _work(
                manifest,
                ledger,
                client,
                opt,
                emit,
                http=http,
                preflight=preflight,
                stop=stop,
                journal=journal,
                uploader=uploader,
            )
        except BatchklingError as exc:
            _record_refusal(ledger, client, exc)
            raise
        result.moves = moves
        _finish(result, manifest, ledger, client, opt, since=started)
        await _audit(result, ledger, client, opt, journal)
    return result


def _record_refusal(ledger: Ledger, client: SjinnClient, exc: BatchklingError) -> None:
    """Refused before or during the run (pre-flight, account, a journal that cannot be
    written): the ledger says so, if it still can be written."""
    if ledger.broken is None:
        ledger.append_sync(
            "run_ended", None, exit_status=exc.exit_code, api_calls=_api_calls(client)
        )


def exit_status(result: RunResult, *, no_download: bool, no_wait: bool = False) -> int:
    """The exit status of a finished run: 0 when every job is where it should be.

    With ``no_wait`` a job is where it should be once it was sent and has not
    failed: the run submitted everything it could, and a later run collects.
    """
    if result.interrupted and result.account_error is None:
        return EXIT_INTERRUPTED
    if result.account_error is not None and not result.interrupted:
        return result.account_error.exit_code
    fine = {JobState.DONE, JobState.SKIPPED}
    if no_download or no_wait:
        fine.add(JobState.COMPLETED)
    if no_wait:
        fine.add(JobState.RUNNING)
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
    result.exit_status = exit_status(result, no_download=opt.no_download, no_wait=opt.no_wait)
    result.api_calls = _api_calls(client)
    result.elapsed = time.monotonic() - since
    if client.gate is not None:  # what pushed back, for the summary
        result.answers_429 = client.gate.answers_429
        result.answers_5xx = client.gate.answers_5xx
        result.paused_seconds = client.gate.paused_seconds
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
    client: SjinnClient,
    opt: RunOptions,
    emit: Callable[[RunEvent], None],
    *,
    http: httpx.AsyncClient | None,
    preflight: bool,
    stop: anyio.Event | None,
    journal: AccountJournal | None,
    uploader: Uploader | None = None,
) -> RunResult:
    run_dir = ledger.run_dir
    lag, reasons = await _reconcile_first(manifest, ledger, client, opt, emit, journal)
    selection = _select(manifest, ledger, run_dir, opt)
    emit(Planned(selection))
    if preflight and selection.submit:
        report = await run_preflight(
            client,
            _checkable(manifest, run_dir),
            needed=selection.to_commit,
            http=http,
            run_dir=run_dir,
            reach_timeout=opt.reach_timeout,
        )
        emit(Checked(report.account, report.warnings))
        if report.errors:
            raise PreflightError(list(report.errors))
    if manifest.has_local_images:
        manifest, selection = await _upload(manifest, ledger, opt, selection, uploader, http)
    runner = Runner(
        jobs=manifest.jobs,
        selection=selection,
        ledger=ledger,
        client=client,
        options=opt,
        progress=emit,
        journal=journal,
        lag_seen=lag,
    )
    if any(shot.waits_for for shot in manifest.shots):
        runner.chainer = Chainer(manifest, run_dir, uploader=uploader, http=http)
    emit(Started())
    failure: BatchklingError | None = None
    async with anyio.create_task_group() as tg:
        if stop is not None:
            tg.start_soon(_relay_stop, stop, runner)
        try:
            result = await runner.run()
        except BatchklingError as exc:
            failure = exc  # raised below as it is, not wrapped in the task group's group
        tg.cancel_scope.cancel()
    if failure is not None:
        raise failure
    result.doubt_reasons = {**reasons, **result.doubt_reasons}
    return result


async def _upload(
    manifest: Manifest,
    ledger: Ledger,
    opt: RunOptions,
    selection: Selection,
    uploader: Uploader | None,
    http: httpx.AsyncClient | None,
) -> tuple[Manifest, Selection]:
    """After pre-flight, before the first create: the local images of the work get URLs."""
    needs = [job for job, _ in selection.submit] + list(selection.left_in_doubt)
    if not needs:
        return manifest, selection
    run_dir = ledger.run_dir
    manifest, _ = await prepare_images(manifest, uploader, run_dir=run_dir, jobs=needs, http=http)
    return manifest, _select(manifest, ledger, run_dir, opt)  # the same work, with those URLs


async def _reconcile_first(
    manifest: Manifest,
    ledger: Ledger,
    client: SjinnClient,
    opt: RunOptions,
    emit: Callable[[RunEvent], None],
    journal: AccountJournal | None,
) -> tuple[float, dict[str, str]]:
    """Settle what earlier runs left in doubt; the usage lag seen, and why jobs still wait."""
    if opt.usage_settle is None or not any(
        ledger.state.state_of(job.key) is JobState.IN_DOUBT for job in manifest.jobs
    ):
        return 0.0, {}
    here = ledger.run_dir.resolve()
    foreign = journal.foreign_tasks(here) if journal is not None else frozenset()
    outcome = await reconcile_ledger(ledger, client, settle=opt.usage_settle, foreign=foreign)
    emit(Reconciled(outcome))
    res = outcome.result
    if res is None:
        return 0.0, {}
    await journal_adoptions(journal, ledger.run_dir, ledger.state, res.adopted)
    return res.lag, dict(res.reasons)


def _move(manifest: Manifest, ledger: Ledger) -> tuple[tuple[str, str], ...]:
    """Carry the records of entries whose key changed over to their new keys (``moved``)."""
    moves = plan_moves(manifest.jobs, ledger.state)
    for old, new in moves:
        ledger.write("moved", old, to=new, fingerprint=ledger.state.record(old).fingerprint)
    if moves:
        ledger.sync()
    return moves


async def _audit(
    result: RunResult,
    ledger: Ledger,
    client: SjinnClient,
    opt: RunOptions,
    journal: AccountJournal | None,
) -> None:
    """Compare what the account charged over the run directory's runs with the ledger."""
    refused = result.account_error is not None and not isinstance(
        result.account_error, InsufficientBalanceError
    )
    if opt.usage_settle is None or result.interrupted or refused:
        return
    elsewhere = journal.task_dirs(ledger.run_dir.resolve()) if journal is not None else {}
    try:
        result.audit = await audit_run_dir(
            ledger.state, client, settle=opt.usage_settle, elsewhere=elsewhere
        )
    except (ApiError, AccountError) as exc:
        result.audit_problem = f"the credits usage could not be read ({exc})"


def _extract_chains(manifest: Manifest, ledger: Ledger, opt: RunOptions) -> Manifest:
    """The frames of chains on takes done by earlier runs, extracted.

    With ``--rerender-changed``, a chain on a take this run renders again is left to
    wait for the new take (and is rendered again after it).
    """
    run_dir, st = ledger.run_dir, ledger.state
    present = intact_videos(run_dir, st)
    out = extract_ready(manifest, st, run_dir, present)
    if not opt.rerender_changed:
        return out
    again: set[str] = set()
    while True:  # down the chains: each one rendered again leaves the next one waiting
        try:
            submit = {job.key for job, _ in _select(out, ledger, run_dir, opt).submit}
        except BudgetError:
            return out  # refused right after, by the selection that counts
        if submit <= again:
            return out
        again |= submit
        out = extract_ready(manifest, st, run_dir, present, again=again)


def _prepare(
    manifest: Manifest, ledger: Ledger, opt: RunOptions
) -> tuple[Manifest, tuple[tuple[str, str], ...]]:
    """Before the work is decided: chained frames extracted, renamed entries' records moved.

    Chains on takes done by earlier runs get their frames first, so that their
    fingerprints are the ones they were sent with.
    """
    if any(shot.waits_for for shot in manifest.shots):
        manifest = _extract_chains(manifest, ledger, opt)
    return manifest, _move(manifest, ledger)


def _checkable(manifest: Manifest, run_dir: Path) -> Manifest:
    """The manifest pre-flight checks: frames taken from videos are not checked as images.

    A chained frame is a frame of a video the provider made, not a picture someone
    chose (and one still waiting has no image yet). A shot chained at its end keeps
    its start image checked; one chained at its start is left out, end image and all.
    """
    frames = (run_dir / CHAINED_DIR).absolute().as_uri() + "/"
    shots = []
    for shot in manifest.shots:
        if shot.after is not None or shot.image.startswith(frames):
            continue
        tail = shot.tail_image_url or ""
        if shot.before is not None or tail.startswith(frames):
            shot = replace(shot, tail_image_url=None, tail_sha256=None)
        shots.append(shot)
    return replace(manifest, shots=tuple(shots))


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
        marks=run_marks(run_dir, ledger.state),
    )


def _record_start(ledger: Ledger, manifest: Manifest, opt: RunOptions, rate: Rate | None) -> None:
    extra = {} if rate is None else {"rate": str(rate)}
    ledger.append_sync(
        "run_started",
        None,
        pid=os.getpid(),
        version=__version__,
        # How the manifest was loaded, so that later commands load it again the same
        # way without the flags (never the API key: it is no manifest setting).
        manifest=str(Path(manifest.path).absolute()),
        manifest_sha256=manifest.sha256,
        overrides=manifest.overrides,
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
