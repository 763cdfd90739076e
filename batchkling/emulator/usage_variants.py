"""How a credits usage answer can go wrong: the variants ``--usage-defect`` serves.

Each is a shape seen or feared from a real provider (or a proxy in front of it),
applied to an otherwise correct page. A client that reads any of them must never
conclude from it that a create did not happen; the tests run lost creates
against each one.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

__all__ = ["USAGE_DEFECTS", "defective_page"]

USAGE_DEFECTS: Mapping[str, str] = {
    "empty": "every page is empty",
    "null-data": "the answer's data is null",
    "renamed-list": "the records are under another name (items)",
    "epoch-ms": "create_time is epoch milliseconds",
    "space-time": "create_time has a space instead of T",
    "negative": "every record's cost is negative",
    "ignore-start": "start_time is ignored",
    "cut-short": "the listing ends after its first page",
    "comma-credits": 'cost_credits is a string with a thousands comma, e.g. "1,000"',
    "bad-time": "create_time is not a time",
}


def _record(rec: dict[str, Any], defect: str, parse: Callable[[str], int]) -> dict[str, Any]:
    out = dict(rec)
    if defect == "epoch-ms":
        out["create_time"] = parse(rec["create_time"])
    elif defect == "space-time":
        out["create_time"] = str(rec["create_time"]).replace("T", " ")
    elif defect == "negative":
        out["cost_credits"] = -abs(rec["cost_credits"])
    elif defect == "comma-credits":
        out["cost_credits"] = f"{rec['cost_credits']:,}"
    elif defect == "bad-time":
        out["create_time"] = "yesterday"
    return out


def defective_page(
    records: Sequence[dict[str, Any]],
    cursor_field: str,
    next_cursor: str | None,
    defect: str | None,
    *,
    parse: Callable[[str], int],
    first_page: bool,
) -> Any:
    """The ``data`` of a usage answer, with ``defect`` applied (None: as documented)."""
    if defect == "null-data":
        return None
    if defect == "empty":
        return {"records": [], cursor_field: None}
    rows = [_record(r, defect, parse) for r in records] if defect else list(records)
    if defect == "cut-short" and first_page:
        next_cursor = None
    if defect == "renamed-list":
        return {"items": rows, cursor_field: next_cursor}
    return {"records": rows, cursor_field: next_cursor}
