"""The rules of a manifest that are not its syntax: schema checks, durations, URLs, cells.

Pure functions over values. The JSON Schemas in ``schemas/`` hold the structure;
this module derives what it needs from them (field names and kinds, the
duration pattern, the validators). Both readers (YAML and CSV) produce
``RawShot`` values for the checks.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, NamedTuple
from urllib.parse import urljoin, urlsplit

from batchkling._util import whole_number
from batchkling.errors import Problem
from batchkling.manifest.schemas import load_schema, validator_for
from batchkling.model import MAX_DURATION, MIN_DURATION

if TYPE_CHECKING:
    from jsonschema import Draft202012Validator

__all__ = [
    "BOOL_WORDS",
    "MANIFEST_KEYS",
    "PROMPT_MAX_CHARS",
    "PROMPT_WARN_CHARS",
    "SHOT_FIELDS",
    "RawDocument",
    "RawShot",
    "RelativeURLError",
    "clamp_duration",
    "convert_text",
    "converter_for",
    "defaults_validator",
    "field_kind",
    "normalise_base_url",
    "parse_duration",
    "plain_relative_matcher",
    "resolve_url",
    "shot_validator",
    "top_validator",
    "url_resolver",
]

_SHOT_SCHEMA = load_schema("shot.schema.json")
_MANIFEST_SCHEMA = load_schema("manifest.schema.json")

SHOT_FIELDS: tuple[str, ...] = tuple(_SHOT_SCHEMA["properties"])
MANIFEST_KEYS: tuple[str, ...] = tuple(_MANIFEST_SCHEMA["properties"])
# The API documents no limit on a prompt; upstream Kling allows 2,500 characters. A
# longer prompt may be cut or refused (and a refused task may still be charged).
PROMPT_WARN_CHARS = 2_500
PROMPT_MAX_CHARS = 10_000
BOOL_WORDS: dict[str, bool] = {
    "true": True, "yes": True, "1": True, "false": False, "no": False, "0": False,
}  # fmt: skip

# The schema's pattern is ECMA-262; written with [0-9] and a literal space it
# means the same in Python, so one pattern decides for the schema and the parser.
_DURATION_RE = re.compile(_SHOT_SCHEMA["properties"]["duration"]["pattern"])


class RawShot(NamedTuple):
    """One shot as read, before validation: its fields and where each one was written.

    A named tuple rather than a dataclass: a large manifest makes one per row,
    and creating a tuple costs a third of a frozen dataclass.
    """

    fields: Any
    line: int | None
    key_lines: Mapping[str, int] = MappingProxyType({})
    bad: frozenset[str] = frozenset()  # fields whose reading failed; "" for the whole value


@dataclass
class RawDocument:
    """What a reader found: top-level settings with their lines, the shots, reading problems.

    ``fatal`` means the reading stopped early (a syntax error), so no further
    check would be meaningful.
    """

    settings: dict[str, Any] = field(default_factory=dict)
    setting_lines: dict[str, int] = field(default_factory=dict)
    defaults_lines: dict[str, int] = field(default_factory=dict)
    shots: list[RawShot] | None = None
    problems: list[Problem] = field(default_factory=list)
    fatal: bool = False


@functools.cache
def shot_validator() -> Draft202012Validator:
    """The validator of one shot, built once."""
    return validator_for("shot.schema.json")


@functools.cache
def top_validator() -> Draft202012Validator:
    """The validator of a YAML document's top level; shots are validated one by one."""
    schema = load_schema("manifest.schema.json")
    del schema["properties"]["shots"]["items"]
    return validator_for(schema)


@functools.cache
def defaults_validator() -> Draft202012Validator:
    """The validator of a ``defaults`` mapping (also used for command-line defaults)."""
    return validator_for({"$ref": _MANIFEST_SCHEMA["$id"] + "#/properties/defaults"})


def field_kind(name: str) -> str:
    """``boolean``, ``integer``, ``array`` or ``string``: how a text cell of this field is read."""
    kind = _SHOT_SCHEMA["properties"][name].get("type", "string")
    return kind if kind in ("boolean", "integer", "array") else "string"


_INT_RE = re.compile(r"[+-]?[0-9]+")


def _to_bool(text: str) -> bool:
    try:
        return BOOL_WORDS[text.strip().lower()]
    except KeyError:
        raise ValueError(f"{text!r} is not a yes/no value; use true/false, yes/no or 1/0") from None


def _to_int(text: str) -> int:
    if not _INT_RE.fullmatch(text.strip()):
        raise ValueError(f"{text!r} is not a whole number")
    return int(text)


def _to_list(text: str) -> list[str]:
    return [part.strip() for part in text.split(";") if part.strip()]


_CONVERTERS: dict[str, Callable[[str], Any]] = {
    "boolean": _to_bool,
    "integer": _to_int,
    "array": _to_list,
}


def converter_for(name: str) -> Callable[[str], Any] | None:
    """How a text value of this field is read, or None when the text is kept as written."""
    return _CONVERTERS.get(field_kind(name))


def convert_text(name: str, text: str) -> Any:
    """Read a text value (a CSV cell, a ``--default`` value) as the field's kind.

    Raises ``ValueError`` with a message for the user when the text does not fit.
    """
    convert = converter_for(name)
    return text if convert is None else convert(text)


def parse_duration(value: Any) -> int | float:
    """A duration as the API reads it: numbers as they are, numeric strings parsed.

    Whole values come back as ``int``. Raises ``ValueError`` for anything else.
    """
    if type(value) is int:
        return value
    if isinstance(value, str):
        if value.isascii() and value.isdigit():
            return int(value)
        if not _DURATION_RE.fullmatch(value):
            raise ValueError(f"{value!r} is not a number of seconds")
        number: float = float(value)
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        number = value
    else:
        raise ValueError(f"{value!r} is not a number of seconds")
    if not math.isfinite(number):
        raise ValueError(f"{value!r} is not a finite number of seconds")
    return whole_number(number)


def clamp_duration(duration: int | float) -> tuple[int | float, str | None]:
    """The duration the API renders and bills, and a warning when it differs or is fractional."""
    if duration < MIN_DURATION:
        return MIN_DURATION, f"{duration} s is below {MIN_DURATION} s; the API clamps it to 3 s"
    if duration > MAX_DURATION:
        return MAX_DURATION, f"{duration} s is above {MAX_DURATION} s; the API clamps it to 15 s"
    if isinstance(duration, float):
        whole = math.ceil(duration)
        return duration, f"fractional {duration} s is planned as {whole} s, the most it can cost"
    return duration, None


# A relative reference made only of path characters, with no dot segments, joins
# onto a base ending in "/" (and holding no query or fragment) by concatenation:
# exactly what urljoin returns, at a fraction of its cost. Likewise an absolute
# http(s) URL of plain host and path characters needs no parsing to be accepted.
_SEGMENT = r"(?!\.\.?(?:/|\Z))[A-Za-z0-9._~%-]+"
_PLAIN_RELATIVE = re.compile(f"{_SEGMENT}(?:/{_SEGMENT})*")
_PLAIN_BASE = re.compile(r"[^?#]*/")
_PLAIN_ABSOLUTE = re.compile(
    r"https?://[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*(?::[0-9]{1,5})?(?:/[A-Za-z0-9._~%/-]*)?"
)


class RelativeURLError(ValueError):
    """A relative image URL with no ``image_base_url`` to resolve it against."""


def normalise_base_url(value: str) -> str:
    """``image_base_url`` as a directory: absolute http(s), ending in ``/``.

    Raises ``ValueError`` with a message for the user.
    """
    url = resolve_url(value, None)
    parts = urlsplit(url)
    if not parts.path.endswith("/"):
        url = parts._replace(path=parts.path + "/").geturl()
    return url


def resolve_url(value: str, base: str | None) -> str:
    """The absolute http(s) URL a shot's image field stands for.

    Relative values resolve against ``base`` (see ``normalise_base_url``).
    Raises ``ValueError`` with a message for the user.
    """
    return url_resolver(base)(value)


def plain_relative_matcher(base: str | None) -> Callable[[str], object] | None:
    """A test for values that resolve against ``base`` by concatenation (None: no such base)."""
    if base is None or not _PLAIN_BASE.fullmatch(base):
        return None
    return _PLAIN_RELATIVE.fullmatch


def url_resolver(base: str | None) -> Callable[[str], str]:
    """``resolve_url`` with ``base`` fixed, for resolving many URLs against one base."""
    plain_base = base if base is not None and _PLAIN_BASE.fullmatch(base) else None
    plain_relative = _PLAIN_RELATIVE.fullmatch
    plain_absolute = _PLAIN_ABSOLUTE.fullmatch

    def resolve(value: str) -> str:
        if plain_absolute(value):
            return value
        if plain_base is not None and plain_relative(value):
            return plain_base + value
        return _resolve(value, base)

    return resolve


def _resolve(value: str, base: str | None) -> str:
    try:
        scheme = urlsplit(value).scheme
        if not scheme:
            if base is None:
                raise RelativeURLError(
                    f"{value!r} is a relative URL but no image_base_url is set; "
                    "set it in the manifest or pass --image-base-url"
                )
            value = urljoin(base, value)
        parts = urlsplit(value)
    except RelativeURLError:
        raise
    except ValueError as exc:
        raise ValueError(f"{value!r} is not a valid URL ({exc})") from None
    if parts.scheme not in ("http", "https"):
        raise ValueError(f"{value!r} must be an http or https URL, not {parts.scheme}:")
    if not parts.hostname:
        raise ValueError(f"{value!r} has no host name")
    return value
