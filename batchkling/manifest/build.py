"""One validation pass over a manifest read by either reader.

The order of checks for each shot: the JSON Schema (``schemas/shot.schema.json``)
on the shot merged over the defaults, then normalisation the way the API reads
the request (duration parsed and clamped, URLs resolved against
``image_base_url``), then the checks across shots (ids unique ignoring case).
Every finding is collected; nothing raises.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from itertools import chain
from pathlib import Path
from typing import Any

from batchkling.errors import Problem
from batchkling.manifest.chain import (
    ChainRef,
    chain_problems,
    may_chain,
    missing_upload,
    split_chain,
)
from batchkling.manifest.local import LocalFiles, is_local_name
from batchkling.manifest.problems import problems_from_errors
from batchkling.manifest.rules import (
    PROMPT_MAX_CHARS,
    PROMPT_WARN_CHARS,
    SHOT_FIELDS,
    RawDocument,
    RawShot,
    RelativeURLError,
    clamp_duration,
    defaults_validator,
    normalise_base_url,
    parse_duration,
    plain_relative_matcher,
    shot_validator,
    top_validator,
    url_resolver,
)
from batchkling.model import (
    DEFAULT_DURATION,
    DEFAULT_MODE,
    DEFAULT_MULTI_SHOT,
    DEFAULT_TAKES,
    MAX_DURATION,
    MIN_DURATION,
    Shot,
)
from batchkling.storage.location import parse_location, parse_public_url

__all__ = ["Builder"]

_URL_FIELDS = ("image", "tail_image_url")
_FAILED: Any = object()  # a field whose normalisation failed (and was reported)


class Builder:
    """The state of one validation pass: settings in force, findings, ids seen."""

    def __init__(self, file: str, doc: RawDocument, directory: Path | None = None) -> None:
        self.file = file
        self.doc = doc
        # Local image names resolve against the manifest's directory.
        self.local = LocalFiles(directory if directory is not None else Path.cwd())
        self.local_sha: dict[str, str] = {}  # file: URL -> sha256, of the local images seen
        self.upload_to: str | None = None
        self.upload_public_url: str | None = None
        self.problems: list[Problem] = list(doc.problems)
        self.warnings: list[Problem] = []
        self.name: str | None = None
        self.budget: int | None = None
        self.base: str | None = None
        self.base_invalid = False  # then relative URLs are not reported again, one by one
        self.resolve = url_resolver(None)
        self.plain_relative: Callable[[str], object] | None = None
        self.raw_defaults: dict[str, Any] = {}
        self.defaults: dict[str, Any] = {}
        self.ids: dict[str, tuple[str, int | None]] = {}
        self.chains: list[ChainRef] = []  # every chained frame read, in manifest order
        self.chain_now: dict[str, str] = {}  # field -> source, of the shot being built

    def setting_line(self, path: Any) -> int | None:
        """The line of a top-level setting (or of one default) named by a schema error's path."""
        lines = self.doc.setting_lines
        if len(path) > 1 and path[0] == "defaults":
            return self.doc.defaults_lines.get(path[1], lines.get("defaults"))
        return lines.get(path[0]) if path else None

    def settings(
        self,
        budget: int | None,
        image_base_url: str | None,
        defaults: Mapping[str, object] | None,
        *,
        upload_to: str | None = None,
        upload_public_url: str | None = None,
    ) -> None:
        """Check the top level, then settle name, budget, base URL, uploads and defaults."""
        settings = self.doc.settings
        bad_defaults = self.check_top_level()
        if isinstance(settings.get("name"), str):
            self.name = settings["name"]
        self.settle_budget(budget)
        self.settle_base(image_base_url)
        self.upload_to = self.upload_setting("upload_to", upload_to, "--upload-to")
        self.upload_public_url = self.upload_setting(
            "upload_public_url", upload_public_url, "--upload-public-url"
        )
        self.settle_defaults(defaults, bad_defaults)

    def upload_setting(self, name: str, flag_value: str | None, flag: str) -> str | None:
        """``upload_to`` or ``upload_public_url`` (the flag over the manifest), normalised."""
        value = self.doc.settings.get(name) if flag_value is None else flag_value
        if not isinstance(value, str):
            return None
        try:
            if name == "upload_to":
                return str(parse_location(value))
            return parse_public_url(value)
        except ValueError as exc:
            from_flag = f" (from {flag})" if flag_value is not None else ""
            line = None if from_flag else self.doc.setting_lines.get(name)
            self.problems.append(Problem(self.file, line, None, name, f"{exc}{from_flag}"))
            return None

    def require_upload_target(self, shots: list[Shot]) -> None:
        """A local image needs somewhere to go: one problem, at the first shot that has one."""
        if self.upload_to is None and self.chains:
            self.problems.append(missing_upload(self.chains[0], self.file))
        if self.upload_to is not None or not self.local_sha:
            return
        first = next((s for s in shots if s.image_sha256 or s.tail_sha256), None)
        count = len(self.local_sha)
        images = "1 local image" if count == 1 else f"{count:,} local images"
        self.problems.append(
            Problem(
                self.file,
                first.line if first is not None else None,
                first.id if first is not None else None,
                ("image" if first is None or first.image_sha256 else "tail_image_url"),
                f"names a file on this machine ({images} in all), but there is no upload_to "
                "to put it for the API to fetch; add upload_to: s3://BUCKET/PREFIX/ "
                "(or gs://, az://) to the manifest or pass --upload-to",
            )
        )

    def check_top_level(self) -> set[str]:
        """Report what the schema finds at the top level; return the defaults it found bad."""
        settings = self.doc.settings
        bad_defaults: set[str] = set()
        if settings:  # YAML; a CSV has no top level
            errors = list(top_validator().iter_errors(settings))
            for error in errors:
                if len(error.path) > 1 and error.path[0] == "defaults":
                    bad_defaults.add(str(error.path[1]))
            self.problems += problems_from_errors(
                errors, file=self.file, shot=None, line_for=self.setting_line
            )
        return bad_defaults

    def settle_budget(self, budget: int | None) -> None:
        """``--budget`` if given (at least 0), else the manifest's own."""
        own_budget = self.doc.settings.get("budget")
        if budget is not None:
            self.budget = budget
            if budget < 0:
                message = f"--budget must be at least 0, not {budget}"
                self.problems.append(Problem(self.file, None, None, "budget", message))
        elif isinstance(own_budget, int) and not isinstance(own_budget, bool):
            self.budget = own_budget

    def settle_base(self, image_base_url: str | None) -> None:
        """The base URL (``--image-base-url``, else the manifest's) and the resolvers on it."""
        base = self.doc.settings.get("image_base_url") if image_base_url is None else image_base_url
        if isinstance(base, str):
            try:
                self.base = normalise_base_url(base)
            except ValueError as exc:
                self.base_invalid = True
                from_flag = " (from --image-base-url)" if image_base_url is not None else ""
                line = None if from_flag else self.doc.setting_lines.get("image_base_url")
                self.problems.append(
                    Problem(self.file, line, None, "image_base_url", f"{exc}{from_flag}")
                )
        self.resolve = url_resolver(self.base)
        self.plain_relative = plain_relative_matcher(self.base)

    def settle_defaults(
        self, defaults: Mapping[str, object] | None, bad_defaults: set[str]
    ) -> None:
        """The manifest's defaults (those the schema passed), ``--default`` over them."""
        own = self.doc.settings.get("defaults")
        raw = {
            k: v for k, v in (own.items() if isinstance(own, dict) else ()) if k not in bad_defaults
        }
        if defaults:
            errors = list(defaults_validator().iter_errors(dict(defaults)))
            bad = {str(e.path[0]) for e in errors if e.path}
            self.problems += problems_from_errors(
                errors,
                file=self.file,
                shot=None,
                line_for=lambda p: None,
                prefix=("defaults",),
                suffix=" (from --default)",
            )
            raw.update((k, v) for k, v in defaults.items() if k not in bad)
        self.raw_defaults = {k: v for k, v in raw.items() if k in SHOT_FIELDS and k != "id"}
        lines = self.doc.defaults_lines
        self.defaults = self.normalise(self.raw_defaults, None, lines, None, "defaults.")

    def duration(self, value: Any, shot: str | None, line: int | None, field: str) -> Any:
        """The duration parsed and clamped (warning when it changes), or ``_FAILED``."""
        try:
            duration, warning = clamp_duration(parse_duration(value))
        except ValueError as exc:
            self.problems.append(Problem(self.file, line, shot, field, str(exc)))
            return _FAILED
        if warning is not None:
            self.warnings.append(Problem(self.file, line, shot, field, warning, warning=True))
        return duration

    def url(self, value: str, shot: str | None, line: int | None, field: str) -> Any:
        """The URL resolved against the base URL (a local file's: ``file:``), or ``_FAILED``."""
        if field in self.chain_now:
            return value  # a chained frame's placeholder, until the run extracts the frame
        if not isinstance(value, str) or value.startswith(("after:", "before:")):
            message = "a chained frame is written on the shot it belongs to, not as a default"
            self.problems.append(Problem(self.file, line, shot, field, message))
            return _FAILED
        try:
            # With an invalid base URL, relative names were meant as URLs: not as files.
            if not self.base_invalid and is_local_name(value, base=self.base):
                found = self.local.resolve(value)
                self.local_sha[found.url] = found.sha256
                return found.url
            return self.resolve(value)
        except RelativeURLError as exc:
            if not self.base_invalid:  # else the base URL's own problem says it all
                self.problems.append(Problem(self.file, line, shot, field, str(exc)))
        except ValueError as exc:
            self.problems.append(Problem(self.file, line, shot, field, str(exc)))
        return _FAILED

    def normalise(
        self,
        fields: dict[str, Any],
        shot: str | None,
        lines: Mapping[str, int],
        line: int | None,
        prefix: str = "",
    ) -> dict[str, Any]:
        """The fields that normalisation changes: duration parsed and clamped, URLs resolved.

        A field that cannot be normalised is left out and reported.
        """
        out: dict[str, Any] = {}
        if "duration" in fields:
            at = lines.get("duration", line)
            out["duration"] = self.duration(fields["duration"], shot, at, prefix + "duration")
        for name in _URL_FIELDS:
            if name in fields:
                out[name] = self.url(fields[name], shot, lines.get(name, line), prefix + name)
        prompt = fields.get("prompt")
        if isinstance(prompt, str):
            self.prompt(prompt, shot, lines.get("prompt", line), prefix + "prompt")
        return {k: v for k, v in out.items() if v is not _FAILED}

    def prompt(self, prompt: str, shot: str | None, line: int | None, field: str) -> bool:
        """Whether ``prompt`` can be sent: not blank, not too long (a warning when long)."""
        if not prompt or prompt.isspace():
            self.problems.append(Problem(self.file, line, shot, field, "is blank"))
            return False
        length = len(prompt)
        if length > PROMPT_MAX_CHARS:
            message = (
                f"is {length:,} characters long; the most batchkling sends is "
                f"{PROMPT_MAX_CHARS:,} (Kling itself reads {PROMPT_WARN_CHARS:,})"
            )
            self.problems.append(Problem(self.file, line, shot, field, message))
            return False
        if length > PROMPT_WARN_CHARS:
            message = (
                f"is {length:,} characters long; Kling reads at most {PROMPT_WARN_CHARS:,} "
                "and may cut or refuse the rest"
            )
            self.warnings.append(Problem(self.file, line, shot, field, message, warning=True))
        return True

    def shots(self, raws: list[RawShot]) -> list[Shot]:
        """Each raw shot validated and normalised (consuming ``raws``); failed ones left out."""
        validate = shot_validator().iter_errors
        raw_defaults = self.raw_defaults
        ids = self.ids
        out: list[Shot] = []
        for index, raw in enumerate(raws):
            # Drop each raw row once read: fewer live objects for the garbage
            # collector to walk, and a lower peak for large manifests.
            raws[index] = None  # type: ignore[call-overload]
            fields = raw.fields
            is_dict = type(fields) is dict
            if self.chain_now:
                self.chain_now = {}
            if is_dict and may_chain(fields):
                raw = self.chained(raw)
                fields = raw.fields
            # The schema judges the shot as the API will see it: over its defaults.
            merged = {**raw_defaults, **fields} if raw_defaults and is_dict else fields
            errors = validate(merged)
            first = next(errors, None)
            sid = fields.get("id") if is_dict else None
            if type(sid) is str:
                key = sid.lower()
                if key in ids:
                    self.duplicate(sid, raw)
                else:
                    ids[key] = (sid, raw.key_lines.get("id", raw.line))
            if first is None and not raw.bad:
                shot = self.shot(raw, merged, sid)  # type: ignore[arg-type]
                if shot is not None:
                    out.append(shot)
                continue
            label = sid if isinstance(sid, str) else f"#{index + 1}"
            failed = set(raw.bad)
            if first is not None:
                self.shot_problems(raw, label, chain([first], errors), failed)
            if is_dict:
                # Still report what normalisation finds in the fields the schema passed.
                rest = {k: v for k, v in fields.items() if k not in failed}
                self.normalise(rest, label, raw.key_lines, raw.line)
        if not raws and not self.doc.settings:
            self.problems.append(
                Problem(self.file, None, None, None, "holds no shots, only a header")
            )
        return out

    def chained(self, raw: RawShot) -> RawShot:
        """The raw shot with its chained frames as placeholders; the chains noted, or reported."""
        fields, chains, found = split_chain(raw.fields)
        sid = fields.get("id")
        label = sid if isinstance(sid, str) else None
        lines = raw.key_lines
        for name, message in found:
            line = lines.get(name, raw.line)
            self.problems.append(Problem(self.file, line, label, name, message))
        if chains and isinstance(sid, str):
            self.chain_now = chains
            self.chains += [
                ChainRef(sid, name, source, lines.get(name, raw.line))
                for name, source in chains.items()
            ]
        bad = raw.bad | {name for name, _ in found}
        return RawShot(fields, raw.line, raw.key_lines, frozenset(bad))

    def check_chains(self) -> None:
        """Chained frames name shots of the manifest, and no chain comes back to its start."""
        if self.chains:
            ids = {key: sid for key, (sid, _line) in self.ids.items()}
            self.problems += chain_problems(self.chains, ids, self.file)

    def shot_problems(self, raw: RawShot, label: str, errors: Any, failed: set[str]) -> None:
        """Report the schema's errors of one shot, each at the line of its field."""
        key_lines, line = raw.key_lines, raw.line
        self.problems += problems_from_errors(
            errors,
            file=self.file,
            shot=label,
            line_for=lambda path: key_lines.get(path[0], line) if path else line,
            skip=raw.bad,
            failed=failed,
        )

    def duplicate(self, sid: str, raw: RawShot) -> None:
        """Report an id already used by an earlier shot (ids are compared ignoring case)."""
        first, first_line = self.ids[sid.lower()]
        where = f" on line {first_line}" if first_line is not None else ""
        message = f"duplicate id: shot {first}{where} has the same id (ids ignore case)"
        line = raw.key_lines.get("id", raw.line)
        self.problems.append(Problem(self.file, line, sid, "id", message))

    def shot(self, raw: RawShot, merged: dict[str, Any], sid: str) -> Shot | None:
        """The normalised shot, or None when normalisation found a problem.

        The hot path of a large manifest: one shot that passed the schema.
        """
        fields, lines, line = raw.fields, raw.key_lines, raw.line
        defaults = self.defaults
        duration = fields.get("duration", _FAILED)
        if duration is _FAILED:
            duration = defaults.get("duration", DEFAULT_DURATION)
        else:
            if type(duration) is str and duration.isdigit() and duration.isascii():
                duration = int(duration)  # the common case of a CSV cell, parsed here
            if type(duration) is not int or not MIN_DURATION <= duration <= MAX_DURATION:
                duration = self.duration(duration, sid, lines.get("duration", line), "duration")
        # A field this shot leaves out comes from the normalised defaults; if a
        # default could not be normalised, that was reported once, at the default.
        plain = self.plain_relative
        image = fields.get("image")
        if image is None:
            image = defaults.get("image", _FAILED)
        elif plain is not None and plain(image):
            image = self.base + image
        else:
            image = self.url(image, sid, lines.get("image", line), "image")
        tail = fields.get("tail_image_url")
        if tail is None:
            tail = defaults.get("tail_image_url", _FAILED) if "tail_image_url" in merged else None
        elif plain is not None and plain(tail):
            tail = self.base + tail
        else:
            tail = self.url(tail, sid, lines.get("tail_image_url", line), "tail_image_url")
        prompt = merged["prompt"]
        if (prompt.isspace() or len(prompt) > PROMPT_WARN_CHARS) and not self.prompt(
            prompt, sid, lines.get("prompt", line), "prompt"
        ):
            return None
        if duration is _FAILED or image is _FAILED or tail is _FAILED:
            return None
        get = merged.get
        tags = get("tags")
        local = self.local_sha
        return Shot(
            id=sid,
            prompt=prompt,
            image=image,
            duration=duration,
            multi_shot=get("multi_shot", DEFAULT_MULTI_SHOT),
            model_mode=get("model_mode", DEFAULT_MODE),
            tail_image_url=tail,
            takes=int(get("takes", DEFAULT_TAKES)),
            tags=() if tags is None else tuple(tags),
            line=line,
            image_sha256=local.get(image) if local else None,
            tail_sha256=local.get(tail) if local and tail is not None else None,
        )
