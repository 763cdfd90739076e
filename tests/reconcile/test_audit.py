"""The audit of a run directory's charges (pure)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

from batchkling.reconcile.audit import audit, audit_json, audit_span
from batchkling.reconcile.match import Charge, Listing
from batchkling.state import fold

T0 = datetime(2026, 11, 24, 3, 0, 0, tzinfo=timezone.utc)


def iso(at: float) -> str:
    return (T0 + timedelta(seconds=at)).isoformat().replace("+00:00", "Z")


def ev(event: str, job: str | None, at: float, **f: Any) -> dict[str, Any]:
    return {"ts": iso(at), "event": event, "job": job, **f}


def created(job: str, task: str, at: float) -> list[dict[str, Any]]:
    return [
        ev("intent", job, at, credits=1000, fingerprint="f" * 64),
        ev("created", job, at + 0.1, task_id=task),
    ]


def charge(task: str, at: float, credits: float = 1000) -> Charge:
    return Charge(
        id=f"u-{task}-{credits}", task_id=task, credits=credits, at=T0 + timedelta(seconds=at)
    )


RUN = [ev("run_started", None, 0, pid=1), ev("run_ended", None, 100, exit_status=0, api_calls=9)]


def _audit(events: list[dict[str, Any]], charges: list[Charge], **kw: Any) -> Any:
    st = fold(RUN[:1] + events + RUN[1:])
    span = audit_span(st, settle=120)
    assert span is not None
    listing = Listing(charges=tuple(charges), since=span[0], read_at=span[1])
    return audit(st, listing, span=span, elsewhere=kw.get("elsewhere", {}))


def test_every_charge_settled_is_clean() -> None:
    """Each job's task charged once, nothing else: clean, and the totals agree."""
    a = _audit(created("a", "ta", 1) + created("b", "tb", 2), [charge("ta", 1), charge("tb", 2)])
    assert a.clean
    assert a.charged == 2000 and a.committed == 2000
    assert {j.job: j.verdict for j in a.jobs} == {"a": "charged once", "b": "charged once"}


def test_an_unknown_charge_in_the_span_is_unexplained() -> None:
    """A charge no run directory knows (a lost create paid and sent again) fails the audit."""
    a = _audit(created("a", "ta", 50), [charge("ta", 50), charge("tx", 10)])
    assert not a.clean
    assert [c.task_id for c in a.unexplained] == ["tx"]
    assert audit_json(a)["unexplained"][0]["task_id"] == "tx"


def test_charges_of_another_run_directory_are_explained_by_the_journal() -> None:
    """A charge the account journal gives to another run directory is explained."""
    a = _audit(created("a", "ta", 1), [charge("ta", 1), charge("tz", 5)], elsewhere={"tz": "/r/b"})
    assert a.clean
    assert [(c.task_id, d) for c, d in a.elsewhere] == [("tz", "/r/b")]


def test_a_task_charged_twice_fails_and_refunds_are_netted() -> None:
    """Two charges of one task fail the audit; a refund lowers the net total."""
    twice = _audit(created("a", "ta", 1), [charge("ta", 1), Charge("u2", "ta", 1000, T0)])
    assert not twice.clean and twice.jobs[0].verdict == "charged 2 times"
    refunded = _audit(created("a", "ta", 1), [charge("ta", 1), charge("ta", 2, -1000)])
    assert refunded.clean and refunded.charged == 0


def test_charges_outside_the_span_or_of_other_tools_are_not_ours_to_explain() -> None:
    """Charges long before the runs, or of another tool, are left out."""
    other = Charge("o", "to", 500, T0 + timedelta(seconds=5), task_type="tool_other")
    a = _audit(created("a", "ta", 1), [charge("ta", 1), charge("old", -5000), other])
    assert a.clean and a.unexplained == ()


def test_an_incomplete_read_is_never_clean() -> None:
    """A usage read with unreadable records cannot vouch for anything."""
    st = fold(RUN[:1] + created("a", "ta", 1) + RUN[1:])
    span = audit_span(st, settle=120)
    assert span is not None
    listing = Listing(charges=(charge("ta", 1),), since=span[0], read_at=span[1], unparsed=2)
    a = audit(st, listing, span=span, elsewhere={})
    assert not a.clean and a.problem is not None and "2 records" in a.problem
