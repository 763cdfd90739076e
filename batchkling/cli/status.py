"""`batchkling status`: the state of every job of a run, from the ledger alone.

Each job's line ends with its review, when it has one (``[picked]``,
``[rejected]``, ``note: "..."``), marks still in the review inbox included.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from batchkling._util import of_budget, plural, thousands
from batchkling.cli._manifest_args import add_shot_overrides, manifest_of_run, run_dir_of
from batchkling.cli._options import add_run_dir_option, existing_ledger, warn_torn_tail

if TYPE_CHECKING:
    from batchkling.cli._io import IO
    from batchkling.model import Manifest
    from batchkling.state import RunState

__all__ = ["cmd_status", "marks_text", "register"]

# The ledger, the manifest loader and the rows are imported when the command runs, so
# that building the parser for any command loads none of them.


def register(sub: argparse._SubParsersAction[Any]) -> None:
    """Add `status`."""
    s = sub.add_parser("status", help="show the state of every job of a run (no network)")
    s.add_argument("manifest", nargs="?", metavar="MANIFEST")
    add_run_dir_option(s)
    s.add_argument("--json", action="store_true", help="print one JSON document")
    add_shot_overrides(s)
    s.set_defaults(handler=cmd_status)


def cmd_status(args: argparse.Namespace, io: IO) -> int:
    """Print the state of every job, as a table or (``--json``) one JSON document.

    The jobs are the manifest's, in its order, as the latest run loaded it (MANIFEST,
    else the one the ledger names), then any only the ledger knows.
    """
    from batchkling.ledger import fold_ledger
    from batchkling.report.rows import job_rows, state_counts, write_status_json

    run_dir = run_dir_of(args, "status")
    ledger_path = existing_ledger(run_dir, required=args.manifest is None)
    read = fold_ledger(ledger_path)
    warn_torn_tail(ledger_path, read.torn_tail, io)
    st = read.state
    # Only the job keys and their order matter here: no image needs to resolve.
    manifest = manifest_of_run(args, st, run_dir, io, images=False)
    rows = job_rows(manifest.jobs if manifest is not None else None, st, run_dir)
    if args.json:
        write_status_json(rows, st, io.out, audit=_last_audit(run_dir))
        return 0
    counts = ", ".join(f"{k} {thousands(v)}" for k, v in state_counts(rows).items() if v)
    committed = of_budget(st.credits_committed, _budget(st, manifest))
    print(
        f"{plural(len(rows), 'job')}: {counts or 'none'}; {committed} credits committed",
        file=io.out,
    )
    width = max((len(r.key) for r in rows), default=3)
    for r in rows:
        tail = r.output or r.error or ""
        line = (
            f"{r.key:<{width}}  {r.state.value:<9}  {thousands(r.credits):>7}  "
            f"{r.task_id or '-':<36}  {tail}"
        )
        marks = marks_text(r.marks)
        print(f"{line}  {marks}" if marks else line, file=io.out)
    return 0


def marks_text(marks: Mapping[str, Any]) -> str:
    """The review of a take at the end of its status line: ``[picked]``, ``[rejected]``,
    ``note: "..."`` (the note on one line, as JSON quotes it); "" when unreviewed."""
    parts = [f"[{name}]" for name in ("picked", "rejected") if marks.get(name)]
    note = marks.get("note")
    if isinstance(note, str):
        parts.append(f"note: {json.dumps(note, ensure_ascii=False)}")
    return " ".join(parts)


def _budget(st: RunState, manifest: Manifest | None) -> int | None:
    """The budget the latest run was held to; before any run, the manifest's."""
    if st.last_run is not None:
        return st.last_run.budget
    return manifest.budget if manifest is not None else None


def _last_audit(run_dir: Path) -> object:
    """The verdict the last audit of this run directory kept, if one was run."""
    try:
        return json.loads((run_dir / "audit.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
