"""The JSON Schemas shipped with the package (``schemas/`` in the source tree).

They are package data of ``batchkling.schemas``, so an installed batchkling finds
them without a source tree. Schemas refer to each other by relative ``$ref``
(``shot.schema.json``), resolved against their ``$id`` through one registry that
holds every shipped schema.

A schema's ``pattern`` is an ECMA-262 regular expression, in which ``$`` matches
only at the very end of the text. Python's ``$`` also matches before a final
newline, so an id ``u2`` followed by a newline would pass an id pattern written
``^...$``; the validators made here read each ``$`` as Python's end of text
(``python_pattern``).
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Iterator
from importlib import resources
from importlib.abc import Traversable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from jsonschema import Draft202012Validator, ValidationError
    from referencing import Registry

# jsonschema (and referencing, attrs under it) is imported when the first validator is
# made: reading a schema's field names, as building the command line does, needs none of it.

__all__ = ["load_schema", "python_pattern", "schema_names", "schema_registry", "validator_for"]

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
    from referencing import Registry, Resource

    resources_ = []
    for name in schema_names():
        schema = load_schema(name)
        if "$id" in schema:
            resources_.append((schema["$id"], Resource.from_contents(schema)))
    return Registry().with_resources(resources_)


@functools.lru_cache(maxsize=256)
def python_pattern(pattern: str) -> re.Pattern[str]:
    r"""A JSON Schema ``pattern`` compiled for Python, each ``$`` outside a class as ``\Z``."""
    out: list[str] = []
    i, in_class = 0, False
    while i < len(pattern):
        char = pattern[i]
        if char == "\\":
            out.append(pattern[i : i + 2])
            i += 2
            continue
        if in_class:
            in_class = char != "]"
        elif char == "[":
            in_class = True
        elif char == "$":
            char = r"\Z"
        out.append(char)
        i += 1
    return re.compile("".join(out))


def _pattern(
    validator: Any, pattern: str, instance: Any, schema: dict[str, Any]
) -> Iterator[ValidationError]:
    if validator.is_type(instance, "string") and not python_pattern(pattern).search(instance):
        from jsonschema import ValidationError  # here: only a failing value pays for the lookup

        yield ValidationError(f"{instance!r} does not match {pattern!r}")


@functools.cache
def _validator_class() -> Any:
    from jsonschema import Draft202012Validator, validators

    return validators.extend(Draft202012Validator, {"pattern": _pattern})


def validator_for(name_or_schema: str | dict[str, Any]) -> Draft202012Validator:
    """A 2020-12 validator for a shipped schema (by name) or for a schema derived from one.

    Its ``pattern`` keyword means what ECMA-262 means (``python_pattern``).
    """
    schema = load_schema(name_or_schema) if isinstance(name_or_schema, str) else name_or_schema
    validator: Draft202012Validator = _validator_class()(schema, registry=schema_registry())
    return validator
