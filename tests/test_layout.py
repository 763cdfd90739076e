"""The package keeps the shape the README draws: short functions, every module named."""

from __future__ import annotations

import ast
import pkgutil
import re
from pathlib import Path

import batchkling

PACKAGE = Path(batchkling.__file__).parent
README = PACKAGE.parent / "README.md"
MAX_FUNCTION_LINES = 60


def _functions() -> list[tuple[str, int]]:
    """Every function and method of the package as ``path:line name`` and its length in lines."""
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                assert node.end_lineno is not None
                where = f"{path.relative_to(PACKAGE.parent)}:{node.lineno} {node.name}"
                found.append((where, node.end_lineno - node.lineno + 1))
    return found


def _modules() -> list[str]:
    """Every module of the package by its path inside it (``run/session.py``, ``run/``)."""
    paths = []
    for info in pkgutil.walk_packages(batchkling.__path__, prefix="batchkling."):
        parts = info.name.split(".")[1:]
        if parts[-1] == "__main__":
            continue
        paths.append("/".join(parts) + ("/" if info.ispkg else ".py"))
    return sorted(paths)


def _layout_section() -> str:
    """The README's layout section: a heading about the layout, else ``## Development``."""
    text = README.read_text(encoding="utf-8")
    heading = re.search(r"^(#+) .*\blayout\b.*$", text, re.M | re.I) or re.search(
        r"^(##) Development\s*$", text, re.M
    )
    assert heading is not None, "README.md has no layout or Development section"
    level = len(heading.group(1))
    end = re.compile(rf"^#{{1,{level}}} ", re.M).search(text, heading.end())
    return text[heading.end() : end.start() if end else len(text)]


def _named(module: str, section: str) -> bool:
    """Whether ``section`` names ``module`` by its path, with or without ``batchkling/``."""
    names = [module] if not module.endswith("/") else [module, module + "__init__.py"]
    return any(
        re.search(rf"(?<![\w./-])(?:batchkling/)?{re.escape(name)}(?![\w/])", section)
        for name in names
    )


def test_the_function_scan_sees_the_package() -> None:
    """The scan finds functions in subpackages, so the length check below is not vacuous."""
    names = {where.split(" ")[1] for where, _ in _functions()}
    assert {"load_manifest", "render_html", "whole_number"} <= names


def test_the_module_list_sees_subpackages() -> None:
    """Modules are listed by path, packages with a trailing slash."""
    modules = _modules()
    assert {"model.py", "manifest/", "manifest/load.py", "report/storyboard.py"} <= set(modules)


def test_every_function_is_under_60_lines() -> None:
    """No function or method of the package is 60 lines long or more."""
    long = [f"{where} ({n} lines)" for where, n in _functions() if n >= MAX_FUNCTION_LINES]
    assert not long, "functions of 60 lines or more:\n" + "\n".join(long)


def _tree(section: str) -> str:
    """The layout's tree drawing as paths: ``  run/  session.py, x.py`` becomes ``run/session.py``.

    In the drawing, a line that starts (after two spaces) with ``pkg/`` opens a package;
    the module names on it and on the more deeply indented lines after it are its own.
    """
    paths: list[str] = []
    package = ""
    for line in section.splitlines():
        opened = re.match(r"^  ([a-z_]+)/\s", line + " ")
        if opened:
            package = opened.group(1) + "/"
            paths.append(package)
            line = line[opened.end() :]
        elif not line.startswith("   "):
            package = ""
        names = re.findall(r"(?<![\w./])([a-z_]+(?:\.py|/))(?![\w/])", line)
        paths += [package + n for n in names if package]
    return " ".join(f"`{p}`" for p in paths)


def test_every_module_is_named_in_the_readme_layout() -> None:
    """The README's layout section names every module of the package by its path."""
    section = _layout_section()
    section += " " + _tree(section)
    missing = [m for m in _modules() if not _named(m, section)]
    assert not missing, "modules the README's layout section does not name: " + ", ".join(missing)


def test_the_tree_drawing_gives_each_module_its_package() -> None:
    """Names listed on a package's lines of the drawing belong to that package, no other."""
    drawing = "  run/  session.py (x), runner.py\n        submit.py\n  model.py  pure\n"
    paths = _tree(drawing)
    assert "`run/session.py`" in paths and "`run/submit.py`" in paths
    assert "`run/model.py`" not in paths


def test_named_matches_whole_paths_only() -> None:
    """A path counts with or without ``batchkling/``, never as part of a longer path."""
    section = "`batchkling/run/session.py`, `model.py`, `emulator/` and `emulator/state.py`"
    assert _named("run/session.py", section)
    assert _named("model.py", section)
    assert _named("emulator/", section)
    assert _named("emulator/state.py", section)
    assert not _named("state.py", section)
    assert not _named("run/", section)
    assert not _named("session.py", section)
