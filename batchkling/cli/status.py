"""`batchkling status`: the state of every job of a run, from the ledger alone."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from batchkling.cli._io import IO
from batchkling.cli._manifest_args import add_shot_overrides
from batchkling.cli._options import add_run_dir_option, existing_ledger, warn_torn_tail
from batchkling.errors import UsageError
from batchkling.ledger import fold_ledger
from batchkling.manifest.load import load_manifest
from batchkling.report.rows import default_run_dir, job_rows, state_counts, write_status_json

__all__ = ["cmd_status", "register"]


def register(sub: argparse._SubParsersAction[Any]) -> None:
    """Add `status`."""
    s = sub.add_parser("status", help="show the state of every job of a run (no network)")
    s.add_argument("manifest", nargs="?", metavar="MANIFEST")
    add_run_dir_option(s)
    s.add_argument("--json", action="store_true", help="print one JSON document")
    add_shot_overrides(s)
    s.set_defaults(handler=cmd_status)


def cmd_status(args: argparse.Namespace, io: IO) -> int:
    """Print the state of every job, as a table or (``--json``) one JSON document."""
    if args.manifest is None and args.run_dir is None:
        raise UsageError("status needs MANIFEST or --run-dir DIR.")
    jobs = None
    if args.manifest is not None:
        manifest = load_manifest(
            args.manifest, image_base_url=args.image_base_url, defaults=dict(args.defaults) or None
        )
        jobs = manifest.jobs
        run_dir = args.run_dir or default_run_dir(manifest.path)
    else:
        run_dir = args.run_dir
    ledger_path = existing_ledger(run_dir, required=args.manifest is None)
    read = fold_ledger(ledger_path)
    warn_torn_tail(ledger_path, read.torn_tail, io)
    st = read.state
    rows = job_rows(jobs, st, Path(run_dir))
    if args.json:
        write_status_json(rows, st, io.out, audit=_last_audit(Path(run_dir)))
        return 0
    counts = ", ".join(f"{k} {v}" for k, v in state_counts(rows).items() if v)
    print(
        f"{len(rows)} jobs: {counts or 'none'}; {st.credits_committed} credits committed",
        file=io.out,
    )
    width = max((len(r.key) for r in rows), default=3)
    for r in rows:
        tail = r.output or r.error or ""
        print(
            f"{r.key:<{width}}  {r.state.value:<9}  {r.credits:>6}  {r.task_id or '-':<36}  {tail}",
            file=io.out,
        )
    return 0


def _last_audit(run_dir: Path) -> object:
    """The verdict the last audit of this run directory kept, if one was run."""
    try:
        return json.loads((run_dir / "audit.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
