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

from batchkling._util import collector_paused
from batchkling.errors import ManifestError, Problem
from batchkling.manifest.build import Builder
from batchkling.manifest.csv_reader import read_csv
from batchkling.manifest.rules import SHOT_FIELDS, convert_text
from batchkling.manifest.yaml_reader import read_yaml
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
) -> Manifest:
    """Read, validate and normalise a manifest file; raise ``ManifestError`` with every problem.

    ``budget``, ``image_base_url`` and ``defaults`` override the file's own
    values. With ``strict``, every warning is an error.
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
) -> Manifest:
    """The manifest held by ``data`` (the bytes of ``file``), as ``load_manifest`` returns it."""
    if not data.strip():
        raise _one(file, "the file is empty" if not data else "the file holds only blank space")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        byte = data[exc.start : exc.start + 1].hex()
        raise _one(
            file, f"is not UTF-8 text (byte 0x{byte} cannot be read); save it as UTF-8", line
        ) from None
    with collector_paused():
        if csv:
            doc = read_csv(text.removeprefix("\ufeff"), file, defaults or {})
        else:
            del text  # libyaml reads the bytes itself
            doc = read_yaml(data, file)
        if doc.fatal:
            raise ManifestError(_ordered(doc.problems))
        builder = Builder(file, doc)
        builder.settings(budget, image_base_url, defaults)
        shots = builder.shots(doc.shots or [])
        problems, warnings = builder.problems, builder.warnings
        if strict:
            problems = problems + [replace(w, warning=False) for w in warnings]
            warnings = []
        if problems:
            raise ManifestError(_ordered(problems + warnings))
        manifest = Manifest(
            path=path if path is not None else file,
            sha256=hashlib.sha256(data).hexdigest(),
            shots=tuple(shots),
            name=builder.name,
            budget=builder.budget,
            image_base_url=builder.base,
            warnings=tuple(_ordered(warnings)),
        )
        manifest.jobs  # noqa: B018 - every caller needs the jobs: make them while paused
    return manifest


def _ordered(problems: list[Problem]) -> list[Problem]:
    # Problems are found section by section; the user reads them top to bottom.
    return sorted(problems, key=lambda p: -1 if p.line is None else p.line)
