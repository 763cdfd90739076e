"""`batchkling validate`: check a manifest and report every problem. Spends nothing."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from batchkling.cli._manifest_args import add_manifest_options, load_manifest_from_args
from batchkling.cost import total_credits

if TYPE_CHECKING:
    from batchkling.cli._io import IO

__all__ = ["cmd_validate", "register"]


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


def _plural(n: int, word: str) -> str:
    return f"{n:,} {word}" if n == 1 else f"{n:,} {word}s"


def cmd_validate(args: argparse.Namespace, io: IO) -> int:
    """Print one line saying the manifest is valid, or raise ``ManifestError``."""
    manifest = load_manifest_from_args(args, io)
    total = total_credits(manifest.jobs)
    summary = (
        f"{args.manifest}: valid: {_plural(len(manifest.shots), 'shot')}, "
        f"{_plural(len(manifest.jobs), 'job')}, {total:,} credits"
    )
    if manifest.warnings:
        summary += f", {_plural(len(manifest.warnings), 'warning')}"
    if manifest.budget is not None:
        fits = "fits" if total <= manifest.budget else "does not fit"
        summary += f"; {fits} the budget of {manifest.budget:,}"
    print(summary, file=io.out)
    return 0
