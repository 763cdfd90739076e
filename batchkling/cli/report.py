"""`batchkling report`: an HTML storyboard, CSV or JSON of a run, from the ledger alone.

A report is written anywhere ``-o`` says except over what a run keeps: the
ledger, the lock, the image cache, and any video or poster (the run directory's
``videos/``, or a file elsewhere that is a video). Those are refused (exit 2)
before anything is read.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from batchkling.cli._manifest_args import (
    add_shot_overrides,
    ledger_of_run,
    manifest_of_run,
    parse_budget,
    run_dir_of,
)
from batchkling.cli._options import add_run_dir_option, warn_torn_tail
from batchkling.errors import UsageError
from batchkling.ledger import LEDGER_NAME, LOCK_NAME
from batchkling.preflight.image_fetch import CACHE_FILE
from batchkling.report.build import FORMATS
from batchkling.video.rules import VIDEOS_DIR, looks_like_video

if TYPE_CHECKING:
    from batchkling.cli._io import IO
    from batchkling.report.build import Report

# The report's assembly is imported when the command runs, so that building the
# parser for any command loads none of it.

__all__ = ["PROTECTED_NAMES", "cmd_report", "protected_reason", "register"]

# What a run directory keeps that no report may replace, wherever it is.
PROTECTED_NAMES = {
    LEDGER_NAME: "a run directory's ledger",
    LOCK_NAME: "a run directory's lock",
    CACHE_FILE: "a run directory's image cache",
}


def register(sub: argparse._SubParsersAction[Any]) -> None:
    """Add `report`."""
    p = sub.add_parser(
        "report",
        help="write an HTML storyboard, a CSV or a JSON report of a run (no network)",
        description="Build a report of a run from MANIFEST and the run directory's ledger, "
        "without network access, and print the path written.",
    )
    p.add_argument(
        "manifest",
        nargs="?",
        metavar="MANIFEST",
        help="the manifest (default: the one the ledger's header names)",
    )
    # The same overrides as `run`: image URLs must resolve as they did for the run
    # to find the local copies pre-flight kept of them.
    p.add_argument(
        "--budget",
        type=parse_budget,
        metavar="N",
        help="credit cap to compare against (default: the budget of the last run, "
        "else the manifest's)",
    )
    add_shot_overrides(p)
    add_run_dir_option(p)
    p.add_argument(
        "--format",
        choices=FORMATS,
        default="html",
        help="html (default): a storyboard page; csv: one row per job; json: rows and totals",
    )
    p.add_argument(
        "-o",
        "--output",
        metavar="PATH",
        help="where to write (default: <run-dir>/report.<format>; - for standard output, "
        "with file links relative to the current directory)",
    )
    p.set_defaults(handler=cmd_report, strict=False)


def cmd_report(args: argparse.Namespace, io: IO) -> int:
    """Write the report and print its path, or print it (``-o -``)."""
    from batchkling.report.publish import assemble_report, read_run

    run_dir = run_dir_of(args, "report")
    _refuse_protected(args.output, run_dir)
    ledger_path = ledger_of_run(args.manifest, run_dir)
    read = read_run(ledger_path)  # folded as it is read: no list of events is kept
    warn_torn_tail(ledger_path, read.torn_tail, io)
    st = read.state
    # As the latest run loaded it, so that images resolve to the copies it kept.
    manifest = manifest_of_run(args, st, run_dir, io, show_warnings=args.manifest is not None)

    report = assemble_report(run_dir, manifest, read, budget=args.budget)
    _write(report, args.format, args.output, run_dir, io)
    return 0


def protected_reason(target: Path, run_dir: Path) -> str | None:
    """What ``target`` is, if a report must never be written over it; else None.

    The ledger, lock and image cache of any run directory (by name, beside a
    ledger), the same files by another name (a link), anything in this run's
    ``videos/``, and any existing file that is a video.
    """
    resolved = target.resolve()
    for path in (target, resolved):
        what = PROTECTED_NAMES.get(path.name)
        if what is not None and (path.parent / LEDGER_NAME).exists():
            return what
    videos = (run_dir / VIDEOS_DIR).resolve()
    if resolved == videos or videos in resolved.parents:
        return "in the run directory's videos/"
    for name, what in PROTECTED_NAMES.items():
        kept = run_dir / name
        if kept.exists() and target.exists() and os.path.samefile(kept, target):
            return what
    try:
        with open(resolved, "rb") as fh:
            head = fh.read(16)
    except OSError:
        return None
    return "a video" if looks_like_video(head) else None


def _refuse_protected(output: str | None, run_dir: Path) -> None:
    if output is None or output == "-":
        return
    why = protected_reason(Path(output).absolute(), run_dir)
    if why is not None:
        raise UsageError(
            f"report -o {output}: that is {why}; a report never writes over it.",
            hint="Choose another path, or leave -o out to write <run-dir>/report.<format>.",
        )


def _write(report: Report, fmt: str, output: str | None, run_dir: Path, io: IO) -> None:
    """Print the report (``-o -``), or write it and print where."""
    from batchkling.report.publish import stream_report, write_report

    if output == "-":
        stream_report(report, fmt, io.out, Path.cwd())
        return
    target = Path(output) if output else run_dir / f"report.{fmt}"
    print(write_report(report, fmt, target), file=io.out)
