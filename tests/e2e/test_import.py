"""What a bare `import batchkling` costs, and that its names still arrive when used."""

from __future__ import annotations

import subprocess
import sys

import pytest

import batchkling

pytestmark = pytest.mark.slow


def _run(code: str) -> str:
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return out.stdout.strip()


def test_import_batchkling_loads_no_http_stack() -> None:
    """`import batchkling` alone imports neither httpx nor anyio."""
    code = "import sys, batchkling; print(sorted({'httpx', 'anyio'} & set(sys.modules)))"
    assert _run(code) == "[]"


def test_the_library_surface_is_loaded_on_first_use() -> None:
    """Each public name resolves to the object of the module that defines it."""
    from batchkling.errors import BatchklingError
    from batchkling.run.session import run_manifest

    assert batchkling.run_manifest is run_manifest
    assert batchkling.BatchklingError is BatchklingError
    assert set(batchkling.__all__) <= set(dir(batchkling))
    with pytest.raises(AttributeError):
        _ = batchkling.no_such_name
