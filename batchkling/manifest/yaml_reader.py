"""Reading a YAML manifest with the line of every key, straight from libyaml's events.

``yaml.load`` composes a node tree for the whole file and then constructs objects
from it; for a large manifest both are alive at once and most of the time goes
into allocating nodes. Here the C parser's events are consumed as they come and
only plain values are built, so the line of each key is free, duplicate keys are
seen where they are written, and each shot is handed over as soon as it ends.

Values mean what they mean to PyYAML's safe loader: plain scalars go through
its resolver (YAML 1.1: ``yes`` is true, ``007`` is 7) and its scalar
constructors; anchors, aliases and ``<<`` merge keys work. Any explicit tag that
the safe loader would not construct plainly (``!!python/...``, ``!custom``) is a
problem, never an object.

Aliases are bounded: a document may stand for at most ``MAX_ALIAS_NODES`` values
through its aliases (each alias counts every value of what it names, expanded),
and nest at most ``MAX_DEPTH`` collections deep, aliases included. A "billion
laughs" file is refused at the line where it passes either bound, long before
it costs any time or memory.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

import yaml
from yaml.events import (
    AliasEvent,
    DocumentStartEvent,
    MappingEndEvent,
    MappingStartEvent,
    ScalarEvent,
    SequenceEndEvent,
    SequenceStartEvent,
    StreamEndEvent,
)
from yaml.nodes import ScalarNode

from batchkling.errors import Problem
from batchkling.manifest.rules import RawDocument, RawShot

__all__ = ["MAX_ALIAS_NODES", "MAX_DEPTH", "read_yaml"]

MAX_ALIAS_NODES = 100_000
MAX_DEPTH = 64

_Loader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

_Y = "tag:yaml.org,2002:"
_STR = _Y + "str"
_MAP_TAGS = (None, "!", _Y + "map")
_SEQ_TAGS = (None, "!", _Y + "seq")
_SCALAR_TAGS = frozenset(_Y + t for t in ("null", "bool", "int", "float", "timestamp", "binary"))
# First characters for which the resolver may find a tag other than str.
_RESOLVED_FIRSTS = frozenset(k for k in yaml.SafeLoader.yaml_implicit_resolvers if k)
# Events are typed Any: libyaml's events always carry marks and the attributes
# of their kind, which the stubs' Optional unions cannot express.
Event = Any


def _short_tag(tag: str) -> str:
    return "!!" + tag[len(_Y) :] if tag.startswith(_Y) else tag


class _TooLarge(Exception):
    """The document passed a bound on aliases or nesting at ``event``."""

    def __init__(self, event: Event, message: str) -> None:
        super().__init__(message)
        self.line = event.start_mark.line + 1
        self.message = message


class _Reader:
    """One pass over the events of one document; collects problems instead of raising."""

    def __init__(self, data: bytes, file: str) -> None:
        self.loader = _Loader(data)
        self.next: Callable[[], Event] = self.loader.get_event
        self.file = file
        self.problems: list[Problem] = []
        self.anchors: dict[str, tuple[Any, dict[str, int]]] = {}
        self.defaults_lines: dict[str, int] = {}
        # Values read, with those aliases stand for; the part aliases stand for;
        # per anchor, how many values and how many levels of nesting it names.
        self.nodes = 0
        self.expanded = 0
        self.sizes: dict[str, tuple[int, int]] = {}
        self.depth = 0
        self.deepest = 0

    def problem(self, event: Event, message: str, field: str | None = None) -> None:
        self.problems.append(Problem(self.file, event.start_mark.line + 1, None, field, message))

    def value(self, event: Event) -> Any:
        kind = type(event)
        if kind is ScalarEvent:
            return self.scalar(event)
        if kind is MappingStartEvent:
            return self.mapping(event)[0]
        if kind is SequenceStartEvent:
            return self.sequence(event)
        if kind is AliasEvent:
            return self.alias(event)[0]
        raise AssertionError(f"unexpected YAML event {event}")  # libyaml only sends nodes here

    def enter(self, start: Event) -> tuple[int, int]:
        """Count a collection that starts; what ``leave`` needs to size it."""
        self.nodes += 1
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise _TooLarge(start, f"the YAML nests deeper than {MAX_DEPTH} levels")
        outer = self.deepest
        self.deepest = self.depth
        return self.nodes - 1, outer

    def leave(self, start: Event, entered: tuple[int, int]) -> None:
        """A collection ended: remember its size and height under its anchor, if any."""
        first, outer = entered
        if start.anchor is not None:
            self.sizes[start.anchor] = (self.nodes - first, self.deepest - self.depth + 1)
        self.depth -= 1
        self.deepest = max(outer, self.deepest)

    def scalar(self, event: Event) -> Any:
        self.nodes += 1
        tag = event.tag
        value: Any = event.value
        if tag is None or tag == "!":
            # Plain scalars are resolved (true, 12, null...); quoted ones are strings.
            if event.implicit[0] and (not value or value[0] in _RESOLVED_FIRSTS):
                tag = self.loader.resolve(ScalarNode, value, event.implicit)  # type: ignore[no-untyped-call]
            else:
                tag = _STR
        if tag != _STR:
            if tag in _SCALAR_TAGS:
                node = ScalarNode(tag, value, event.start_mark, event.end_mark, event.style)
                try:
                    value = self.loader.yaml_constructors[tag](self.loader, node)
                except (ValueError, TypeError, yaml.YAMLError):
                    self.problem(event, f"{value!r} cannot be read as {_short_tag(tag)}")
            else:
                self.problem(
                    event,
                    f"the YAML tag {_short_tag(tag)} is not allowed: manifests hold plain "
                    "values only (they are loaded with a safe loader)",
                )
        if event.anchor is not None:
            self.anchors[event.anchor] = (value, {})
        return value

    def alias(self, event: Event) -> tuple[Any, dict[str, int]]:
        anchor: str = event.anchor
        try:
            found = self.anchors[anchor]
        except KeyError:
            self.problem(event, f"alias *{anchor} refers to no anchor &{anchor} defined before it")
            return None, {}
        size, height = self.sizes.get(anchor, (1, 0))
        self.nodes += size
        self.expanded += size
        if self.expanded > MAX_ALIAS_NODES:
            raise _TooLarge(
                event,
                f"the YAML's aliases stand for more than {MAX_ALIAS_NODES:,} values; "
                "a manifest does not need that many (an alias bomb?)",
            )
        if self.depth + height > MAX_DEPTH:
            raise _TooLarge(event, f"the YAML nests deeper than {MAX_DEPTH} levels")
        self.deepest = max(self.deepest, self.depth + height)
        return found

    def check_tag(self, event: Event, allowed: tuple[str | None, ...]) -> None:
        tag = event.tag
        if tag not in allowed:
            self.problem(
                event,
                f"the YAML tag {_short_tag(tag)} is not allowed: manifests hold plain values "
                "only (they are loaded with a safe loader)",
            )

    def sequence(self, start: Event) -> list[Any]:
        if start.tag is not None:
            self.check_tag(start, _SEQ_TAGS)
        entered = self.enter(start)
        out = []
        next_event = self.next
        value = self.value
        while True:
            event = next_event()
            if type(event) is SequenceEndEvent:
                break
            out.append(value(event))
        self.leave(start, entered)
        if start.anchor is not None:
            self.anchors[start.anchor] = (out, {})
        return out

    def mapping(
        self, start: Event, hooks: dict[str, Callable[[Event], Any]] | None = None
    ) -> tuple[dict[Any, Any], dict[str, int], frozenset[str]]:
        """The mapping, the line of each key, and the keys whose values could not be read.

        ``hooks`` read the values of some keys their own way (the root's shots).
        """
        if start.tag is not None:
            self.check_tag(start, _MAP_TAGS)
        entered = self.enter(start)
        out: dict[Any, Any] = {}
        lines: dict[Any, int] = {}
        bad: set[str] = set()
        merges: list[tuple[Any, int]] = []
        next_event = self.next
        problems = self.problems
        while True:
            key_event = next_event()
            if type(key_event) is MappingEndEvent:
                break
            line = key_event.start_mark.line + 1
            if (
                type(key_event) is ScalarEvent
                and key_event.value == "<<"
                and (key_event.implicit[0] or key_event.tag == _Y + "merge")
            ):
                merges.append((self.value(next_event()), line))
                continue
            key = self.value(key_event)
            before = len(problems)
            value_event = next_event()
            if hooks is not None and key in hooks:
                value = hooks[key](value_event)
            else:
                value = self.value(value_event)
            if len(problems) != before:
                self.name_field(before, str(key))
            if isinstance(key, (dict, list)):
                self.problem(key_event, "a key must be a plain value, not a mapping or a list")
            elif key in out:
                self.problem(
                    key_event, f"duplicate key: already set on line {lines[key]}", str(key)
                )
            else:
                out[key] = value
                lines[key] = line
                if len(problems) != before:
                    bad.add(key)
        for merged, line in merges:
            self.merge(out, lines, merged, line, start)
        self.leave(start, entered)
        if start.anchor is not None:
            self.anchors[start.anchor] = (out, lines)
        return out, lines, frozenset(bad)

    def name_field(self, since: int, name: str, *, shot: bool = False) -> None:
        """Give the problems found since index ``since`` the field (or shot) they lie in."""
        problems = self.problems
        for i in range(since, len(problems)):
            p = problems[i]
            if shot and p.shot is None:
                problems[i] = replace(p, shot=name)
            elif not shot and p.field is None:
                problems[i] = replace(p, field=name)

    def merge(
        self, out: dict[Any, Any], lines: dict[Any, int], merged: Any, line: int, at: Event
    ) -> None:
        # Explicit keys win over merged ones, and earlier merged mappings over later ones.
        for source in merged if isinstance(merged, list) else [merged]:
            if not isinstance(source, dict):
                self.problem(at, "<< must merge a mapping or a list of mappings")
                return
            for key, value in source.items():
                if key not in out:
                    out[key] = value
                    lines[key] = line

    def shots(self, start: Event) -> Any:
        """The ``shots`` list as ``RawShot`` values, each with its key lines."""
        if type(start) is not SequenceStartEvent:
            value = self.value(start)
            if isinstance(value, list):  # an alias to a list: no lines of its own
                line = start.start_mark.line + 1
                return [RawShot(item, line) for item in value]
            return value
        self.check_tag(start, _SEQ_TAGS)
        out: list[RawShot] = []
        next_event = self.next
        while True:
            event = next_event()
            kind = type(event)
            if kind is SequenceEndEvent:
                return out
            line = event.start_mark.line + 1
            if kind is MappingStartEvent:
                before = len(self.problems)
                fields, lines, bad = self.mapping(event)
                if len(self.problems) != before:
                    sid = fields.get("id")
                    label = sid if isinstance(sid, str) else f"#{len(out) + 1}"
                    self.name_field(before, label, shot=True)
                out.append(RawShot(fields, line, lines, bad))
            else:
                before = len(self.problems)
                value = self.value(event)
                bad = frozenset(("",)) if len(self.problems) != before else frozenset()
                out.append(RawShot(value, line, {}, bad))

    def defaults(self, start: Event) -> Any:
        """The ``defaults`` mapping, keeping the line of each of its keys."""
        if type(start) is MappingStartEvent:
            value, self.defaults_lines, _ = self.mapping(start)
            return value
        if type(start) is AliasEvent:
            value, self.defaults_lines = self.alias(start)
            return value
        return self.value(start)

    def document(self) -> RawDocument:
        doc = RawDocument()
        next_event = self.next
        next_event()  # StreamStartEvent
        event = next_event()
        if type(event) is StreamEndEvent:
            doc.problems.append(
                Problem(self.file, None, None, None, "holds no YAML document, only comments")
            )
            doc.fatal = True
            return doc
        root = next_event()  # the event after DocumentStartEvent
        if type(root) is MappingStartEvent:
            hooks: dict[str, Callable[[Event], Any]] = {
                "shots": self.shots,
                "defaults": self.defaults,
            }
            settings, lines, _ = self.mapping(root, hooks)
            doc.settings = settings
            doc.setting_lines = lines
            doc.defaults_lines = self.defaults_lines
            shots = settings.get("shots")
            if isinstance(shots, list):
                doc.shots = shots
        else:
            value = self.value(root)
            kind = "empty" if value is None else type(value).__name__
            self.problem(
                root,
                f"the manifest must be a mapping with version and shots, not {kind}",
            )
            doc.fatal = True
        next_event()  # DocumentEndEvent
        event = next_event()
        if type(event) is DocumentStartEvent:
            self.problem(event, "holds more than one YAML document; a manifest is one document")
            doc.fatal = True
        doc.problems = self.problems
        return doc


def read_yaml(data: bytes, file: str) -> RawDocument:
    """Read a YAML manifest's bytes into a ``RawDocument``; never raises for bad input."""
    reader = _Reader(data, file)
    try:
        return reader.document()
    except _TooLarge as exc:
        # The bound is the one problem: what was read on the way there says nothing more.
        return RawDocument(problems=[Problem(file, exc.line, None, None, exc.message)], fatal=True)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        what = " ".join(filter(None, [exc.context, exc.problem]))
        problem = Problem(
            file, mark.line + 1 if mark else None, None, None, f"YAML syntax error: {what}"
        )
    except yaml.reader.ReaderError as exc:
        line = data.count(b"\n", 0, exc.position) + 1
        problem = Problem(file, line, None, None, f"YAML syntax error: {exc.reason}")
    except yaml.YAMLError as exc:
        problem = Problem(file, None, None, None, f"YAML syntax error: {exc}")
    finally:
        reader.loader.dispose()
    return RawDocument(problems=[*reader.problems, problem], fatal=True)
