"""`batchkling validate`: check a manifest and report every problem. Spends nothing."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from batchkling._util import of_budget, plural, thousands
from batchkling.cli._manifest_args import add_manifest_options, load_manifest_from_args

if TYPE_CHECKING:
    from batchkling.cli._io import IO

__all__ = ["cmd_validate", "register"]

# The manifest loader and the price rule are imported by the handler: `validate --help`
# and every other command's parser load neither.


def register(sub: argparse._SubParsersAction[Any]) -> None:
    """Add `validate`."""
    p = sub.add_parser(
        "validate",
        help="check a manifest and report every problem",
        description="Check MANIFEST against the schema and the API's rules and report every "
        "problem as FILE:LINE: shot ID: FIELD: message. Exit 0 when valid (warnings do not "
        "fail unless --strict), 2 when invalid.",
    )
    add_manifest_options(p)
    p.set_defaults(handler=cmd_validate)


def cmd_validate(args: argparse.Namespace, io: IO) -> int:
    """Print one line saying the manifest is valid, or raise ``ManifestError``."""
    from batchkling.cost import total_credits

    manifest = load_manifest_from_args(args, io)
    total = total_credits(manifest.jobs)
    summary = (
        f"{args.manifest}: valid: {plural(len(manifest.shots), 'shot')}, "
        f"{plural(len(manifest.jobs), 'job')}, {of_budget(total, manifest.budget)} credits"
    )
    if manifest.warnings:
        summary += f", {plural(len(manifest.warnings), 'warning')}"
    if manifest.budget is not None:
        over = total - manifest.budget
        summary += f"; over the budget by {thousands(over)}" if over > 0 else "; fits the budget"
    print(summary, file=io.out)
    return 0
