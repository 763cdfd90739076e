"""The options every command that reads a manifest shares, and loading it from them.

``add_manifest_options`` adds ``MANIFEST`` (``args.manifest``), ``--budget N``
(``args.budget``), ``--image-base-url URL`` (``args.image_base_url``),
``--default KEY=VALUE`` (``args.defaults``, a list of (key, value) pairs) and
``--strict`` (``args.strict``). ``load_manifest_from_args`` turns them into a
``Manifest``.

The commands that read a run (``status``, ``report``, ``reconcile``, ``audit``)
find it with ``run_dir_of`` and ``ledger_of_run``, and load its manifest with
``manifest_of_run``: as the latest run loaded it (the path, the overrides its
``run_started`` recorded), each flag given on the command line winning.
"""

from __future__ import annotations

import argparse
import difflib
import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from batchkling.cli._upload_args import add_upload_options
from batchkling.errors import BatchklingError, ManifestError, UsageError

# The field rules, not the loader: the loader (YAML, the schema validators) is
# imported when a manifest is read, so that building a parser loads none of it.
from batchkling.manifest.rules import SHOT_FIELDS, convert_text

if TYPE_CHECKING:
    from batchkling.cli._io import IO
    from batchkling.model import Manifest
    from batchkling.state import RunState

__all__ = [
    "add_manifest_options",
    "add_shot_overrides",
    "effective_overrides",
    "given_overrides",
    "ledger_of_run",
    "load_manifest_from_args",
    "manifest_of_run",
    "parse_budget",
    "parse_default",
    "run_dir_of",
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
    add_upload_options(parser)


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
    from batchkling.manifest.load import load_manifest

    manifest = load_manifest(
        args.manifest,
        budget=args.budget,
        image_base_url=args.image_base_url,
        defaults=dict(args.defaults) or None,
        strict=args.strict,
        # Commands with the upload options need somewhere to put local images.
        upload_to=getattr(args, "upload_to", None),
        upload_public_url=getattr(args, "upload_public_url", None),
        require_upload=hasattr(args, "upload_to"),
    )
    for warning in manifest.warnings:
        print(warning, file=io.err)
    return manifest


def given_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The manifest settings this command line gives, only those given, as a run records them."""
    out: dict[str, Any] = {}
    if getattr(args, "budget", None) is not None:
        out["budget"] = args.budget
    for name in ("image_base_url", "upload_to", "upload_public_url"):
        if getattr(args, name, None) is not None:
            out[name] = getattr(args, name)
    if getattr(args, "defaults", None):
        out["defaults"] = dict(args.defaults)
    return out


def effective_overrides(
    recorded: Mapping[str, Any] | None, given: Mapping[str, Any]
) -> dict[str, Any]:
    """The recorded overrides with those given over them: per flag, and per field of --default.

    A ``--default`` for one field keeps the recorded defaults of the others, as the
    flag is given once per field.
    """
    out = dict(recorded or {})
    for key, value in given.items():
        if key == "defaults":
            out[key] = {**out.get(key, {}), **value}
        else:
            out[key] = value
    return out


def run_dir_of(args: argparse.Namespace, command: str) -> Path:
    """The run directory of MANIFEST or --run-dir (which wins); absolute."""
    from batchkling.report.rows import default_run_dir

    if args.run_dir is not None:
        return Path(args.run_dir).absolute()
    if args.manifest is None:
        raise UsageError(f"{command} needs MANIFEST or --run-dir DIR.")
    return default_run_dir(args.manifest)


def ledger_of_run(manifest: str | None, run_dir: Path) -> Path:
    """The ledger of ``run_dir``; an error naming where it looked when nothing ran there."""
    from batchkling.cli._options import existing_ledger
    from batchkling.ledger import LEDGER_NAME
    from batchkling.manifest.load import load_manifest

    path = run_dir / LEDGER_NAME
    if path.exists():
        return path
    if manifest is None:
        return existing_ledger(run_dir, required=True)
    if not os.path.isfile(manifest):
        load_manifest(manifest)  # a mistyped name: the one line every command gives for it
    raise UsageError(f"no run of {manifest} yet (expected {run_dir}).")


# A base every relative image name resolves against, for a command that only needs
# the job keys and their order (which never depend on where the images are).
_ANY_BASE = "https://unresolved.invalid/"


def manifest_of_run(
    args: argparse.Namespace,
    st: RunState,
    run_dir: Path,
    io: IO,
    *,
    images: bool = True,
    show_warnings: bool = False,
) -> Manifest | None:
    """The manifest of a run, loaded as its latest run loaded it, each flag given winning.

    MANIFEST when given (its errors are raised), else the one the ledger names
    (None, after one warning, when it is gone or no longer valid). One warning
    line when it changed since that run. With ``images`` False, images need not
    resolve: only the jobs are read.
    """
    rec = st.settings
    path = args.manifest if args.manifest is not None else rec.manifest
    if path is None:
        return None
    overrides = effective_overrides(rec.overrides, given_overrides(args))
    try:
        manifest = _load(path, overrides, images=images)
    except BatchklingError as exc:
        if args.manifest is not None:
            raise
        print(
            f"batchkling: warning: cannot read the manifest {path} named by the ledger "
            f"({exc.message}); only what the ledger knows is shown.",
            file=io.err,
        )
        return None
    _warn_changed(manifest, rec.manifest, rec.manifest_sha256, run_dir, io)
    if show_warnings:
        for warning in manifest.warnings:
            print(warning, file=io.err)
    return manifest


def _load(path: str, overrides: Mapping[str, Any], *, images: bool) -> Manifest:
    from batchkling.manifest.load import load_manifest

    kwargs: dict[str, Any] = {
        "budget": overrides.get("budget"),
        "image_base_url": overrides.get("image_base_url"),
        "defaults": overrides.get("defaults") or None,
        "upload_to": overrides.get("upload_to"),
        "upload_public_url": overrides.get("upload_public_url"),
    }
    try:
        return load_manifest(path, **kwargs)
    except ManifestError as first:
        if images or kwargs["image_base_url"] is not None:
            raise
        try:
            return load_manifest(path, **{**kwargs, "image_base_url": _ANY_BASE})
        except ManifestError:
            raise first from None


def _warn_changed(
    manifest: Manifest, recorded: str | None, sha256: str | None, run_dir: Path, io: IO
) -> None:
    """One line when the manifest is not the one the latest run read, as it read it."""
    path = str(Path(manifest.path).absolute())
    if recorded is not None and os.path.normcase(recorded) != os.path.normcase(path):
        print(
            f"batchkling: warning: the last run in {run_dir} was of {recorded}, not {path}; "
            "jobs with the same keys are taken as the same jobs.",
            file=io.err,
        )
    elif sha256 is not None and sha256 != manifest.sha256:
        print(
            f"batchkling: warning: {path} changed since the last run in {run_dir} "
            "(its sha256 differs); its current shots are shown.",
            file=io.err,
        )
