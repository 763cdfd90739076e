"""`batchkling validate` and `batchkling plan`: output, exit statuses, options."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import pytest

from batchkling.cli import main

__all__: list[str] = []

ROOT = Path(__file__).resolve().parents[2]
STORYBOARD = str(ROOT / "manifests" / "storyboard.yaml")
STORYBOARD_CSV = str(ROOT / "manifests" / "storyboard.csv")
QUICKSTART = str(ROOT / "manifests" / "quickstart.yaml")


def run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    status = main(list(argv), out=out, err=err)
    return status, out.getvalue(), err.getvalue()


@pytest.fixture
def here(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Work in an empty directory, so messages name files as the user typed them."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


SHOT = "  - id: s01\n    prompt: p\n    image: https://x.example.com/s01.png\n"

BAD_INPUTS: list[tuple[str, bytes, str]] = [
    ("empty.yaml", b"", "empty.yaml: the file is empty"),
    ("latin1.yaml", b"version: 1\nshots:\n  - id: caf\xe9\n",
     "latin1.yaml:3: is not UTF-8 text (byte 0xe9 cannot be read); save it as UTF-8"),
    ("syntax.yaml", b"version: 1\nshots: [\n",
     "syntax.yaml:3: YAML syntax error: while parsing a flow node "
     "did not find expected node content"),
    ("tag.yaml", b"version: 1\nshots:\n  - !!python/object/apply:os.system [ls]\n",
     "tag.yaml:3: shots: the YAML tag !!python/object/apply:os.system is not allowed: manifests "
     "hold plain values only (they are loaded with a safe loader)"),
    ("dup.yaml", b"version: 1\nversion: 1\nshots:\n" + SHOT.encode(),
     "dup.yaml:2: version: duplicate key: already set on line 1"),
    ("typo.yaml", b"version: 1\nshots:\n" + SHOT.encode() + b"    durration: 10\n",
     "typo.yaml:6: shot s01: durration: unknown field; did you mean duration?"),
    ("columns.csv", b"id,prompt,image,modelmode\ns01,p,https://x.example.com/a,pro\n",
     "columns.csv:1: unknown column 'modelmode'; did you mean model_mode?"),
    ("newlines.csv", b'id,prompt,image,takes\ns01,"a\nb",https://x.example.com/a,1\ns02,p,https://x.example.com/b,0\n',
     "newlines.csv:4: shot s02: takes: must be at least 1, not 0"),
    ("bool.csv", b"id,prompt,image,multi_shot\ns01,p,https://x.example.com/a,sometimes\n",
     "bool.csv:2: shot s01: multi_shot: 'sometimes' is not a yes/no value; "
     "use true/false, yes/no or 1/0"),
    ("duration.yaml", b"version: 1\nshots:\n" + SHOT.encode() + b"    duration: five\n",
     "duration.yaml:6: shot s01: duration: 'five' is not a number of seconds"),
    ("relative.yaml", b"version: 1\nshots:\n  - {id: s01, prompt: p, image: relative.yaml}\n",
     "relative.yaml:3: shot s01: image: names a file on this machine (1 local image in all), but "
     "there is no upload_to to put it for the API to fetch; add upload_to: s3://BUCKET/PREFIX/ "
     "(or gs://, az://) to the manifest or pass --upload-to"),
    ("ftp.yaml", b"version: 1\nshots:\n  - {id: s01, prompt: p, image: 'ftp://x.example.com/a'}\n",
     "ftp.yaml:3: shot s01: image: 'ftp://x.example.com/a' must be an http or https URL, not ftp:"),
    ("ids.yaml", b"version: 1\nshots:\n" + SHOT.encode() + SHOT.replace("s01", "S01", 1).encode(),
     "ids.yaml:6: shot S01: id: duplicate id: shot s01 on line 3 has the same id "
     "(ids ignore case)"),
    ("takes.yaml", b"version: 1\nshots:\n" + SHOT.encode() + b"    takes: 21\n",
     "takes.yaml:6: shot s01: takes: must be at most 20, not 21"),
    ("id.yaml", b"version: 1\nshots:\n" + SHOT.replace("s01", "_s01", 1).encode(),
     "id.yaml:3: shot _s01: id: '_s01' is not a valid id: use 1 to 64 letters, digits, '.', '_' "
     "or '-', starting with a letter or digit"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("name", "content", "expected"), BAD_INPUTS, ids=[b[0] for b in BAD_INPUTS]
)
def test_validate_bad_input(here: Path, name: str, content: bytes, expected: str) -> None:
    """Each bad input is exactly one line on stderr naming file, line, shot and field; exit 2."""
    (here / name).write_bytes(content)
    status, out, err = run("validate", name)
    assert (status, out, err) == (2, "", expected + "\n")


def test_validate_missing_file_and_directory(here: Path) -> None:
    """A missing file and a directory are one line each, exit 2."""
    assert run("validate", "nope.yaml") == (2, "", "nope.yaml: no such file\n")
    (here / "dir.yaml").mkdir()
    assert run("validate", "dir.yaml") == (2, "", "dir.yaml: is a directory, not a manifest file\n")


def test_validate_valid_reports_jobs(here: Path) -> None:
    """A valid manifest exits 0 and reports shots, jobs and credits."""
    status, out, err = run("validate", STORYBOARD)
    assert (status, err) == (0, "")
    assert (
        out == f"{STORYBOARD}: valid: 24 shots, 30 jobs, 48,000 / 60,000 credits; fits the budget\n"
    )


def test_validate_over_budget_says_by_how_much(here: Path) -> None:
    """Over its budget a manifest is still valid (exit 0); the line says by how much."""
    status, out, err = run("validate", STORYBOARD, "--budget", "1000")
    assert (status, err) == (0, "")
    assert out == (
        f"{STORYBOARD}: valid: 24 shots, 30 jobs, 48,000 / 1,000 credits; "
        "over the budget by 47,000\n"
    )


def test_validate_csv_with_bom_and_semicolons(here: Path) -> None:
    """A spreadsheet export (BOM, semicolons, CRLF) validates."""
    (here / "export.csv").write_bytes(
        b"\xef\xbb\xbfID;Prompt;Image;Tags\r\ns01;Slow, then fast;https://x.example.com/a;a;b\r\n"
    )
    # Unquoted "a;b" in a ;-separated file is two cells: the second one has no column.
    assert run("validate", "export.csv") == (
        2,
        "",
        "export.csv:2: shot s01: the row has 5 cells but the header names 4 columns\n",
    )
    (here / "export.csv").write_bytes(
        b'\xef\xbb\xbfID;Prompt;Image;Tags\r\ns01;Slow, then fast;https://x.example.com/a;"a;b"\r\n'
    )
    assert run("validate", "export.csv") == (
        0,
        "export.csv: valid: 1 shot, 1 job, 1,000 credits\n",
        "",
    )


def test_warnings_print_and_strict_fails(here: Path) -> None:
    """A clamped duration warns and exits 0; with --strict the same line is an error, exit 2."""
    (here / "long.yaml").write_text("version: 1\nshots:\n" + SHOT + "    duration: 30\n")
    status, out, err = run("validate", "long.yaml")
    assert status == 0
    assert err == (
        "long.yaml:6: shot s01: duration: warning: 30 s is above 15 s; the API clamps it to 15 s\n"
    )
    assert out == "long.yaml: valid: 1 shot, 1 job, 3,000 credits, 1 warning\n"
    assert run("validate", "--strict", "long.yaml") == (
        2,
        "",
        "long.yaml:6: shot s01: duration: 30 s is above 15 s; the API clamps it to 15 s\n",
    )


def test_every_problem_in_one_run(here: Path) -> None:
    """validate prints all problems of a manifest, one per line, in file order."""
    (here / "m.yaml").write_text(
        "version: 1\nshots:\n"
        "  - {id: a, prompt: p, image: a.png}\n"
        "  - {id: b, prompt: p, image: 'https://x.example.com/b', takes: 0}\n"
        "  - {id: A, prompt: p, image: 'https://x.example.com/c'}\n"
    )
    status, _, err = run("validate", "m.yaml")
    assert status == 2
    assert [line.split(": ")[0:3] for line in err.splitlines()] == [
        ["m.yaml:3", "shot a", "image"],
        ["m.yaml:4", "shot b", "takes"],
        ["m.yaml:5", "shot A", "id"],
    ]


# ---- plan ----------------------------------------------------------------------------------------


def test_plan_table() -> None:
    """plan prints a row per job, totals per mode, the grand total and the headroom; exit 0."""
    status, out, err = run("plan", QUICKSTART)
    assert (status, err) == (0, "")
    assert out == (
        "job     mode      duration    credits\n"
        "turn    standard         5      1,000\n"
        "window  standard        10      2,000\n"
        "reveal  pro              5      1,500\n"
        "\n"
        "mode        jobs   seconds     credits\n"
        "standard       2        15       3,000\n"
        "pro            1         5       1,500\n"
        "total          3        20       4,500\n"
        "\n"
        "budget: 4,500 / 5,000 credits, 500 to spare\n"
    )


def test_plan_over_budget_exits_3_with_the_fitting_change() -> None:
    """Over budget: exit 3, and stderr says by how much and what change would fit."""
    status, out, err = run("plan", STORYBOARD, "--budget", "45000")
    assert status == 3
    assert out.endswith("budget: 48,000 / 45,000 credits, over by 3,000\n")
    assert err == (
        "batchkling: error: The plan needs 48,000 credits but the budget is 45,000: over by 3,000 "
        "credits. To fit, switch the 3 longest pro jobs to standard (s23, s24#1, s24#2): "
        "44,400 credits; or raise the budget to 48,000 credits.\n"
    )


def test_budget_flag_overrides_manifest(here: Path) -> None:
    """--budget replaces the manifest's budget, both up and down."""
    assert run("plan", QUICKSTART, "--budget", "4000")[0] == 3
    (here / "tight.yaml").write_text(
        "version: 1\nbudget: 10\nshots:\n  - {id: a, prompt: p, image: 'https://x.example.com/a'}\n"
    )
    assert run("plan", "tight.yaml")[0] == 3
    assert run("plan", "tight.yaml", "--budget", "1,000")[0] == 0


def test_plan_without_budget(here: Path) -> None:
    """Without any budget, plan exits 0 and says none is set."""
    (here / "m.yaml").write_text("version: 1\nshots:\n" + SHOT)
    status, out, _ = run("plan", "m.yaml")
    assert status == 0 and out.endswith(
        "budget: none set (--budget N or budget: in the manifest)\n"
    )


def test_plan_json() -> None:
    """--json prints one object: jobs with shot, mode, duration, credits, and the totals."""
    status, out, _ = run("plan", STORYBOARD, "--json")
    assert status == 0
    plan = json.loads(out)
    assert set(plan) == {"jobs", "total_credits", "budget", "within_budget"}
    assert (plan["total_credits"], plan["budget"], plan["within_budget"]) == (48000, 60000, True)
    assert len(plan["jobs"]) == 30
    assert plan["jobs"][0] == {
        "job": "s01",
        "shot": "s01",
        "mode": "pro",
        "duration": 10,
        "credits": 3000,
    }
    assert sum(j["credits"] for j in plan["jobs"]) == plan["total_credits"]


def test_plan_json_over_budget_exits_3() -> None:
    """--json still prints the plan when over budget, and exits 3."""
    status, out, err = run("plan", STORYBOARD, "--json", "--budget", "1000")
    assert status == 3 and json.loads(out)["within_budget"] is False
    assert "over by 47,000 credits" in err


def test_csv_storyboard_plans_like_yaml_with_flags() -> None:
    """The CSV storyboard with --image-base-url, --default and --budget plans like the YAML."""
    yaml_plan = run("plan", STORYBOARD, "--json")[1]
    csv_plan = run(
        "plan", STORYBOARD_CSV, "--json", "--budget", "60000",
        "--image-base-url", "https://cdn.example.com/ep01/", "--default", "multi_shot=false",
    )[1]  # fmt: skip
    assert json.loads(csv_plan) == json.loads(yaml_plan)


def test_default_and_base_url_flags(here: Path) -> None:
    """--default sets a field for every shot that leaves it out; --image-base-url re-bases."""
    (here / "m.csv").write_text("id,prompt,image,duration\na,p,a.png,\nb,p,b.png,12\n")
    status, out, _ = run(
        "plan", "m.csv", "--json", "--image-base-url", "http://127.0.0.1:9/f/",
        "--default", "model_mode=pro", "--default", "duration=10",
    )  # fmt: skip
    assert status == 0
    assert [(j["mode"], j["duration"]) for j in json.loads(out)["jobs"]] == [
        ("pro", 10),
        ("pro", 12),
    ]


@pytest.mark.parametrize(
    ("flag", "message"),
    [
        ("durration=5", "argument --default: unknown field 'durration'; did you mean duration?"),
        ("id=x", "argument --default: a default id is not allowed"),
        ("multi_shot=maybe", "argument --default: multi_shot: 'maybe' is not a yes/no value"),
        ("takes", "argument --default: 'takes' is not KEY=VALUE"),
    ],
)
def test_bad_default_flag_is_usage_error(flag: str, message: str) -> None:
    """A bad --default is bad usage: exit 2 with argparse's message, on one line."""
    status, _, err = run("validate", QUICKSTART, "--default", flag)
    assert status == 2
    assert message in err and err.count("\n") == 1


def test_bad_default_value_for_schema(here: Path) -> None:
    """A --default value the schema refuses is reported as coming from the flag."""
    status, _, err = run("validate", QUICKSTART, "--default", "model_mode=ultra")
    assert status == 2
    assert err == (
        f"{QUICKSTART}: defaults.model_mode: must be one of standard, pro, not 'ultra' "
        "(from --default)\n"
    )


def test_bad_budget_flag() -> None:
    """--budget must be a whole number of credits."""
    status, _, err = run("plan", QUICKSTART, "--budget", "lots")
    assert status == 2
    assert "argument --budget: 'lots' is not a whole number of credits" in err


# ---- the real command ----------------------------------------------------------------------------


def test_console_script_validates_and_plans(tmp_path: Path) -> None:
    """The installed `batchkling` command validates; `python -m batchkling` plans with exit 3."""
    script = Path(sys.executable).parent / "batchkling"
    done = subprocess.run(
        [str(script), "validate", QUICKSTART], capture_output=True, text=True, timeout=60
    )
    assert (done.returncode, done.stderr) == (0, "")
    assert "valid: 3 shots, 3 jobs, 4,500 / 5,000 credits" in done.stdout
    done = subprocess.run(
        [sys.executable, "-m", "batchkling", "plan", QUICKSTART, "--budget", "100"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 3 and "over by 4,400 credits" in done.stderr


def test_bad_input_never_prints_a_traceback(tmp_path: Path) -> None:
    """Invalid bytes, a python tag and a directory: exit 2 and no traceback, from the command."""
    (tmp_path / "bad.yaml").write_bytes(
        b"version: 1\nshots: !!python/object:os.system\n  x: \xff\n"
    )
    for target in (tmp_path / "bad.yaml", tmp_path):
        done = subprocess.run(
            [sys.executable, "-m", "batchkling", "validate", str(target)],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 2
        assert "Traceback" not in done.stderr and done.stderr.count("\n") == 1
