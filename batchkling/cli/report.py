"""`batchkling report`: an HTML storyboard, CSV or JSON of a run, from the ledger alone.

A report is written anywhere ``-o`` says except over what a run keeps: the
ledger, the lock, the image cache, and any video or poster (the run directory's
``videos/``, or a file elsewhere that is a video). Those are refused (exit 2)
before anything is read.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from batchkling.cli._io import IO
from batchkling.cli._manifest_args import (
    add_shot_overrides,
    load_manifest_from_args,
    parse_budget,
)
from batchkling.cli._options import add_run_dir_option, existing_ledger, warn_torn_tail
from batchkling.errors import BatchklingError, UsageError
from batchkling.ledger import LEDGER_NAME, LOCK_NAME, read_ledger
from batchkling.manifest.load import load_manifest
from batchkling.model import Manifest
from batchkling.preflight.image_fetch import CACHE_FILE
from batchkling.report.build import (
    FORMATS,
    Report,
)
from batchkling.report.publish import assemble_report, recorded_sha, render_report, write_report
from batchkling.report.rows import (
    default_run_dir,
)
from batchkling.state import fold
from batchkling.video.rules import VIDEOS_DIR, looks_like_video

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


def _manifest_of_header(header: Mapping[str, Any] | None, io: IO) -> Manifest | None:
    """The manifest the ledger was made for, when it can still be read; else a warning."""
    path = header.get("manifest") if header is not None else None
    if not isinstance(path, str):
        return None
    try:
        return load_manifest(path)
    except BatchklingError as exc:
        print(
            f"batchkling: warning: cannot read the manifest {path} named by the ledger "
            f"({exc.message}); the report shows the ledger only.",
            file=io.err,
        )
        return None


def cmd_report(args: argparse.Namespace, io: IO) -> int:
    """Write the report and print its path, or print it (``-o -``)."""
    manifest = load_manifest_from_args(args, io) if args.manifest is not None else None
    if args.run_dir is not None:
        run_dir = Path(args.run_dir).absolute()
    elif manifest is not None:
        run_dir = default_run_dir(manifest.path)
    else:
        raise UsageError("report needs MANIFEST or --run-dir DIR.")
    _refuse_protected(args.output, run_dir)
    ledger_path = existing_ledger(run_dir, required=manifest is None)
    read = read_ledger(ledger_path)
    warn_torn_tail(ledger_path, read.torn_tail, io)
    st = fold(read.events)
    if manifest is None:
        manifest = _manifest_of_header(st.header, io)
    recorded = recorded_sha(read.events)
    if manifest is not None and recorded is not None and recorded != manifest.sha256:
        print(
            f"batchkling: warning: {manifest.path} changed since the last run; "
            "the report shows its current prompts and images.",
            file=io.err,
        )

    report = assemble_report(run_dir, manifest, read.events, st, budget=args.budget)
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
    if output == "-":
        io.out.write(render_report(report, fmt, Path.cwd()))
        return
    target = Path(output) if output else run_dir / f"report.{fmt}"
    print(write_report(report, fmt, target), file=io.out)
