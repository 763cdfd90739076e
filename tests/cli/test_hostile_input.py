"""Hostile input: alias bombs, sly ids, huge prompts, bad numbers, typos, closed pipes, Ctrl-C."""

from __future__ import annotations

import argparse
import io
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from batchkling.cli import main
from batchkling.cli._types import finite_seconds, positive_seconds, seconds_range
from batchkling.errors import ManifestError
from batchkling.manifest.load import load_manifest
from batchkling.manifest.yaml_reader import read_yaml

ROOT = Path(__file__).resolve().parents[2]
SHOT = "  - id: s1\n    prompt: p\n    image: https://x.example.com/s1.png\n"


def run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    status = main(list(argv), out=out, err=err)
    return status, out.getvalue(), err.getvalue()


def command(*argv: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """``python -m batchkling ARGV`` as a real process."""
    return subprocess.run(
        [sys.executable, "-m", "batchkling", *argv],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
        env={k: v for k, v in os.environ.items() if k != "SJINN_API_KEY"},
    )


def alias_bomb(levels: int = 9) -> str:
    """A "billion laughs" manifest: each level is nine aliases of the one before, in tags."""
    lines = [
        "version: 1",
        'l0: &l0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]',
    ]
    for n in range(1, levels):
        lines.append(f"l{n}: &l{n} [" + ", ".join([f"*l{n - 1}"] * 9) + "]")
    return "\n".join([*lines, "shots:", SHOT + f"    tags: *l{levels - 1}", ""])


# -- YAML -----------------------------------------------------------------------------------


def test_an_alias_bomb_fails_at_once_on_one_line(tmp_path: Path) -> None:
    """1 KB standing for 387 million values: refused in well under a second, naming the line."""
    path = tmp_path / "bomb.yaml"
    path.write_text(alias_bomb(), encoding="utf-8")
    assert path.stat().st_size < 1300
    started = time.monotonic()
    with pytest.raises(ManifestError) as refused:
        load_manifest(path)
    assert time.monotonic() - started < 0.5
    assert [str(p) for p in refused.value.problems] == [
        f"{path}:7: the YAML's aliases stand for more than 100,000 values; a manifest does "
        "not need that many (an alias bomb?)"
    ]
    done = command("validate", str(path))
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and ":7: " in done.stderr


def test_nesting_deeper_than_64_is_one_line(tmp_path: Path) -> None:
    """Deep nesting, written or through an alias, is refused at its line; 64 levels are fine."""
    deep = "version: 1\nx: " + "[" * 70 + "]" * 70 + "\nshots:\n" + SHOT
    aliased = "version: 1\na: &a " + "[" * 40 + "1" + "]" * 40 + "\nb: " + "[" * 30
    aliased += "*a" + "]" * 30 + "\nshots:\n" + SHOT
    for name, text, line in (("deep.yaml", deep, 2), ("alias.yaml", aliased, 3)):
        path = tmp_path / name
        path.write_text(text, encoding="utf-8")
        status, _, err = run("validate", str(path))
        assert (status, err) == (2, f"{path}:{line}: the YAML nests deeper than 64 levels\n")
    fine = "version: 1\nx: " + "[" * 60 + "]" * 60 + "\nshots:\n" + SHOT
    assert read_yaml(fine.encode(), "fine.yaml").problems == []


def test_an_id_with_a_trailing_newline_is_not_an_id(tmp_path: Path) -> None:
    """ "u2\\n" next to U2 is refused: patterns match the whole id, not up to a last newline."""
    path = tmp_path / "ids.yaml"
    path.write_text(
        'version: 1\nshots:\n  - {id: U2, prompt: p, image: "https://x.example.com/a.png"}\n'
        '  - {id: "u2\\n", prompt: p, image: "https://x.example.com/b.png"}\n'
    )
    status, _, err = run("validate", str(path))
    assert status == 2
    assert "'u2\\n' is not a valid id" in err and ":4: " in err


def test_long_prompts_warn_and_huge_ones_are_refused(tmp_path: Path) -> None:
    """Over 2,500 characters: a warning naming shot and line; over 10,000: an error."""
    long, huge = "a" * 3000, "b" * 10_001
    path = tmp_path / "prompts.yaml"
    path.write_text(
        "version: 1\nshots:\n"
        f"  - {{id: s1, prompt: {long}, image: 'https://x.example.com/a.png'}}\n"
        f"  - {{id: s2, prompt: {huge}, image: 'https://x.example.com/b.png'}}\n"
    )
    status, _, err = run("validate", str(path))
    assert status == 2
    assert (
        f"{path}:3: shot s1: prompt: warning: is 3,000 characters long; Kling reads at most "
        "2,500 and may cut or refuse the rest\n"
    ) in err
    assert f"{path}:4: shot s2: prompt: is 10,001 characters long" in err


# -- flags ----------------------------------------------------------------------------------


@pytest.mark.parametrize("text", ["nan", "inf", "-inf", "-1", "soon"])
def test_seconds_must_be_finite_and_not_negative(text: str) -> None:
    """nan, inf and negative values are refused by the argument type itself."""
    with pytest.raises(argparse.ArgumentTypeError):
        finite_seconds(text)
    with pytest.raises(argparse.ArgumentTypeError):
        positive_seconds(text)
    with pytest.raises(argparse.ArgumentTypeError):
        seconds_range(30.0)(f"1,{text}")
    assert finite_seconds("0") == 0.0 and seconds_range(30.0)("0.5") == (0.5, 30.0)


@pytest.mark.parametrize(
    "flag",
    [
        ["--poll-interval", "nan"],
        ["--poll-interval", "1,inf"],
        ["--usage-settle", "nan"],
        ["--task-timeout", "nan"],
        ["--task-timeout", "-5"],
    ],
)
def test_bad_run_numbers_are_one_line_before_the_key(tmp_path: Path, flag: list[str]) -> None:
    """With no API key at all, a bad number is still what `run` reports: exit 2, one line."""
    (tmp_path / "m.yaml").write_text("version: 1\nshots:\n" + SHOT)
    status, _, err = run("run", str(tmp_path / "m.yaml"), *flag)
    assert status == 2 and err.count("\n") == 1
    assert f"argument {flag[0]}" in err and "API key" not in err


def test_a_mistyped_option_names_the_one_meant(tmp_path: Path) -> None:
    """`--budgte 5` is one line suggesting --budget, before anything is read or asked for."""
    status, _, err = run("run", str(tmp_path / "missing.yaml"), "--budgte", "5")
    assert status == 2
    assert err == (
        "batchkling run: error: unrecognized arguments: --budgte 5; did you mean --budget?\n"
    )
    status, _, err = run("plan", "m.yaml", "--jsno")
    assert status == 2 and err.endswith("did you mean --json?\n")


@pytest.mark.parametrize("name", ["mock-server", "review"])
def test_a_bad_port_is_bad_usage_from_the_command(name: str) -> None:
    """`mock-server --port 99999`, `review --port 99999`: exit 2, one line, no traceback."""
    done = command(name, "--port", "99999")
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.count("\n") == 1 and "99999 is not a port" in done.stderr


# -- pipes and signals ----------------------------------------------------------------------


def test_a_closed_pipe_ends_quietly(tmp_path: Path) -> None:
    """`batchkling status ... | head -1`: the usual status (0), nothing on stderr."""
    shots = "".join(
        f"  - {{id: s{i}, prompt: p, image: 'https://x.example.com/{i}.png'}}\n"
        for i in range(3000)
    )
    (tmp_path / "big.yaml").write_text("version: 1\nshots:\n" + shots)
    proc = subprocess.Popen(
        [sys.executable, "-m", "batchkling", "status", str(tmp_path / "big.yaml")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=ROOT,
    )
    assert proc.stdout is not None and proc.stderr is not None
    assert proc.stdout.readline().startswith(b"3,000 jobs")
    proc.stdout.close()  # what `head -1` does
    with proc.stderr:
        err = proc.stderr.read().decode()
    assert proc.wait(timeout=60) == 0
    assert err == ""


def test_ctrl_c_while_starting_is_130_without_a_traceback(tmp_path: Path) -> None:
    """A Ctrl-C while the command's modules load: exit 130 and one line, no traceback."""
    (tmp_path / "m.yaml").write_text("version: 1\nshots:\n" + SHOT)
    probe = tmp_path / "loaded.txt"
    code = (
        "import signal, sys\n"
        "def interrupt(*_):\n"
        f"    open({str(probe)!r}, 'w').write(str('batchkling.manifest.load' in sys.modules))\n"
        "    raise KeyboardInterrupt\n"
        "signal.signal(signal.SIGALRM, interrupt)\n"
        f"sys.argv = ['batchkling', 'validate', {str(tmp_path / 'm.yaml')!r}]\n"
        "from batchkling.cli import console_main\n"
        "signal.setitimer(signal.ITIMER_REAL, 0.003)\n"
        "console_main()\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=ROOT
    )
    assert probe.read_text() == "False"  # the interrupt came before the command's modules
    assert done.returncode == 130
    assert "Traceback" not in done.stderr and done.stderr.count("\n") == 1
    assert "interrupted" in done.stderr


def test_sigint_to_a_starting_command_is_130(tmp_path: Path) -> None:
    """SIGINT soon after `batchkling validate` starts: never a traceback, whenever it comes."""
    (tmp_path / "m.yaml").write_text("version: 1\nshots:\n" + SHOT)
    for delay in (0.1, 0.2):
        proc = subprocess.Popen(
            [sys.executable, "-m", "batchkling", "validate", str(tmp_path / "m.yaml")],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=ROOT,
        )
        time.sleep(delay)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
        # 130 once the command runs; -2 if the interpreter had not yet started it.
        assert proc.returncode in (0, 130, -signal.SIGINT) and "Traceback" not in err
