"""Manifests: YAML and CSV reading, schema checks, normalisation, expansion into jobs."""

from __future__ import annotations

import gc
import hashlib
import math
import textwrap
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import pytest
from hypothesis import given
from hypothesis import strategies as st

from batchkling._util import collector_paused
from batchkling.errors import ManifestError
from batchkling.manifest.load import build_manifest, load_manifest
from batchkling.manifest.rules import (
    clamp_duration,
    convert_text,
    parse_duration,
    plain_relative_matcher,
    resolve_url,
    shot_validator,
)
from batchkling.model import MAX_TAKES, Manifest

__all__: list[str] = []

ROOT = Path(__file__).resolve().parents[2]
BASE = "https://cdn.example.com/ep01/"


def yaml_manifest(body: str, **options: object) -> Manifest:
    data = textwrap.dedent(body).lstrip("\n").encode()
    return build_manifest(data, file="m.yaml", **options)  # type: ignore[arg-type]


def csv_manifest(text: str | bytes, **options: object) -> Manifest:
    data = text.encode() if isinstance(text, str) else text
    return build_manifest(data, file="m.csv", csv=True, **options)  # type: ignore[arg-type]


def problems(body: str | bytes, *, csv: bool = False, **options: object) -> list[str]:
    """The lines `validate` prints for an invalid manifest."""
    with pytest.raises(ManifestError) as info:
        if csv:
            csv_manifest(body, **options)
        elif isinstance(body, bytes):
            build_manifest(body, file="m.yaml", **options)  # type: ignore[arg-type]
        else:
            yaml_manifest(body, **options)
    return [str(p) for p in info.value.problems]


def _shot_body(extra: str) -> str:
    """A one-shot manifest whose sixth line is ``extra``."""
    head = "version: 1\nshots:\n  - id: a\n    prompt: p\n    image: http://x.example.com/a\n"
    return f"{head}    {extra}\n"


ONE_SHOT = """
    version: 1
    shots:
      - id: s01
        prompt: The character turns around
        image: https://cdn.example.com/s01.png
"""


# ---- YAML: the happy path ----------------------------------------------------------------------


def test_minimal_yaml_gets_api_defaults() -> None:
    """A shot with only the required fields gets the API's defaults and its source line."""
    m = yaml_manifest(ONE_SHOT)
    (shot,) = m.shots
    assert (shot.id, shot.image, shot.duration, shot.multi_shot) == (
        "s01",
        "https://cdn.example.com/s01.png",
        5,
        True,
    )
    assert (shot.model_mode, shot.takes, shot.tags, shot.tail_image_url) == (
        "standard",
        1,
        (),
        None,
    )
    assert shot.line == 3
    assert m.warnings == ()
    assert [j.key for j in m.jobs] == ["s01"]


def test_defaults_base_url_takes_and_tags() -> None:
    """Defaults fill what a shot leaves out, relative names resolve, takes expand to <id>#<k>."""
    m = yaml_manifest(
        f"""
        version: 1
        name: ep01
        budget: 20000
        image_base_url: {BASE}
        defaults:
          model_mode: pro
          duration: "10"
          multi_shot: false
        shots:
          - id: s01
            prompt: p
            image: s01.png
            tail_image_url: s01-end.png
            takes: 3
            tags: [hero, night]
          - id: s02
            prompt: q
            image: https://other.example.com/x.png
            model_mode: standard
            duration: 4
        """
    )
    s01, s02 = m.shots
    assert s01.image == BASE + "s01.png" and s01.tail_image_url == BASE + "s01-end.png"
    assert (s01.model_mode, s01.duration, s01.multi_shot, s01.tags) == (
        "pro",
        10,
        False,
        ("hero", "night"),
    )
    assert (s02.model_mode, s02.duration, s02.image) == (
        "standard",
        4,
        "https://other.example.com/x.png",
    )
    assert [j.key for j in m.jobs] == ["s01#1", "s01#2", "s01#3", "s02"]
    assert [j.take for j in m.jobs] == [1, 2, 3, 1]
    assert (m.name, m.budget, m.image_base_url) == ("ep01", 20000, BASE)


def test_overrides_beat_the_file() -> None:
    """budget, image_base_url and defaults given by the caller take priority over the file's."""
    m = yaml_manifest(
        """
        version: 1
        budget: 100
        image_base_url: https://a.example.com/x/
        defaults: {model_mode: standard, duration: 5}
        shots:
          - {id: s01, prompt: p, image: s01.png}
        """,
        budget=9000,
        image_base_url="http://127.0.0.1:8000/frames",
        defaults={"model_mode": "pro"},
    )
    (shot,) = m.shots
    assert m.budget == 9000
    assert shot.image == "http://127.0.0.1:8000/frames/s01.png"  # a base is a directory
    assert (shot.model_mode, shot.duration) == ("pro", 5)


def test_anchors_aliases_and_merge_keys() -> None:
    """Safe YAML features keep working: anchors, aliases and << merge keys."""
    m = yaml_manifest(
        """
        version: 1
        shots:
          - &first
            id: s01
            prompt: &p The character turns around
            image: https://cdn.example.com/s01.png
            tags: &t [a, b]
          - <<: *first
            id: s02
            prompt: *p
            tags: *t
            duration: 10
        """
    )
    s01, s02 = m.shots
    assert (s02.id, s02.prompt, s02.image, s02.tags, s02.duration) == (
        "s02",
        s01.prompt,
        s01.image,
        ("a", "b"),
        10,
    )


def test_load_manifest_reads_file_path_and_hash(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """load_manifest gives the absolute path and the sha256 of the file's bytes."""
    path = tmp_path / "m.yaml"
    path.write_text(textwrap.dedent(ONE_SHOT))
    monkeypatch.chdir(tmp_path)
    m = load_manifest("m.yaml")
    assert m.path == str(path)
    assert m.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()


def test_yaml_with_bom_is_read() -> None:
    """A UTF-8 byte-order mark at the start of a YAML file is accepted."""
    m = build_manifest(b"\xef\xbb\xbf" + textwrap.dedent(ONE_SHOT).encode(), file="m.yaml")
    assert m.shots[0].id == "s01"


# ---- YAML: bad input, each problem with its place ---------------------------------------------


def test_missing_file_and_directory(tmp_path: Path) -> None:
    """A missing file and a directory each give one clear line, not a traceback."""
    with pytest.raises(ManifestError) as info:
        load_manifest(tmp_path / "nope.yaml")
    assert [str(p) for p in info.value.problems] == [f"{tmp_path / 'nope.yaml'}: no such file"]
    with pytest.raises(ManifestError) as info:
        load_manifest(tmp_path)
    assert str(info.value.problems[0]) == f"{tmp_path}: is a directory, not a manifest file"


def test_empty_and_blank_files() -> None:
    """An empty file, a blank file and a file of comments are each one problem."""
    assert problems(b"") == ["m.yaml: the file is empty"]
    assert problems(b"  \n\n") == ["m.yaml: the file holds only blank space"]
    assert problems(b"# nothing\n") == ["m.yaml: holds no YAML document, only comments"]


def test_invalid_utf8_names_the_line() -> None:
    """Bytes that are not UTF-8 are reported on their line."""
    assert problems(b"version: 1\nshots:\n  - id: \xff\n") == [
        "m.yaml:3: is not UTF-8 text (byte 0xff cannot be read); save it as UTF-8"
    ]


def test_yaml_syntax_error_names_the_line() -> None:
    """A YAML syntax error is one line with the place libyaml found it."""
    (line,) = problems("version: 1\nshots:\n  - id: a\n    prompt: Close-up: hands\n")
    assert line.startswith("m.yaml:4: YAML syntax error: ")
    assert "mapping values are not allowed" in line


def test_python_tags_are_refused_never_constructed() -> None:
    """A !!python/... tag is a problem on its line; nothing is called."""
    found = problems(
        """
        version: 1
        shots:
          - id: s01
            prompt: !!python/object/apply:os.system ["exit 1"]
            image: !!python/name:os.system
        """
    )
    assert found == [
        "m.yaml:4: shot s01: prompt: the YAML tag !!python/object/apply:os.system is not allowed: "
        "manifests hold plain values only (they are loaded with a safe loader)",
        "m.yaml:5: shot s01: image: the YAML tag !!python/name:os.system is not allowed: "
        "manifests hold plain values only (they are loaded with a safe loader)",
    ]


def test_duplicate_keys_are_errors() -> None:
    """A key written twice in one mapping names both lines, instead of keeping the last."""
    found = problems(
        """
        version: 1
        shots:
          - id: s01
            prompt: p
            image: https://x.example.com/a.png
            duration: 5
            duration: 10
        """
    )
    assert found == ["m.yaml:7: shot s01: duration: duplicate key: already set on line 6"]


def test_unknown_keys_everywhere() -> None:
    """A typo at the top, in defaults or in a shot is an error with a suggestion."""
    found = problems(
        """
        version: 1
        budgt: 5
        defaults:
          modelmode: pro
          id: x
        shots:
          - id: s01
            prompt: p
            image: https://x.example.com/a.png
            durration: 10
        """
    )
    assert found == [
        "m.yaml:2: budgt: unknown field; did you mean budget?",
        "m.yaml:4: defaults.modelmode: unknown field; did you mean model_mode?",
        "m.yaml:5: defaults.id: a default id is not allowed: every shot needs its own id",
        "m.yaml:10: shot s01: durration: unknown field; did you mean duration?",
    ]


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("- a\n- b\n", "m.yaml:1: the manifest must be a mapping with version and shots, not list"),
        ("just text\n", "m.yaml:1: the manifest must be a mapping with version and shots, not str"),
        ("version: 1\nshots: []\n", "m.yaml:2: shots: must hold at least one shot"),
        ("version: 1\n", "m.yaml: shots: required field is missing"),
        ("version: 2\nshots: [{id: a, prompt: p, image: http://x.example.com/a}]\n",
         "m.yaml:1: version: must be 1, not 2"),
        ("version: 1\nshots: {id: a}\n", "m.yaml:2: shots: must be a list, not a mapping"),
        ("version: 1\nshots: [{id: a, prompt: p, image: http://x.example.com/a}]\n---\nx: 1\n",
         "m.yaml:3: holds more than one YAML document; a manifest is one document"),
        ("version: 1\nshots: [*nowhere]\n",
         "m.yaml:2: shots: alias *nowhere refers to no anchor &nowhere defined before it"),
    ],
)  # fmt: skip
def test_document_shape_problems(body: str, expected: str) -> None:
    """A document that is not a mapping of version and a non-empty shot list is refused."""
    assert expected in problems(body)


def test_missing_required_fields_name_the_shot_line() -> None:
    """A shot without prompt or image gets one line per missing field, at the shot's line."""
    found = problems("version: 1\nshots:\n  - id: s01\n    duration: 5\n")
    assert found == [
        "m.yaml:3: shot s01: prompt: required field is missing",
        "m.yaml:3: shot s01: image: required field is missing",
    ]


@pytest.mark.parametrize(
    ("shot_id", "message"),
    [
        ('"-s01"', "'-s01' is not a valid id"),
        ('"a b"', "'a b' is not a valid id"),
        ('"' + "x" * 65 + '"', "is not a valid id"),
        ("007", "must be a string, not a whole number (quote the value in YAML"),
    ],
)
def test_bad_id_pattern(shot_id: str, message: str) -> None:
    """Ids must match ^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$; YAML numbers must be quoted."""
    (line,) = problems(
        f"version: 1\nshots:\n  - id: {shot_id}\n    prompt: p\n    image: http://x.example.com/a\n"
    )
    assert line.startswith("m.yaml:3: shot ") and ": id: " in line
    assert message in line


def test_duplicate_ids_ignoring_case() -> None:
    """Two ids equal but for case are one problem at the second, naming the first."""
    found = problems(
        """
        version: 1
        shots:
          - {id: Intro, prompt: p, image: http://x.example.com/a}
          - {id: other, prompt: p, image: http://x.example.com/a}
          - {id: INTRO, prompt: p, image: http://x.example.com/a}
        """
    )
    assert found == [
        "m.yaml:5: shot INTRO: id: duplicate id: shot Intro on line 3 has the same id "
        "(ids ignore case)"
    ]


@pytest.mark.parametrize(
    ("takes", "message"),
    [
        ("0", "takes: must be at least 1, not 0"),
        (str(MAX_TAKES + 1), f"takes: must be at most 20, not {MAX_TAKES + 1}"),
        ("2.5", "takes: must be a whole number, not a number"),
        ("true", "takes: must be a whole number, not a boolean"),
    ],
)
def test_takes_out_of_range(takes: str, message: str) -> None:
    """takes is a whole number from 1 to 20."""
    assert problems(_shot_body(f"takes: {takes}")) == [f"m.yaml:6: shot a: {message}"]


@pytest.mark.parametrize(
    ("image", "base", "message"),
    [
        ("s01.png", None, "'s01.png' is a local file that does not exist"),
        ("ftp://x.example.com/a.png", None, "must be an http or https URL, not ftp:"),
        ("data:image/png;base64,AAAA", BASE, "must be an http or https URL, not data:"),
        ("http:///a.png", None, "'http:///a.png' has no host name"),
        ("http://[::1/a.png", None, "is not a valid URL"),
    ],
)
def test_bad_image_urls(image: str, base: str | None, message: str) -> None:
    """Images must be absolute http(s) URLs with a host once resolved."""
    found = problems(
        f"version: 1\nshots:\n  - id: a\n    prompt: p\n    image: '{image}'\n",
        image_base_url=base,
    )
    assert len(found) == 1 and found[0].startswith("m.yaml:5: shot a: image: ")
    assert message in found[0]


def test_bad_base_url_is_reported_once() -> None:
    """An invalid image_base_url is one problem, not one more per relative image."""
    found = problems(
        """
        version: 1
        image_base_url: cdn.example.com/ep01
        shots:
          - {id: a, prompt: p, image: a.png}
          - {id: b, prompt: p, image: b.png}
        """
    )
    assert found == [
        "m.yaml:2: image_base_url: 'cdn.example.com/ep01' is a relative URL but no "
        "image_base_url is set; set it in the manifest or pass --image-base-url"
    ]


def test_all_problems_in_one_pass_in_line_order() -> None:
    """Every problem of every shot is reported together, top to bottom."""
    found = problems(
        """
        version: 1
        shots:
          - {id: a, prompt: p, image: a.png, model_mode: ultra}
          - {id: b, prompt: "  ", image: http://x.example.com/b, duration: ten}
          - {id: c, prompt: p, image: http://x.example.com/c, multi_shot: maybe}
        """
    )
    assert found == [
        "m.yaml:3: shot a: model_mode: must be one of standard, pro, not 'ultra'",
        "m.yaml:3: shot a: image: 'a.png' is a local file that does not exist "
        f"({Path.cwd() / 'a.png'}); a name without a scheme is a path relative to the "
        "manifest's directory, unless image_base_url is set (or --image-base-url is given)",
        "m.yaml:4: shot b: duration: 'ten' is not a number of seconds",
        "m.yaml:4: shot b: prompt: is blank",
        "m.yaml:5: shot c: multi_shot: must be true or false, not a string",
    ]


# ---- duration: parsing, clamping, warnings, --strict -------------------------------------------


def _duration_body(value: str) -> str:
    return _shot_body(f"duration: {value}")


@pytest.mark.parametrize(
    ("value", "expected", "warning"),
    [
        ('"10"', 10, None),
        ("' 12 '", 12, None),
        ("2", 3, "2 s is below 3 s; the API clamps it to 3 s"),
        ('"-4"', 3, "-4 s is below 3 s; the API clamps it to 3 s"),
        ("20", 15, "20 s is above 15 s; the API clamps it to 15 s"),
        ("7.5", 7.5, "fractional 7.5 s is planned as 8 s, the most it can cost"),
        ("10.0", 10, None),
    ],
)  # fmt: skip
def test_duration_normalisation(value: str, expected: float, warning: str | None) -> None:
    """Durations parse from strings and clamp to 3..15 with a warning naming the shot."""
    m = yaml_manifest(_duration_body(value))
    assert m.shots[0].duration == expected
    expected = [f"m.yaml:6: shot a: duration: warning: {warning}"] if warning else []
    assert [str(w) for w in m.warnings] == expected
    assert all(w.warning for w in m.warnings)


def test_strict_turns_warnings_into_errors() -> None:
    """With strict, a clamping warning is an error (printed without 'warning:')."""
    assert problems(_duration_body("20"), strict=True) == [
        "m.yaml:6: shot a: duration: 20 s is above 15 s; the API clamps it to 15 s"
    ]


@pytest.mark.parametrize("value", ['"ten"', '"5s"', '"1_0"', "null", '"nan"', "[5]", ".inf"])
def test_non_numeric_duration(value: str) -> None:
    """A duration that is not a number of seconds is an error on its line."""
    (line,) = problems(_duration_body(value))
    assert line.startswith("m.yaml:6: shot a: duration: ")


def test_default_duration_is_clamped_once() -> None:
    """A default outside 3..15 is warned about once, at the default, and applies clamped."""
    m = yaml_manifest(
        """
        version: 1
        defaults: {duration: 30}
        shots:
          - {id: a, prompt: p, image: http://x.example.com/a}
          - {id: b, prompt: p, image: http://x.example.com/b}
        """
    )
    assert [s.duration for s in m.shots] == [15, 15]
    assert [str(w) for w in m.warnings] == [
        "m.yaml:2: defaults.duration: warning: 30 s is above 15 s; the API clamps it to 15 s"
    ]


@given(st.floats(allow_nan=False, allow_infinity=False, min_value=-1e6, max_value=1e6))
def test_duration_always_lands_in_api_range(value: float) -> None:
    """Whatever the number, the planned duration is within 3..15 and never below the charge."""
    parsed = parse_duration(value)
    duration, warning = clamp_duration(parsed)
    assert 3 <= duration <= 15
    assert (warning is None) == (duration == parsed and float(parsed).is_integer())
    assert clamp_duration(duration)[0] == duration  # clamping twice changes nothing
    if duration == parsed:
        assert math.ceil(duration) >= parsed


@given(st.one_of(st.integers(-100, 100), st.floats(-1e3, 1e3, allow_nan=False)))
def test_numeric_strings_parse_like_numbers(value: float) -> None:
    """A number written as a string (with spaces around) means the same number."""
    assert parse_duration(f" {value!r} ") == parse_duration(value)


@given(st.text(max_size=12))
def test_string_durations_agree_with_the_schema(text: str) -> None:
    """Any string the parser accepts, the schema accepts too (one pattern decides both)."""
    shot = {"id": "a", "prompt": "p", "image": "http://x.example.com/a", "duration": text}
    schema_ok = not list(shot_validator().iter_errors(shot))
    try:
        parse_duration(text)
    except ValueError:
        return
    assert schema_ok


# ---- URLs ----------------------------------------------------------------------------------------

_SEGMENT = st.text("abcXYZ019._~-%", min_size=1, max_size=8)


@given(
    st.lists(_SEGMENT, min_size=1, max_size=4).map("/".join),
    st.sampled_from(
        [BASE, "http://127.0.0.1:8765/", "https://h.example.com/a/b/?q=1", "https://h.example.com"]
    ),
)
def test_relative_urls_resolve_like_urljoin(relative: str, base: str) -> None:
    """Resolution, and the concatenation shortcut where it applies, give what urljoin gives."""
    assert resolve_url(relative, base) == urljoin(base, relative)
    plain = plain_relative_matcher(base)
    if plain is not None and plain(relative):
        assert base + relative == urljoin(base, relative)


@given(
    st.sampled_from(["http", "https", "HTTP", "ftp", "file"]),
    st.text("ab1-.:[]@", max_size=10),
    st.text("ab/._~%-? #", max_size=10),
)
def test_absolute_urls_need_http_and_a_host(scheme: str, host: str, path: str) -> None:
    """An absolute URL is accepted unchanged iff its scheme is http(s) and it has a host."""
    url = f"{scheme}://{host}{path}"
    try:
        parts = urlsplit(url)
        valid = parts.scheme in ("http", "https") and bool(parts.hostname)
    except ValueError:
        valid = False
    try:
        assert resolve_url(url, BASE) == url and valid
    except ValueError:
        assert not valid


def test_collector_paused_restores_the_collector() -> None:
    """The collector is off inside the block and back as it was after, even on error."""
    assert gc.isenabled()
    with pytest.raises(ManifestError), collector_paused():
        assert not gc.isenabled()
        build_manifest(b"", file="m.yaml")
    assert gc.isenabled()
    gc.disable()
    try:
        with collector_paused():
            pass
        assert not gc.isenabled()  # a caller's choice to keep it off is respected
    finally:
        gc.enable()


# ---- CSV -----------------------------------------------------------------------------------------

CSV_HEADER = "id,prompt,image,tail_image_url,duration,multi_shot,model_mode,takes,tags\n"


def test_csv_reads_every_column() -> None:
    """Each CSV column is read as its field's kind; empty cells mean the default."""
    m = csv_manifest(
        CSV_HEADER
        + "s01,The character turns,s01.png,s01-end.png,10,no,pro,2,hero; night\n"
        + "s02,Another,https://x.example.com/b.png,,,,,,\n",
        image_base_url=BASE,
    )
    s01, s02 = m.shots
    assert (s01.image, s01.tail_image_url) == (BASE + "s01.png", BASE + "s01-end.png")
    assert (s01.duration, s01.multi_shot, s01.model_mode, s01.takes, s01.tags) == (
        10,
        False,
        "pro",
        2,
        ("hero", "night"),
    )
    assert (s02.duration, s02.multi_shot, s02.model_mode, s02.takes, s02.tags) == (
        5,
        True,
        "standard",
        1,
        (),
    )
    assert (s01.line, s02.line) == (2, 3)


def test_csv_bom_header_case_and_spaces() -> None:
    """A BOM, header names in any case with spaces, and columns in any order are accepted."""
    m = csv_manifest(b"\xef\xbb\xbf Image ,ID,  PROMPT\r\nhttp://x.example.com/a,a,p\r\n")
    assert (m.shots[0].id, m.shots[0].prompt, m.shots[0].image) == (
        "a",
        "p",
        "http://x.example.com/a",
    )


def test_csv_semicolon_delimiter() -> None:
    """A semicolon-separated export is detected; tags stay ;-separated inside quotes."""
    m = csv_manifest(
        'id;prompt;image;tags;duration\na;p, with comma;http://x.example.com/a;"x;y";7\n'
    )
    assert (m.shots[0].prompt, m.shots[0].tags, m.shots[0].duration) == (
        "p, with comma",
        ("x", "y"),
        7,
    )


def test_csv_quoted_newlines_keep_physical_lines() -> None:
    """A cell may hold newlines; problems name the physical line where the row starts."""
    found = problems(
        'id,prompt,image,multi_shot\na,"one\ntwo\nthree",http://x.example.com/a,yes\nb,p,http://x.example.com/b,maybe\n',
        csv=True,
    )
    assert found == [
        "m.csv:5: shot b: multi_shot: 'maybe' is not a yes/no value; use true/false, yes/no or 1/0"
    ]
    m = csv_manifest('id,prompt,image\na,"one\ntwo",http://x.example.com/a\n')
    assert m.shots[0].prompt == "one\ntwo"


@pytest.mark.parametrize(
    ("cell", "expected"),
    [("true", True), ("YES", True), ("1", True), ("False", False), ("no", False), ("0", False)],
)
def test_csv_booleans(cell: str, expected: bool) -> None:
    """Booleans accept true/false, yes/no and 1/0 in any case."""
    m = csv_manifest(f"id,prompt,image,multi_shot\na,p,http://x.example.com/a,{cell}\n")
    assert m.shots[0].multi_shot is expected


def test_csv_bad_cells() -> None:
    """A bad boolean, a fractional takes and an unparsable duration each name row and field."""
    found = problems(
        "id,prompt,image,multi_shot,takes,duration\n"
        "a,p,http://x.example.com/a,maybe,1,5\n"
        "b,p,http://x.example.com/b,,2.5,5\n"
        "c,p,http://x.example.com/c,,,ten\n",
        csv=True,
    )
    assert found == [
        "m.csv:2: shot a: multi_shot: 'maybe' is not a yes/no value; use true/false, yes/no or 1/0",
        "m.csv:3: shot b: takes: '2.5' is not a whole number",
        "m.csv:4: shot c: duration: 'ten' is not a number of seconds",
    ]


def test_csv_header_problems() -> None:
    """Unknown, repeated and missing columns are reported on the header's line."""
    assert problems("id,prompt,image,durration\na,p,http://x.example.com/a,5\n", csv=True) == [
        "m.csv:1: unknown column 'durration'; did you mean duration?"
    ]
    assert problems("id,prompt,image,Prompt\n", csv=True) == [
        "m.csv:1: column 'prompt' appears twice"
    ]
    assert problems("id,prompt\na,p\n", csv=True) == ["m.csv:1: missing required column 'image'"]


def test_csv_defaults_stand_in_for_columns() -> None:
    """A column the defaults provide may be left out, and an empty cell takes the default."""
    m = csv_manifest("id,image,duration\na,a.png,\nb,b.png,12\n", image_base_url=BASE,
                     defaults={"prompt": "Slow push in", "duration": 8})  # fmt: skip
    assert [(s.prompt, s.duration) for s in m.shots] == [("Slow push in", 8), ("Slow push in", 12)]


def test_csv_row_problems() -> None:
    """Extra cells, an unterminated quote, and a header with no rows are problems."""
    assert problems("id,prompt,image\na,p,http://x.example.com/a,extra\n", csv=True) == [
        "m.csv:2: shot a: the row has 4 cells but the header names 3 columns"
    ]
    (line,) = problems('id,prompt,image\na,"p,http://x.example.com/a\n', csv=True)
    assert line.startswith("m.csv:") and "CSV syntax error" in line
    assert problems("id,prompt,image\n,,\n", csv=True) == ["m.csv: holds no shots, only a header"]


def test_csv_invalid_utf8() -> None:
    """A CSV that is not UTF-8 (say, a Latin-1 export) names the line."""
    assert problems(b"id,prompt,image\na,caf\xe9,http://x.example.com/a\n", csv=True) == [
        "m.csv:2: is not UTF-8 text (byte 0xe9 cannot be read); save it as UTF-8"
    ]


def test_convert_text_kinds() -> None:
    """Text values (cells, --default) are read by the schema's type of each field."""
    assert convert_text("takes", " 3 ") == 3
    assert convert_text("tags", "a; ;b") == ["a", "b"]
    assert convert_text("duration", "7.5") == "7.5"  # parsed later, like a YAML string
    with pytest.raises(ValueError, match="not a yes/no value"):
        convert_text("multi_shot", "perhaps")


# ---- the examples ------------------------------------------------------------------------------


def test_storyboard_yaml_and_csv_plan_identical_jobs() -> None:
    """The CSV storyboard, given the YAML's settings as overrides, expands to the same jobs."""
    yaml_m = load_manifest(ROOT / "manifests" / "storyboard.yaml")
    csv_m = load_manifest(
        ROOT / "manifests" / "storyboard.csv",
        image_base_url=yaml_m.image_base_url,
        defaults={"multi_shot": False},
    )
    assert [j.key for j in csv_m.jobs] == [j.key for j in yaml_m.jobs]
    assert [j.fingerprint for j in csv_m.jobs] == [j.fingerprint for j in yaml_m.jobs]
    assert [s.tags for s in csv_m.shots] == [s.tags for s in yaml_m.shots]


def test_storyboard_shape() -> None:
    """The storyboard has 24 shots named s01..s24, relative images, and fits its budget."""
    m = load_manifest(ROOT / "manifests" / "storyboard.yaml")
    assert [s.id for s in m.shots] == [f"s{i:02d}" for i in range(1, 25)]
    assert all(s.image == f"{BASE}{s.id}.png" for s in m.shots)
    assert all(s.tail_image_url in (None, f"{BASE}{s.id}-end.png") for s in m.shots)
    assert any(s.tail_image_url for s in m.shots) and any(s.takes > 1 for s in m.shots)
    total = sum(j.credits for j in m.jobs)
    assert 40_000 <= total <= 80_000 and m.budget is not None and total <= m.budget
    assert m.warnings == ()
    raw = (ROOT / "manifests" / "storyboard.yaml").read_text()
    assert "https://" not in raw.split("shots:", 1)[1]  # only relative names, so a demo can re-base


def test_quickstart_is_valid() -> None:
    """The quickstart manifest loads without warnings."""
    m = load_manifest(ROOT / "manifests" / "quickstart.yaml")
    assert len(m.shots) == 3 and m.warnings == ()
