"""Every module of the package says what it exports, and exports what it says."""

from __future__ import annotations

import importlib
import pkgutil

import pytest

import batchkling

MODULES = sorted(
    m.name
    for m in pkgutil.walk_packages(batchkling.__path__, prefix="batchkling.")
    if not m.name.endswith("__main__")
)


@pytest.mark.parametrize("name", MODULES)
def test_module_all_is_accurate(name: str) -> None:
    """``__all__`` exists, has no duplicates, and names only real attributes."""
    module = importlib.import_module(name)
    exported = getattr(module, "__all__", None)
    assert exported is not None, f"{name} has no __all__"
    assert len(set(exported)) == len(exported)
    missing = [n for n in exported if not hasattr(module, n)]
    assert not missing, f"{name} exports names it lacks: {missing}"


def test_runner_never_imports_the_emulator_stack() -> None:
    """The runner's modules work without starlette and uvicorn (the `mock` extra)."""
    import subprocess
    import sys

    code = (
        "import sys, batchkling.run.runner, batchkling.cli.run, batchkling.reconcile.usage;"
        "bad = [m for m in ('starlette', 'uvicorn') if m in sys.modules];"
        "print(','.join(bad))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
