"""Manifests: from a YAML or CSV file to a validated ``Manifest`` of normalised shots.

``load_manifest`` reads the file; everything after that is ``build_manifest``,
pure over the file's bytes. Every problem is collected in one pass and raised
together as a ``ManifestError``; each names its file, line, shot and field.

The checks themselves, in their order, are in ``batchkling.manifest.build``.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from batchkling._util import collector_paused
from batchkling.errors import ManifestError, Problem
from batchkling.manifest.build import Builder
from batchkling.manifest.csv_reader import read_csv
from batchkling.manifest.rules import SHOT_FIELDS, convert_text
from batchkling.model import Manifest

__all__ = ["SHOT_FIELDS", "build_manifest", "convert_text", "is_csv", "load_manifest"]


def is_csv(path: str | os.PathLike[str]) -> bool:
    """Whether a manifest file is read as CSV (by its ``.csv`` suffix) rather than YAML."""
    return os.fspath(path).lower().endswith(".csv")


def load_manifest(
    path: str | os.PathLike[str],
    *,
    budget: int | None = None,
    image_base_url: str | None = None,
    defaults: Mapping[str, object] | None = None,
    strict: bool = False,
    upload_to: str | None = None,
    upload_public_url: str | None = None,
    require_upload: bool = False,
) -> Manifest:
    """Read, validate and normalise a manifest file; raise ``ManifestError`` with every problem.

    ``budget``, ``image_base_url`` and ``defaults`` override the file's own
    values, and so do ``upload_to`` and ``upload_public_url``. With ``strict``,
    every warning is an error. Local image files are looked up (relative to the
    manifest's directory) and hashed; with ``require_upload``, a local image with
    nowhere to upload it is a problem.
    """
    file = os.fspath(path)
    try:
        with open(file, "rb") as stream:
            data = stream.read()
    except FileNotFoundError:
        raise _one(file, "no such file") from None
    except IsADirectoryError:
        raise _one(file, "is a directory, not a manifest file") from None
    except OSError as exc:
        raise _one(file, f"cannot be read: {exc.strerror or exc}") from None
    return build_manifest(
        data,
        file=file,
        path=os.path.abspath(file),
        csv=is_csv(file),
        budget=budget,
        image_base_url=image_base_url,
        defaults=defaults,
        strict=strict,
        directory=Path(os.path.abspath(file)).parent,
        upload_to=upload_to,
        upload_public_url=upload_public_url,
        require_upload=require_upload,
    )


def _one(file: str, message: str, line: int | None = None) -> ManifestError:
    return ManifestError([Problem(file, line, None, None, message)])


def build_manifest(
    data: bytes,
    *,
    file: str,
    path: str | None = None,
    csv: bool = False,
    budget: int | None = None,
    image_base_url: str | None = None,
    defaults: Mapping[str, object] | None = None,
    strict: bool = False,
    directory: Path | None = None,
    upload_to: str | None = None,
    upload_public_url: str | None = None,
    require_upload: bool = False,
) -> Manifest:
    """The manifest held by ``data`` (the bytes of ``file``), as ``load_manifest`` returns it.

    ``directory`` is where local image names resolve (default: the current directory).
    """
    text = _decoded(data, file)
    with collector_paused():
        if csv:
            doc = read_csv(text.removeprefix("\ufeff"), file, defaults or {})
        else:
            # Here: a CSV manifest is read without loading the YAML library.
            from batchkling.manifest.yaml_reader import read_yaml

            del text  # libyaml reads the bytes itself
            doc = read_yaml(data, file)
        if doc.fatal:
            raise ManifestError(_ordered(doc.problems))
        builder = Builder(file, doc, directory)
        builder.settings(
            budget,
            image_base_url,
            defaults,
            upload_to=upload_to,
            upload_public_url=upload_public_url,
        )
        shots = builder.shots(doc.shots or [])
        builder.check_chains()
        if require_upload:
            builder.require_upload_target(shots)
        warnings = _refuse_problems(builder.problems, builder.warnings, strict=strict)
        manifest = Manifest(
            path=path if path is not None else file,
            sha256=hashlib.sha256(data).hexdigest(),
            shots=tuple(shots),
            name=builder.name,
            budget=builder.budget,
            image_base_url=builder.base,
            warnings=tuple(_ordered(warnings)),
            upload_to=builder.upload_to,
            upload_public_url=builder.upload_public_url,
            overrides=_overrides(budget, image_base_url, defaults, upload_to, upload_public_url),
        )
        manifest.jobs  # noqa: B018 - every caller needs the jobs: make them while paused
    return manifest


def _decoded(data: bytes, file: str) -> str:
    """The manifest's text; raises ``ManifestError`` for an empty file or one not in UTF-8."""
    if not data.strip():
        raise _one(file, "the file is empty" if not data else "the file holds only blank space")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        byte = data[exc.start : exc.start + 1].hex()
        raise _one(
            file, f"is not UTF-8 text (byte 0x{byte} cannot be read); save it as UTF-8", line
        ) from None


def _refuse_problems(
    problems: list[Problem], warnings: list[Problem], *, strict: bool
) -> list[Problem]:
    """Raise ``ManifestError`` with every problem (warnings too, under ``strict``); the warnings."""
    if strict:
        problems = problems + [replace(w, warning=False) for w in warnings]
        warnings = []
    if problems:
        raise ManifestError(_ordered(problems + warnings))
    return warnings


def _overrides(
    budget: int | None,
    image_base_url: str | None,
    defaults: Mapping[str, object] | None,
    upload_to: str | None,
    upload_public_url: str | None,
) -> dict[str, Any]:
    """The settings given besides the file, only those given, as JSON."""
    given = {
        "budget": budget,
        "image_base_url": image_base_url,
        "defaults": dict(defaults) if defaults else None,
        "upload_to": upload_to,
        "upload_public_url": upload_public_url,
    }
    return {k: v for k, v in given.items() if v is not None}


def _ordered(problems: list[Problem]) -> list[Problem]:
    # Problems are found section by section; the user reads them top to bottom.
    return sorted(problems, key=lambda p: -1 if p.line is None else p.line)
