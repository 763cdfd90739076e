"""The JSON Schemas shipped with the package (``schemas/`` in the source tree).

They are package data of ``batchkling.schemas``, so an installed batchkling finds
them without a source tree. Schemas refer to each other by relative ``$ref``
(``shot.schema.json``), resolved against their ``$id`` through one registry that
holds every shipped schema.
"""

from __future__ import annotations

import functools
import json
from importlib import resources
from importlib.abc import Traversable
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator
from referencing import Registry, Resource

__all__ = ["load_schema", "schema_names", "schema_registry", "validator_for"]

_PACKAGE = "batchkling.schemas"


def _folder() -> Traversable:
    try:
        return resources.files(_PACKAGE)
    except ModuleNotFoundError:
        # A source tree used without installing: the schemas sit beside the package.
        return Path(__file__).resolve().parent.parent / "schemas"


@functools.cache
def _text(name: str) -> str:
    if "/" in name or "\\" in name or not name.endswith(".json"):
        raise ValueError(f"not a schema file name: {name!r}")
    try:
        return _folder().joinpath(name).read_text(encoding="utf-8")
    except FileNotFoundError:
        shipped = ", ".join(schema_names())
        raise ValueError(f"no schema named {name!r}; shipped: {shipped}") from None


def schema_names() -> list[str]:
    """The file names of every shipped schema, sorted."""
    return sorted(entry.name for entry in _folder().iterdir() if entry.name.endswith(".json"))


def load_schema(name: str) -> dict[str, Any]:
    """The parsed schema ``schemas/<name>`` (a fresh dict: callers may change it)."""
    schema: dict[str, Any] = json.loads(_text(name))
    return schema


@functools.cache
def schema_registry() -> Registry[Any]:
    """A registry of every shipped schema under its ``$id``, for cross-file ``$ref``."""
    resources_ = []
    for name in schema_names():
        schema = load_schema(name)
        if "$id" in schema:
            resources_.append((schema["$id"], Resource.from_contents(schema)))
    return Registry().with_resources(resources_)


def validator_for(name_or_schema: str | dict[str, Any]) -> Draft202012Validator:
    """A 2020-12 validator for a shipped schema (by name) or for a schema derived from one."""
    schema = load_schema(name_or_schema) if isinstance(name_or_schema, str) else name_or_schema
    return Draft202012Validator(schema, registry=schema_registry())
