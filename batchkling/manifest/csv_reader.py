"""Reading a CSV manifest: one shot per row, the physical line of every row kept.

Spreadsheet exports vary: a byte-order mark, ``;`` instead of ``,``, quoted cells
holding newlines, header names in any case with stray spaces, trailing empty
rows. All of these are accepted; anything that would silently drop data (an
unknown column, a cell beyond the header, an unterminated quote) is a problem.
"""

from __future__ import annotations

import csv
import difflib
import io
from collections.abc import Collection
from typing import TYPE_CHECKING, Any

from batchkling.errors import Problem
from batchkling.manifest.rules import (
    SHOT_FIELDS,
    RawDocument,
    RawShot,
    converter_for,
    shot_validator,
)

if TYPE_CHECKING:
    from _csv import Reader as _Reader

__all__ = ["read_csv"]

_REQUIRED: tuple[str, ...] = tuple(shot_validator().schema["required"])


def _delimiter(text: str) -> str:
    """``,`` or ``;``: whichever splits the header line into more known column names."""
    header = text.split("\n", 1)[0]
    best, best_score = ",", -1
    for delimiter in (",", ";"):
        names = next(csv.reader([header], delimiter=delimiter), [])
        score = sum(name.strip().lower() in SHOT_FIELDS for name in names)
        if score > best_score:
            best, best_score = delimiter, score
    return best


def read_csv(text: str, file: str, defaults: Collection[str] = ()) -> RawDocument:
    """Read a CSV manifest (already decoded, without BOM) into a ``RawDocument``.

    ``defaults`` names the fields that have a default, so a CSV may leave out
    their columns even when the schema requires them in every shot.
    """
    doc = RawDocument()
    problems = doc.problems
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=_delimiter(text), strict=True)
    try:
        header, header_line = _header_row(reader)
        if not header:
            problems.append(Problem(file, None, None, None, "the CSV file has no header row"))
            doc.fatal = True
            return doc
        names = _header(header, header_line, file, defaults, problems)
        if problems:
            doc.fatal = True
            return doc
        doc.shots = _shots(reader, names, file, problems)
    except csv.Error as exc:
        problems.append(Problem(file, reader.line_num, None, None, f"CSV syntax error: {exc}"))
        doc.fatal = True
    return doc


def _header_row(reader: _Reader) -> tuple[list[str], int]:
    """The first row with a cell that is not blank and the line it starts on; no row: ``[]``."""
    previous = 0  # line_num after the previous row: the row starts on the next line
    for row in reader:
        line = previous + 1
        previous = reader.line_num
        if any(cell.strip() for cell in row):
            return row, line
    return [], previous + 1


def _shots(reader: _Reader, names: list[str], file: str, problems: list[Problem]) -> list[RawShot]:
    """One raw shot per row after the header; rows of empty cells are left out.

    The hot loop of a large CSV manifest.
    """
    width = len(names)
    typed = [(n, c) for n in names if n and (c := converter_for(n)) is not None]
    unnamed = "" in names
    no_lines: dict[str, int] = {}
    no_bad: frozenset[str] = frozenset()
    shots: list[RawShot] = []
    append, strip = shots.append, str.strip
    # tuple.__new__ skips RawShot's Python-level __new__: a sixth of this loop's time.
    new_raw = tuple.__new__
    previous = reader.line_num
    for row in reader:
        line = previous + 1
        previous = reader.line_num
        fields: dict[str, Any] = dict(zip(names, map(strip, row), strict=False))
        if "" in fields.values():  # empty cells mean the default: leave them out
            fields = {name: cell for name, cell in fields.items() if cell}
        bad = no_bad
        for name, convert in typed:
            cell = fields.get(name)
            if cell is not None:
                try:
                    fields[name] = convert(cell)
                except ValueError as exc:
                    bad = bad | {name}
                    problems.append(Problem(file, line, fields.get("id"), name, str(exc)))
        if unnamed and "" in fields:
            del fields[""]
            problems.append(Problem(file, line, fields.get("id"), None, _UNNAMED))
        if len(row) > width and any(cell.strip() for cell in row[width:]):
            message = f"the row has {len(row)} cells but the header names {width} columns"
            problems.append(Problem(file, line, fields.get("id"), None, message))
        if fields or bad:
            append(new_raw(RawShot, (fields, line, no_lines, bad)))
    return shots


_UNNAMED = "a cell in a column without a header name; name the column or empty the cell"


def _header(
    header: list[str], line: int, file: str, defaults: Collection[str], problems: list[Problem]
) -> list[str]:
    """The field name of each column ('' for a column without a name)."""
    names: list[str] = []
    seen: set[str] = set()
    for raw in header:
        name = raw.strip().lower()
        if name and name not in SHOT_FIELDS:
            close = difflib.get_close_matches(name, SHOT_FIELDS, n=1)
            hint = f"did you mean {close[0]}?" if close else f"known: {', '.join(SHOT_FIELDS)}"
            message = f"unknown column {raw.strip()!r}; {hint}"
            problems.append(Problem(file, line, None, None, message))
        elif name in seen:
            problems.append(Problem(file, line, None, None, f"column {name!r} appears twice"))
        seen.add(name)
        names.append(name)
    for name in _REQUIRED:
        if name not in seen and name not in defaults:
            problems.append(Problem(file, line, None, None, f"missing required column {name!r}"))
    return names
