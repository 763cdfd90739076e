"""A create that waiting cannot settle is final for that create only, not for its job."""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

from batchkling.api.client import SjinnClient
from batchkling.ledger import Ledger
from batchkling.reconcile.match import Reconciliation, in_doubt_windows
from batchkling.run.settle import Settler

FP = "f" * 64


def _reconciliation(waiting: tuple[str, ...]) -> Reconciliation:
    return Reconciliation(
        adopted=(), not_created=(), ambiguous=(), waiting=waiting, orphans=(), settled=0
    )


def test_a_job_sent_again_after_a_final_create_is_settled_anew(tmp_path: Path) -> None:
    """Its first create final, then proved never created and sent again: it waits again."""
    stamps = iter(f"2026-11-24T03:00:{s:02d}.000000Z" for s in range(60))
    with Ledger.open(tmp_path, now=lambda: next(stamps)) as ledger:
        ledger.append_sync("run_started", None, pid=1)
        ledger.append_sync("intent", "s01", credits=1000, fingerprint=FP)
        ledger.append_sync("in_doubt", "s01", error="lost")
        client = cast(SjinnClient, cast(Any, None))  # the verdicts read no usage
        settler = Settler(ledger, client, settle=0.1, jobs={"s01"})
        assert settler.waiting()
        ripe = in_doubt_windows(ledger.state)
        settled = settler._verdicts(_reconciliation(("s01",)), ripe)
        assert settled.final == ("s01",)
        assert not settler.waiting()  # this create will not be settled by waiting
        ledger.append_sync("not_created", "s01", reason="proved")
        ledger.append_sync("intent", "s01", credits=1000, fingerprint=FP, reason="not-created")
        ledger.append_sync("in_doubt", "s01", error="lost again")
        assert settler.waiting()  # the new create is in doubt anew, and may be settled
