"""The gate sends creates before polls, ages polls so they are never starved, and sizes the pool."""

from __future__ import annotations

import itertools
from collections.abc import Callable

import anyio
import pytest

from batchkling.api.client import (
    API_MAX_CONNECTIONS,
    API_POOL_CEILING,
    SjinnClient,
    make_http_client,
    make_transport,
    pool_size,
)
from batchkling.api.gate import GateQueue, Priority, RequestGate
from batchkling.schedule import Rate
from tests.emulator_fixtures import FakeClock, LiveEmulator


def _order(queue: GateQueue, clock: FakeClock, n: int, step: float) -> list[str]:
    """Take ``n`` slots ``step`` seconds apart; the kind of each, with its place in line."""
    out = []
    for _ in range(n):
        head = queue.head(clock())
        assert head is not None
        queue.take(head)
        out.append(f"{head.priority.value}{head.seq}")
        clock.advance(step)
    return out


def test_a_create_goes_before_the_polls_waiting_already() -> None:
    """Three polls wait, then a create comes: the create gets the next slot."""
    clock = FakeClock()
    queue = GateQueue(aging=5.0)
    for _ in range(3):
        queue.add(Priority.POLL, clock())
    clock.advance(0.1)
    queue.add(Priority.CREATE, clock())
    assert _order(queue, clock, 4, 0.1) == ["create3", "poll0", "poll1", "poll2"]


def test_creates_keep_their_order_and_polls_theirs() -> None:
    """Among creates and among polls, first come is first served."""
    clock = FakeClock()
    queue = GateQueue(aging=5.0)
    for kind in (Priority.POLL, Priority.CREATE, Priority.POLL, Priority.CREATE):
        queue.add(kind, clock())
    assert _order(queue, clock, 4, 0.1) == ["create1", "create3", "poll0", "poll2"]


def test_a_poll_held_back_one_interval_goes_every_other_slot() -> None:
    """Once a poll has waited its aging, creates and due polls take turns: neither starves."""
    clock = FakeClock()
    queue = GateQueue(aging=1.0)
    for _ in range(3):
        queue.add(Priority.POLL, clock())
    clock.advance(1.0)  # every poll is due now
    for _ in range(3):
        queue.add(Priority.CREATE, clock())
    assert _order(queue, clock, 6, 0.1) == [
        "poll0",
        "create3",
        "poll1",
        "create4",
        "poll2",
        "create5",
    ]


def test_a_poll_not_yet_due_waits_for_every_create() -> None:
    """Before its aging, a poll yields to a stream of creates; at its aging it goes."""
    clock = FakeClock()
    queue = GateQueue(aging=1.0)
    queue.add(Priority.POLL, clock())
    for _ in range(20):
        queue.add(Priority.CREATE, clock())
    taken = _order(queue, clock, 12, 0.125)
    assert taken.index("poll0") == 8  # 8 slots of 1/8 s: held back exactly its aging


def test_a_given_up_request_leaves_the_line() -> None:
    """A cancelled wait is removed; the next in line is the head."""
    clock = FakeClock()
    queue = GateQueue()
    create = queue.add(Priority.CREATE, clock())
    poll = queue.add(Priority.POLL, clock())
    queue.remove(create)
    assert queue.head(clock()) is poll and len(queue) == 1


@pytest.mark.anyio
async def test_the_gate_sends_a_late_create_at_the_next_slot() -> None:
    """Ten polls wait behind a slow rate; a create that comes after them goes second."""
    gate = RequestGate(Rate(50, 1.0))
    order: list[str] = []

    async def send(name: str, priority: Priority) -> None:
        await gate.wait(priority)
        order.append(name)

    async with anyio.create_task_group() as tg:
        for i in range(10):
            tg.start_soon(send, f"poll{i}", Priority.POLL)
        await anyio.sleep(0.005)  # every poll is in line (the first one has gone)
        tg.start_soon(send, "create", Priority.CREATE)
    assert order.index("create") <= 1
    assert gate.calls == 11 and gate.waiting == 0


@pytest.mark.anyio
async def test_paced_requests_keep_the_rate_whatever_their_order() -> None:
    """Creates and polls together never go closer than the rate's interval."""
    rate = Rate(100, 1.0)
    gate = RequestGate(rate)
    times: list[float] = []

    async def send(priority: Priority) -> None:
        await gate.wait(priority)
        times.append(anyio.current_time())

    async with anyio.create_task_group() as tg:
        for i in range(20):
            tg.start_soon(send, Priority.CREATE if i % 3 else Priority.POLL)
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert min(gaps) >= rate.interval * 0.95


@pytest.mark.anyio
async def test_a_cancelled_head_hands_the_turn_on() -> None:
    """The head of the line cancelled while it sleeps: the next one still gets its slot."""
    gate = RequestGate(Rate(2, 1.0))
    await gate.wait()  # the next slot is half a second away
    done: list[str] = []

    async def poll() -> None:
        await gate.wait()
        done.append("poll")

    async with anyio.create_task_group() as tg:
        with anyio.move_on_after(0.05):
            await gate.wait(Priority.CREATE)  # head, then cut off
        tg.start_soon(poll)
    assert done == ["poll"] and gate.waiting == 0


def test_the_pool_fits_the_rate_times_the_slowest_answer() -> None:
    """At least 8 connections, rate x latency plus two, in powers of two, at most 64."""
    assert pool_size(2.0, 0.5) == API_MAX_CONNECTIONS
    assert pool_size(16.0, 0.5) == 16
    assert pool_size(40.0, 0.5) == 32
    assert pool_size(40.0, 2.0) == API_POOL_CEILING
    assert pool_size(1000.0, 600.0) == API_POOL_CEILING


@pytest.mark.anyio
async def test_the_client_sizes_its_pool_from_the_rate_and_grows_it_with_slow_answers(
    live_emulator_factory: Callable[..., LiveEmulator],
) -> None:
    """Sized from the rate at start; an answer slower than guessed makes the pool grow."""
    emu = live_emulator_factory(latency=(1.0, 1.0))
    async with make_transport() as pool, make_http_client() as http:
        fast = SjinnClient(
            http,
            base_url=emu.base_url,
            api_key="k",
            gate=RequestGate(Rate(100, 1.0)),
            transport=pool,
        )
        assert pool.size == API_POOL_CEILING  # 100/s at half a second: 52, rounded up
    async with make_transport() as pool, make_http_client() as http:
        client = SjinnClient(
            http,
            base_url=emu.base_url,
            api_key="k",
            gate=RequestGate(Rate(10, 1.0)),
            transport=pool,
        )
        assert pool.size == API_MAX_CONNECTIONS  # 10/s at half a second: 7
        await client.account()  # answered in a second
        assert client.slowest >= 1.0 and pool.size == 16  # 10/s at a second: 12
        assert pool.pools == 2
        await client.account()  # on the new pool; the old one, idle, is closed
        assert pool.pools == 1
    assert fast.slowest == 0.5
