"""Starting a command loads what that command uses: no HTTP stack before a request, no
schema validator or YAML library before a manifest is read."""

from __future__ import annotations

import argparse
import io
import subprocess
import sys
from pathlib import Path

import pytest

from batchkling.cli import _build_parser, _commands, main

ROOT = Path(__file__).resolve().parents[2]
QUICKSTART = ROOT / "manifests" / "quickstart.yaml"
WATCHED = ("anyio", "httpx", "jsonschema", "yaml", "referencing", "tqdm", "uvicorn")
MARK = "loaded modules:"

# Runs one command line in this interpreter, as the console script does, then says which
# of the watched libraries it imported; its own output goes to a buffer.
_PROBE = f"""
import io, sys
from batchkling.cli import main
buffer = io.StringIO()
try:
    status = main(sys.argv[1:], out=buffer, err=buffer)
except SystemExit as exc:
    status = exc.code
loaded = sorted({{m.split(".")[0] for m in sys.modules}} & set({WATCHED!r}))
print(status, buffer.getvalue()[:200].replace("\\n", " | "), file=sys.stderr)
print({MARK!r}, " ".join(loaded))
"""


def _loaded(*argv: str) -> set[str]:
    """The watched libraries a fresh interpreter has imported once ``batchkling ARGV`` ran."""
    done = subprocess.run(
        [sys.executable, "-c", _PROBE, *argv], capture_output=True, text=True, check=True
    )
    line = done.stdout.strip().splitlines()[-1]
    assert line.startswith(MARK), (done.stdout, done.stderr)
    return set(line[len(MARK) :].split())


@pytest.mark.parametrize(
    "argv",
    [["--version"], ["--help"], ["--help", "validate"], ["validate", "--help"], ["plan", "--help"]],
)
def test_version_and_help_load_no_library(argv: list[str]) -> None:
    """`--version` and `--help` import none of the HTTP stack, jsonschema, YAML or anyio."""
    assert _loaded(*argv) == set()


@pytest.mark.parametrize("command", ["validate", "plan"])
def test_validate_and_plan_load_no_http_stack(command: str) -> None:
    """`validate` and `plan` read and check the manifest, with no HTTP stack nor anyio."""
    loaded = _loaded(command, str(QUICKSTART))
    assert {"jsonschema", "yaml"} <= loaded  # they do validate the manifest
    assert not loaded & {"httpx", "anyio", "tqdm", "uvicorn"}


def test_a_csv_manifest_is_validated_without_yaml(tmp_path: Path) -> None:
    """A CSV manifest is read without importing the YAML library."""
    path = tmp_path / "shots.csv"
    path.write_text("id,prompt,image\ns01,The keeper turns,https://cdn.example.com/a.png\n")
    loaded = _loaded("validate", str(path))
    assert "jsonschema" in loaded
    assert "yaml" not in loaded


@pytest.mark.parametrize("command", [c.name for c in _commands.COMMANDS])
def test_command_help_loads_no_http_stack_nor_manifest_loader(command: str) -> None:
    """`COMMAND --help` builds that command's parser only: no httpx, jsonschema or YAML."""
    loaded = _loaded(command, "--help")
    assert not loaded & {"httpx", "jsonschema", "referencing", "yaml", "tqdm", "uvicorn"}


def _choices(
    parser: argparse.ArgumentParser,
) -> argparse._SubParsersAction[argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action
    raise AssertionError("no subcommands")


def test_each_line_of_help_is_the_commands_own() -> None:
    """The help line listed for each command is the one its module's parser gives."""
    full = {a.dest: a.help for a in _choices(_build_parser())._choices_actions}
    assert full == {c.name: c.help for c in _commands.COMMANDS}


def test_top_level_help_is_the_same_built_lazily_or_in_full() -> None:
    """`batchkling --help` prints what the fully built parser prints."""
    assert _build_parser(["--help"]).format_help() == _build_parser().format_help()


def test_a_command_line_builds_the_command_it_names_in_full() -> None:
    """The named command's parser has all its options; the others only a name."""
    chosen = _choices(_build_parser(["plan", "x.yaml"])).choices
    assert "--json" in chosen["plan"].format_help()
    assert [a.dest for a in chosen["run"]._actions] == ["help"]


def test_unknown_command_is_one_usage_line() -> None:
    """A mistyped command is reported like any bad usage: exit 2, one line naming the choices."""
    err = io.StringIO()
    assert main(["valdate", "x.yaml"], out=io.StringIO(), err=err) == 2
    lines = err.getvalue().splitlines()
    assert len(lines) == 1 and "invalid choice: 'valdate'" in lines[0] and "validate" in lines[0]
