"""The options every command that reads a manifest shares, and loading it from them.

``add_manifest_options`` adds ``MANIFEST`` (``args.manifest``), ``--budget N``
(``args.budget``), ``--image-base-url URL`` (``args.image_base_url``),
``--default KEY=VALUE`` (``args.defaults``, a list of (key, value) pairs) and
``--strict`` (``args.strict``). ``load_manifest_from_args`` turns them into a
``Manifest``.
"""

from __future__ import annotations

import argparse
import difflib
from typing import TYPE_CHECKING, Any

from batchkling.manifest.load import SHOT_FIELDS, convert_text, load_manifest
from batchkling.model import Manifest

if TYPE_CHECKING:
    from batchkling.cli._io import IO

__all__ = [
    "add_manifest_options",
    "add_shot_overrides",
    "load_manifest_from_args",
    "parse_budget",
    "parse_default",
]

_DEFAULTABLE = tuple(f for f in SHOT_FIELDS if f != "id")


def parse_budget(text: str) -> int:
    """``--budget N``: a whole number of credits, at least 0."""
    try:
        value = int(text.replace(",", "").replace("_", ""))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of credits") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be at least 0, not {value}")
    return value


def parse_default(text: str) -> tuple[str, Any]:
    """``--default KEY=VALUE``: a shot field (not ``id``) and its value, read as in a CSV cell."""
    key, sep, value = text.partition("=")
    key = key.strip().lower()
    if not sep:
        raise argparse.ArgumentTypeError(f"{text!r} is not KEY=VALUE")
    if key == "id":
        raise argparse.ArgumentTypeError("a default id is not allowed: every shot needs its own id")
    if key not in _DEFAULTABLE:
        close = difflib.get_close_matches(key, _DEFAULTABLE, n=1)
        hint = f"did you mean {close[0]}?" if close else f"use one of {', '.join(_DEFAULTABLE)}"
        raise argparse.ArgumentTypeError(f"unknown field {key!r}; {hint}")
    try:
        return key, convert_text(key, value.strip())
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{key}: {exc}") from None


def add_manifest_options(parser: argparse.ArgumentParser) -> None:
    """Add MANIFEST and the options that override its settings."""
    parser.add_argument(
        "manifest",
        metavar="MANIFEST",
        help="the manifest: YAML, or CSV when the name ends in .csv",
    )
    parser.add_argument(
        "--budget",
        type=parse_budget,
        metavar="N",
        help="credit cap for the whole manifest (overrides its budget)",
    )
    add_shot_overrides(parser)
    parser.add_argument("--strict", action="store_true", help="treat every warning as an error")


def add_shot_overrides(parser: argparse.ArgumentParser) -> None:
    """Add --image-base-url and --default: what decides a manifest's shots besides the file.

    Commands that read a finished run take them too, so that image URLs resolve as
    they did for the run.
    """
    parser.add_argument(
        "--image-base-url",
        metavar="URL",
        help="where relative image names resolve (overrides the manifest's image_base_url)",
    )
    parser.add_argument(
        "--default",
        dest="defaults",
        action="append",
        type=parse_default,
        default=[],
        metavar="KEY=VALUE",
        help="a default for a shot field, e.g. model_mode=pro (repeatable; overrides the "
        "manifest's defaults)",
    )


def load_manifest_from_args(args: argparse.Namespace, io: IO) -> Manifest:
    """Load the manifest the options name; print its warnings to ``io.err``.

    Raises ``ManifestError`` with every problem, which the CLI prints one per line.
    """
    manifest = load_manifest(
        args.manifest,
        budget=args.budget,
        image_base_url=args.image_base_url,
        defaults=dict(args.defaults) or None,
        strict=args.strict,
    )
    for warning in manifest.warnings:
        print(warning, file=io.err)
    return manifest
