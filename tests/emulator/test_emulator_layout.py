"""The emulator's layers: the service decides without a web framework, and nothing of the client."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

import batchkling.emulator
from batchkling.emulator.config import EmulatorConfig
from batchkling.emulator.service import ApiRequest, Emulator
from tests.emulator_fixtures import TEST_KEY, FakeClock, kling_body

PACKAGE = Path(batchkling.emulator.__file__).parent
MODULES = sorted(p.stem for p in PACKAGE.glob("*.py") if p.stem != "__init__")
# Shared pure rules: constants and prices, nothing that talks to the API.
# image_rules is pure: --fetch-images judges a fetched image by the signatures pre-flight uses.
SHARED = (
    "batchkling.model",
    "batchkling.cost",
    "batchkling._util",
    "batchkling._time",
    "batchkling.preflight.image_rules",
)
# The modules that write HTTP answers; the service and everything it uses come first.
WEB = {"wire", "responses", "routes", "files", "admin", "app"}


def imports_of(module: str) -> set[str]:
    tree = ast.parse((PACKAGE / f"{module}.py").read_text(encoding="utf-8"))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return found


@pytest.mark.parametrize("module", MODULES)
def test_the_emulator_imports_nothing_of_the_client(module: str) -> None:
    """Only the emulator's own modules and the shared pure rules of batchkling."""
    ours = {m for m in imports_of(module) if m.split(".")[0] == "batchkling"}
    foreign = {
        m for m in ours if not m.startswith("batchkling.emulator") and not m.startswith(SHARED)
    }
    assert not foreign, f"{module} imports {sorted(foreign)}"


@pytest.mark.parametrize("module", sorted(set(MODULES) - WEB))
def test_the_deciding_modules_know_no_web_framework_and_no_route(module: str) -> None:
    """The service and what it uses never import Starlette, nor a module that does."""
    imported = imports_of(module)
    assert not {m for m in imported if m.split(".")[0] == "starlette"}
    assert not {m for m in imported if m.removeprefix("batchkling.emulator.") in WEB}


def test_the_service_loads_without_starlette() -> None:
    """The service can be imported, and used, on an install without the web stack."""
    # A module set to None in sys.modules cannot be imported: any import of it fails.
    code = "import sys; sys.modules['starlette'] = None; import batchkling.emulator.service"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


@pytest.mark.anyio
async def test_the_service_answers_and_counts_without_http() -> None:
    """A create and a query through the service alone; the stats are the service's own."""
    clock = FakeClock()
    emulator = Emulator(EmulatorConfig(gen_seconds=(1, 1), seed=1), clock)
    create = ApiRequest(
        key=TEST_KEY,
        method="POST",
        body=json.dumps(kling_body()).encode(),
        query={},
        origin="http://emulator.test",
    )
    created = await emulator.call("create_tool_task", create)
    task_id = created.payload["data"]["task_id"]
    clock.advance(1)
    query = ApiRequest(TEST_KEY, "GET", b"", {"task_id": task_id}, "http://emulator.test")
    answered = await emulator.call("query_tool_task_status", query)
    assert answered.payload["data"]["status"] == 1
    assert answered.payload["data"]["output_urls"] == [f"http://emulator.test/files/{task_id}.mp4"]
    stats = emulator.stats()
    assert stats["tasks_created"] == 1 and stats["running"] == {TEST_KEY: 0}
    assert stats["requests"] == {
        "create_tool_task": {"200": 1},
        "query_tool_task_status": {"200": 1},
    }
    video = emulator.video(f"{task_id}.mp4", {}, "GET", {})
    assert video.status == 200 and not video.cut
    assert emulator.stats()["requests"]["files"] == {"200": 1}
