"""Credits per job, totals per mode, the budget check and the change that fits."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from batchkling.cost import (
    CostPlan,
    cheapest_fit,
    check_budget,
    fit_hint,
    plan,
    plan_json,
    total_credits,
)
from batchkling.errors import BudgetError
from batchkling.model import RATES, Job, Shot

__all__: list[str] = []


def job(key: str, duration: float = 5, mode: str = "standard", take: int = 1) -> Job:
    shot_id = key.split("#")[0]
    shot = Shot(
        id=shot_id,
        prompt="p",
        image="https://x.example.com/a.png",
        duration=duration,
        model_mode=mode,
    )
    return Job(key=key, shot=shot, take=take)


@pytest.mark.parametrize(
    ("duration", "mode", "credits"),
    [(5, "standard", 1000), (5, "pro", 1500), (10, "standard", 2000), (10, "pro", 3000),
     (15, "standard", 3000), (15, "pro", 4500), (7.5, "standard", 1600), (3.01, "pro", 1200)],
)  # fmt: skip
def test_credits_per_job_match_the_price_list(duration: float, mode: str, credits: int) -> None:
    """Credits are the billed seconds (rounded up) times 200 (standard) or 300 (pro)."""
    (row,) = plan([job("a", duration, mode)], None).rows
    assert (row.credits, row.seconds, row.duration) == (credits, math.ceil(duration), duration)


def test_totals_per_mode_and_headroom() -> None:
    """Totals are given per mode and overall, with the headroom left in the budget."""
    cost = plan([job("a", 5), job("b#1", 10, "pro"), job("b#2", 10, "pro")], 10_000)
    assert [(t.mode, t.jobs, t.seconds, t.credits) for t in cost.totals] == [
        ("standard", 1, 5, 1000),
        ("pro", 2, 20, 6000),
    ]
    assert (cost.total, cost.budget, cost.within_budget, cost.headroom, cost.over_by) == (
        7000,
        10_000,
        True,
        3000,
        0,
    )


def test_budget_edges() -> None:
    """A total equal to the budget fits; no budget always fits; one credit over does not."""
    jobs = [job("a", 5)]
    assert plan(jobs, 1000).within_budget
    assert plan(jobs, None).within_budget and plan(jobs, None).headroom is None
    over = plan(jobs, 999)
    assert (over.within_budget, over.headroom, over.over_by) == (False, -1, 1)


def test_fit_switches_the_fewest_longest_pro_jobs() -> None:
    """Over budget, the hint switches the longest pro jobs to standard, as few as fit."""
    jobs = [job("a", 5, "pro"), job("b", 15, "pro"), job("c", 10, "pro"), job("d", 5)]
    cost = plan(jobs, 8000)  # 1500 + 4500 + 3000 + 1000 = 10,000: over by 2,000
    fit = cheapest_fit(cost)
    assert fit is not None
    assert (fit.to_standard, fit.leave_out, fit.total) == (("b", "c"), (), 7500)
    assert fit_hint(cost) == (
        "To fit, switch the 2 longest pro jobs to standard (b, c): 7,500 credits; "
        "or raise the budget to 10,000 credits."
    )


def test_fit_leaves_out_jobs_when_switching_is_not_enough() -> None:
    """When all-standard is still over, the dearest jobs are left out too."""
    jobs = [job("a", 10, "pro"), job("b", 15), job("c", 5)]
    cost = plan(jobs, 3500)  # all standard: 2000 + 3000 + 1000 = 6000
    fit = cheapest_fit(cost)
    assert fit is not None
    assert (fit.to_standard, fit.leave_out, fit.total) == (("a",), ("b",), 3000)
    assert fit_hint(cost) == (
        "To fit, switch the only pro job to standard (a) and leave out the most expensive job "
        "(b): 3,000 credits; or raise the budget to 7,000 credits."
    )


def test_fit_when_nothing_fits() -> None:
    """A budget below the cheapest job says so instead of suggesting to drop everything."""
    cost = plan([job("a"), job("b")], 0)
    assert fit_hint(cost) == (
        "No job fits a budget of 0 credits; raise it to 2,000 credits to render every job."
    )


def test_fit_lists_at_most_five_keys() -> None:
    """Long lists of jobs are shortened in the hint."""
    cost = plan([job(f"s{i}", 10, "pro") for i in range(8)], 8 * 3000 - 7 * 1000)
    hint = fit_hint(cost)
    assert hint is not None and "all 8 pro jobs" not in hint
    assert "the 7 longest pro jobs to standard (s0, s1, s2, s3, s4 and 2 more)" in hint


def test_no_hint_within_budget() -> None:
    """Within budget there is nothing to change."""
    cost = plan([job("a")], 5000)
    assert cheapest_fit(cost) is None and fit_hint(cost) is None
    check_budget(cost)  # does not raise


def test_check_budget_raises_with_figures() -> None:
    """Over budget raises BudgetError (exit 3) saying by how much and what would fit."""
    cost = plan([job("a", 10, "pro")], 2500)
    with pytest.raises(BudgetError) as info:
        check_budget(cost)
    err = info.value
    assert (err.needed, err.budget, err.exit_code) == (3000, 2500, 3)
    assert (
        err.message == "The plan needs 3,000 credits but the budget is 2,500: over by 500 credits."
    )
    assert err.hint is not None and "switch the only pro job to standard (a)" in err.hint


def test_plan_json_shape() -> None:
    """The JSON form lists every job with shot, mode, duration and credits, then the totals."""
    cost = plan([job("a#1", 7.5, "pro", 1), job("a#2", 7.5, "pro", 2)], None)
    assert plan_json(cost) == {
        "jobs": [
            {"job": "a#1", "shot": "a", "mode": "pro", "duration": 7.5, "credits": 2400},
            {"job": "a#2", "shot": "a", "mode": "pro", "duration": 7.5, "credits": 2400},
        ],
        "total_credits": 4800,
        "budget": None,
        "within_budget": True,
    }


# ---- properties ----------------------------------------------------------------------------------

_jobs = st.lists(
    st.tuples(
        st.one_of(st.integers(3, 15), st.floats(3, 15, allow_nan=False)),
        st.sampled_from(sorted(RATES)),
    ),
    max_size=30,
).map(lambda specs: [job(f"j{i}", d, m) for i, (d, m) in enumerate(specs)])


@given(_jobs, st.one_of(st.none(), st.integers(0, 200_000)))
def test_totals_are_the_sum_of_their_parts(jobs: list[Job], budget: int | None) -> None:
    """The total equals the sum of the rows and of the per-mode totals; headroom is consistent."""
    cost = plan(jobs, budget)
    assert cost.total == sum(r.credits for r in cost.rows) == sum(t.credits for t in cost.totals)
    assert cost.total == total_credits(jobs)
    assert sum(t.jobs for t in cost.totals) == len(jobs) == len(cost.rows)
    assert all(
        r.credits == r.seconds * RATES[r.mode] >= r.duration * RATES[r.mode] for r in cost.rows
    )
    assert all(r.credits == j.credits for r, j in zip(cost.rows, jobs, strict=True))
    if budget is None:
        assert cost.within_budget and cost.headroom is None
    else:
        assert cost.headroom == budget - cost.total
        assert cost.within_budget == (cost.total <= budget)


def _apply(cost: CostPlan, to_standard: tuple[str, ...], leave_out: tuple[str, ...]) -> int:
    total = 0
    for r in cost.rows:
        if r.job in leave_out:
            continue
        total += r.seconds * RATES["standard" if r.job in to_standard else r.mode]
    return total


@given(_jobs, st.integers(0, 100_000))
def test_the_suggested_change_fits_and_is_minimal(jobs: list[Job], budget: int) -> None:
    """Applying the suggestion fits the budget; one switch or one omission fewer would not."""
    cost = plan(jobs, budget)
    fit = cheapest_fit(cost)
    if cost.within_budget:
        assert fit is None
        return
    assert fit is not None
    assert _apply(cost, fit.to_standard, fit.leave_out) == fit.total <= budget
    if fit.leave_out:
        pro = tuple(r.job for r in cost.rows if r.mode == "pro")
        assert set(fit.to_standard) == set(pro)
        assert _apply(cost, fit.to_standard, fit.leave_out[:-1]) > budget
    else:
        assert _apply(cost, fit.to_standard[:-1], ()) > budget
