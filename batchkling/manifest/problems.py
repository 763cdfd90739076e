"""jsonschema's errors as ``Problem`` lines a user can act on.

jsonschema says what is wrong in its own words and with a path into the
instance; here each error becomes one sentence per field it concerns (an
unknown key with the name it probably meant, each missing field), placed on the
line where that field is written.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Collection, Iterable, Sequence
from typing import Any

from jsonschema import ValidationError

from batchkling.errors import Problem

__all__ = ["problems_from_errors"]


_EXPECTED = {
    "string": "a string",
    "integer": "a whole number",
    "number": "a number",
    "boolean": "true or false",
    "array": "a list",
    "object": "a mapping",
    "null": "null",
}


def _kind_of(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "a whole number"
    if isinstance(value, float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, (list, tuple)):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return f"a {type(value).__name__}"


def _field_name(path: Sequence[Any]) -> str | None:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or None


def _suggest(name: str, known: Iterable[str]) -> str:
    known = list(known)
    close = difflib.get_close_matches(name, known, n=1)
    if close:
        return f"unknown field; did you mean {close[0]}?"
    return f"unknown field; known fields: {', '.join(known)}"


def _messages(error: ValidationError) -> list[tuple[list[Any], str]]:
    """(path, message) pairs for one error; some errors name several fields."""
    path = list(error.path)
    kind = error.validator
    value: Any = error.validator_value
    instance = error.instance
    if kind == "additionalProperties" and isinstance(instance, dict):
        known = list(error.schema.get("properties", {}))
        out = []
        for key in instance:
            if key in known:
                continue
            if key == "id" and path == ["defaults"]:
                message = "a default id is not allowed: every shot needs its own id"
            else:
                message = _suggest(str(key), known)
            out.append(([*path, key], message))
        return out
    if kind == "required" and isinstance(instance, dict):
        return [([*path, k], "required field is missing") for k in value if k not in instance]
    if kind == "type":
        kinds = [value] if isinstance(value, str) else list(value)
        if kinds == ["number", "string"]:
            expected = "a number or a numeric string"
        else:
            expected = " or ".join(_EXPECTED.get(k, k) for k in kinds)
        hint = ""
        if kinds == ["string"] and (instance is None or isinstance(instance, (bool, int, float))):
            hint = " (quote the value in YAML to keep it as text)"
        return [(path, f"must be {expected}, not {_kind_of(instance)}{hint}")]
    if kind == "enum":
        allowed = ", ".join(str(v) for v in value)
        return [(path, f"must be one of {allowed}, not {instance!r}")]
    if kind == "const":
        return [(path, f"must be {value!r}, not {instance!r}")]
    if kind == "pattern":
        if path and path[-1] == "id":
            return [
                (
                    path,
                    f"{instance!r} is not a valid id: use 1 to 64 letters, digits, '.', '_' "
                    "or '-', starting with a letter or digit",
                )
            ]
        if path and path[-1] == "duration":
            return [(path, f"{instance!r} is not a number of seconds")]
        return [(path, f"{instance!r} does not match {value}")]
    if kind == "minimum":
        return [(path, f"must be at least {value}, not {instance!r}")]
    if kind == "maximum":
        return [(path, f"must be at most {value}, not {instance!r}")]
    if kind == "minLength" and value == 1:
        return [(path, "must not be empty")]
    if kind == "minItems" and path == ["shots"]:
        return [(path, "must hold at least one shot")]
    return [(path, error.message)]


def problems_from_errors(
    errors: Iterable[ValidationError],
    *,
    file: str,
    shot: str | None,
    line_for: Callable[[Sequence[Any]], int | None],
    prefix: Sequence[Any] = (),
    skip: Collection[str] = (),
    suffix: str = "",
    failed: set[str] | None = None,
) -> list[Problem]:
    """One ``Problem`` per finding, placed on the line of the field it concerns.

    ``prefix`` is prepended to each error's path (``defaults``); errors about a
    field in ``skip`` are dropped, because reading that field already failed
    (``""`` in ``skip`` stands for the whole value).
    The first element of each path found is added to ``failed``.
    """
    out: list[Problem] = []
    seen: set[tuple[tuple[Any, ...], str]] = set()
    for error in errors:
        for path, message in _messages(error):
            if (path[0] if path else "") in skip:
                continue
            # jsonschema yields one `required` error per missing field, each naming all.
            if (tuple(path), message) in seen:
                continue
            seen.add((tuple(path), message))
            if failed is not None and path:
                failed.add(str(path[0]))
            out.append(
                Problem(file, line_for(path), shot, _field_name([*prefix, *path]), message + suffix)
            )
    return out
