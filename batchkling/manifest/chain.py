"""Chained shots: a start frame taken from another shot's video, or an end frame. Pure.

``image: {after: s01}`` starts a shot on the last frame of s01's chosen take;
``tail_image_url: {before: s03}`` ends it on the first frame of s03's. In a CSV
cell the same is written ``after:s01`` and ``before:s03`` (accepted in YAML too).
Reading turns either form into the placeholder ``after:s01`` that the schema
sees as a string, and remembers the reference with its line; once every shot
is read, the references are checked across shots: each names a shot of the
manifest, and following them never comes back to where it started (a shot
cannot wait for its own video, however many shots lie between).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from batchkling.errors import Problem
from batchkling.model import chain_placeholder

__all__ = [
    "CHAIN_KINDS",
    "ChainRef",
    "chain_problems",
    "may_chain",
    "missing_upload",
    "split_chain",
]

# The field each kind of chain is written in, and which frame of the source it takes.
CHAIN_KINDS: dict[str, tuple[str, str]] = {
    "image": ("after", "last"),
    "tail_image_url": ("before", "first"),
}
_CELL = re.compile(r"(after|before):[ ]*([^ ].*?)[ ]*")


@dataclass(frozen=True)
class ChainRef:
    """One chained frame as written: which shot, which field, which source, where."""

    shot: str
    field: str
    source: str
    line: int | None

    @property
    def kind(self) -> str:
        """``after`` (start frame) or ``before`` (end frame)."""
        return CHAIN_KINDS[self.field][0]

    def where(self, file: str) -> str:
        """``board.yaml:7, shot s02, image``: the place, as a problem names it."""
        at = f"{file}:{self.line}" if self.line is not None else file
        return f"{at}, shot {self.shot}, {self.field}"


def may_chain(fields: Mapping[str, Any]) -> bool:
    """A cheap test: could this shot's image fields hold a chain (or a bad attempt at one)?"""
    for name in CHAIN_KINDS:
        value = fields.get(name)
        if value is None:
            continue
        if type(value) is not str or value[:6] in ("after:", "before"):
            return True
    return False


def split_chain(
    fields: dict[str, Any],
) -> tuple[dict[str, Any], dict[str, str], list[tuple[str, str]]]:
    """The fields with each chain as its placeholder, the chains (field -> source), problems.

    A problem is ``(field, message)``; its field is left out of the returned fields'
    chains, and keeps its placeholder so the schema does not report it again.
    """
    out = dict(fields)
    chains: dict[str, str] = {}
    problems: list[tuple[str, str]] = []
    for name, (kind, frame) in CHAIN_KINDS.items():
        value = fields.get(name)
        if value is None:
            continue
        found = _reference(value)
        if found is None:
            if isinstance(value, dict):
                problems.append((name, _shape(name, kind, frame)))
                out[name] = chain_placeholder(kind, "?")
            continue
        written_kind, source = found
        out[name] = chain_placeholder(kind, source)
        if written_kind != kind:
            problems.append((name, _shape(name, kind, frame)))
        else:
            chains[name] = source
    return out, chains, problems


def _reference(value: Any) -> tuple[str, str] | None:
    """``(kind, source)`` of a chain written as a mapping or a cell, else None."""
    if isinstance(value, dict):
        if len(value) == 1:
            ((kind, source),) = value.items()
            if kind in ("after", "before") and isinstance(source, str) and source.strip():
                return kind, source.strip()
        return None
    if isinstance(value, str):
        match = _CELL.fullmatch(value)
        if match:
            return match.group(1), match.group(2)
    return None


def _shape(name: str, kind: str, frame: str) -> str:
    return (
        f"can only chain {kind} another shot, written {{{kind}: ID}} (in a CSV cell "
        f"{kind}:ID): {name} takes the {frame} frame of that shot's chosen take"
    )


def missing_upload(ref: ChainRef, file: str) -> Problem:
    """A chain with nowhere to upload its frame: the problem, at the first chained field."""
    return Problem(
        file,
        ref.line,
        ref.shot,
        ref.field,
        f"chains {ref.kind} {ref.source}: its frame is taken from that shot's video on this "
        "machine and uploaded for the API to fetch, but there is no upload_to to put it; add "
        "upload_to: s3://BUCKET/PREFIX/ (or gs://, az://) to the manifest or pass --upload-to",
    )


def chain_problems(refs: list[ChainRef], ids: Mapping[str, str], file: str) -> list[Problem]:
    """References to shots that do not exist, and cycles, each naming every line involved.

    ``ids`` maps each shot id of the manifest, lower-cased, to the id as written.
    """
    problems: list[Problem] = []
    known: list[ChainRef] = []
    for ref in refs:
        actual = ids.get(ref.source.lower())
        if actual == ref.source:
            known.append(ref)
            continue
        hint = f"did you mean {actual}? ids are written the same everywhere" if actual else ""
        message = f"chains {ref.kind} {ref.source!r}, but no shot of the manifest has that id" + (
            f"; {hint}" if hint else "; name a shot of this manifest"
        )
        problems.append(Problem(file, ref.line, ref.shot, ref.field, message))
    problems += _cycles(known, file)
    return problems


def _cycles(refs: list[ChainRef], file: str) -> list[Problem]:
    """One problem per cycle, at its first reference in manifest order, naming all of them."""
    edges: dict[str, list[ChainRef]] = {}
    for ref in refs:
        edges.setdefault(ref.shot, []).append(ref)
    done: set[str] = set()
    reported: set[frozenset[ChainRef]] = set()
    problems: list[Problem] = []
    for start in edges:
        path: list[ChainRef] = []
        on_path: dict[str, int] = {}
        _walk(start, edges, path, on_path, done, reported, problems, file)
    return problems


def _walk(
    shot: str,
    edges: dict[str, list[ChainRef]],
    path: list[ChainRef],
    on_path: dict[str, int],
    done: set[str],
    reported: set[frozenset[ChainRef]],
    problems: list[Problem],
    file: str,
) -> None:
    """Depth first from ``shot``; a reference back to a shot on the path closes a cycle."""
    if shot in done:
        return
    on_path[shot] = len(path)
    for ref in edges.get(shot, ()):
        if ref.source in on_path:
            cycle = [*path[on_path[ref.source] :], ref]
            if frozenset(cycle) not in reported:
                reported.add(frozenset(cycle))
                problems.append(_cycle_problem(cycle, file))
            continue
        path.append(ref)
        _walk(ref.source, edges, path, on_path, done, reported, problems, file)
        path.pop()
    del on_path[shot]
    done.add(shot)


def _cycle_problem(cycle: list[ChainRef], file: str) -> Problem:
    first = min(cycle, key=lambda r: (r.line is None, r.line or 0))
    links = "; ".join(f"{r.shot} {r.kind} {r.source} ({r.where(file)})" for r in cycle)
    if len(cycle) == 1:
        message = f"chains {first.kind} itself ({links}); a shot cannot wait for its own video"
    else:
        message = (
            f"chains {first.kind} {first.source}, and the chain comes back to {first.shot}: "
            f"{links}; a shot cannot wait for its own video, so break the cycle"
        )
    return Problem(file, first.line, first.shot, first.field, message)
