"""Building the runner's units (submit, follow) on a ledger and an in-process emulator."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from batchkling.api.client import SjinnClient, make_http_client
from batchkling.api.gate import RequestGate
from batchkling.ledger import Ledger
from batchkling.model import Job, Shot
from batchkling.run.follow import Follower
from batchkling.run.options import Progress, RunOptions
from batchkling.run.submit import Submitter
from batchkling.run.writer import RunWriter
from batchkling.schedule import Rate
from tests.emulator_fixtures import InProcessEmulator

__all__ = ["Units", "job", "units"]

FAST = RunOptions(poll_min=0.01, poll_max=0.05, backoff_base=0.001, doubt_gap=0.0)


def job(key: str = "s1", prompt: str = "a cat turns slowly") -> Job:
    """A standard 5 s job (1000 credits)."""
    return Job(key=key, shot=Shot(id=key, prompt=prompt, image="https://x/i.png"))


@dataclass
class Units:
    """A submitter and a follower sharing one ledger, and what they reported."""

    ledger: Ledger
    client: SjinnClient
    writer: RunWriter
    submitter: Submitter
    follower: Follower
    progress: list[Progress] = field(default_factory=list)
    allowed: list[bool] = field(default_factory=lambda: [True])

    def events(self, key: str | None = None) -> list[str]:
        """The ledger's event names so far, of one job or all."""
        lines = (self.ledger.run_dir / "ledger.jsonl").read_text().splitlines()
        parsed = [json.loads(line) for line in lines]
        return [e["event"] for e in parsed if key is None or e["job"] == key]

    def messages(self) -> list[str]:
        """Every message sent with a progress snapshot."""
        return [p.message for p in self.progress if p.message is not None]


@asynccontextmanager
async def units(
    emu: InProcessEmulator,
    run_dir: Path,
    jobs: list[Job],
    *,
    base_url: str | None = None,
    budget: int | None = None,
    **options: Any,
) -> AsyncIterator[Units]:
    """Units over ``emu`` (or the real network at ``base_url``), on a ledger in ``run_dir``."""
    opt = replace(FAST, **options)
    transport = emu.transport if base_url is None else None
    with Ledger.open(run_dir) as ledger:
        async with make_http_client(transport=transport) as http:
            client = SjinnClient(
                http,
                base_url=base_url or emu.base_url,
                api_key="test-key",
                gate=RequestGate(Rate(500, 1.0)),
            )
            progress: list[Progress] = []
            writer = RunWriter(ledger, jobs, budget=budget, progress=progress.append)
            allowed = [True]
            submitter = Submitter(
                writer=writer,
                client=client,
                options=opt,
                budget=budget,
                may_create=lambda: allowed[0],
            )
            follower = Follower(writer=writer, client=client, options=opt)
            yield Units(ledger, client, writer, submitter, follower, progress, allowed)
