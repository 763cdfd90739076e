"""The emulator's business logic: accounts, tasks, billing, refunds. No HTTP here.

A task's status is computed from the clock (created_at, finish_at), never by a
timer, so thousands of tasks cost nothing and tests can move time by hand. The
few things that must happen *when* a task finishes (its account's running
count drops; a failed task may be refunded) are done by ``advance(now)``, which
every request calls first: it pops the finished tasks from a heap in finish
order, so the per-key high-water mark of running tasks is exact.

Every change is also handed to ``journal`` as a small JSON event; replaying
those events (``replay``) rebuilds the same state after a restart.
"""

from __future__ import annotations

import heapq
import random
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, fields
from typing import Any

from batchkling.emulator.config import EmulatorConfig
from batchkling.emulator.inputs import InvalidInput, parse_create
from batchkling.emulator.usage import UsageBook, UsageRecord, api_number, format_time
from batchkling.model import USAGE_TASK_TYPE

__all__ = [
    "HTTP_STATUS",
    "INSUFFICIENT_BALANCE",
    "INVALID_INPUT",
    "INVALID_KEY",
    "MEMBERSHIP_REQUIRED",
    "NOT_FOUND",
    "UNLIMITED_BALANCE",
    "Account",
    "EmulatorState",
    "Refused",
    "Task",
    "to_ms",
]

INVALID_INPUT = 400
INSUFFICIENT_BALANCE = 100
MEMBERSHIP_REQUIRED = 101
INVALID_KEY = 401
NOT_FOUND = 404
TOO_MANY_RUNNING = 429
# The HTTP status of each error code under --errors-as-http.
HTTP_STATUS = {
    INVALID_INPUT: 400,
    INVALID_KEY: 401,
    INSUFFICIENT_BALANCE: 402,
    MEMBERSHIP_REQUIRED: 403,
    NOT_FOUND: 404,
    TOO_MANY_RUNNING: 429,
}
# What an unlimited account shows as its balance: large, and still a number.
UNLIMITED_BALANCE = 1_000_000_000

FAILURE_REASONS = (
    "generation failed: the image was rejected by content moderation",
    "generation failed: internal error, please try again",
    "generation failed: the model timed out",
)

Journal = Callable[[dict[str, Any]], None]


def to_ms(now: float) -> int:
    """Clock seconds as the whole milliseconds records carry."""
    return int(now * 1000)


class Refused(Exception):
    """A functional error: ``code`` and ``message`` go into the JSON wrapper.

    ``always_http`` marks refusals that are answered with ``http_status`` even
    when functional errors are answered as HTTP 200 (a 429 for too many running
    tasks, whose shape the reference does not know).
    """

    def __init__(
        self,
        code: int,
        message: str,
        *,
        always_http: bool = False,
        http_status: int | None = None,
        retry_after: float | None = None,
        reason: str = "",
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.http_status = http_status or HTTP_STATUS.get(code, 400)
        self.always_http = always_http
        self.retry_after = retry_after
        self.reason = reason  # names an enforced limit, for the counters


@dataclass
class Task:
    """One generation task."""

    id: str
    key: str
    input: dict[str, Any]
    duration: float
    model_mode: str
    cost: float
    created_at: float
    finish_at: float
    failed: bool
    error: str | None
    finished: bool = False  # its finish has been processed by advance()

    def status(self, now: float, config: EmulatorConfig) -> int:
        """The status code a query at ``now`` answers."""
        if now >= self.finish_at:
            return config.failed_status if self.failed else 1
        halfway = self.created_at + (self.finish_at - self.created_at) / 2
        if config.extra_status is not None and now >= halfway:
            return config.extra_status
        return 0

    def to_json(self) -> dict[str, Any]:
        """Everything needed to rebuild the task."""
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Task:
        """The inverse of ``to_json``."""
        return cls(**data)


@dataclass
class Account:
    """What the emulator knows of one API key."""

    key: str
    balance: float | None
    running: int = 0
    max_running: int = 0
    tasks_created: int = 0
    charged: float = 0.0
    refunded: float = 0.0
    book: UsageBook = field(default_factory=UsageBook)

    def shown_balance(self) -> float:
        """The balance the account endpoint shows."""
        if self.balance is not None:
            return self.balance
        return UNLIMITED_BALANCE - self.charged + self.refunded


class EmulatorState:
    """Tasks and accounts, changed only through these methods."""

    def __init__(self, config: EmulatorConfig, *, journal: Journal | None = None) -> None:
        self.config = config
        self._journal = journal
        self._rng = random.Random(config.seed)
        self.tasks: dict[str, Task] = {}
        self.accounts: dict[str, Account] = {}
        self._heap: list[tuple[float, int, str]] = []
        self._seq = 0

    def _next_seq(self) -> int:
        self._seq += 1
        return self._seq

    def _log(self, event: dict[str, Any]) -> None:
        if self._journal is not None:
            self._journal(event)

    def account(self, key: str) -> Account:
        """The account of ``key``, opened with the configured balance on first use."""
        account = self.accounts.get(key)
        if account is None:
            account = self.accounts[key] = Account(key=key, balance=self.config.balance)
        return account

    # -- time -------------------------------------------------------------

    def advance(self, now: float) -> None:
        """Process every task that finished at or before ``now``, in finish order."""
        heap = self._heap
        while heap and heap[0][0] <= now:
            _, _, task_id = heapq.heappop(heap)
            task = self.tasks.get(task_id)
            if task is None or task.finished:
                continue  # reset, or already finished by a replayed event
            self._finish(task)
            self._log({"e": "done", "id": task.id})
            if task.failed and self.config.refund_failed:
                self._charge(task.key, -task.cost, task.id, to_ms(task.finish_at))

    def _finish(self, task: Task) -> None:
        task.finished = True
        self.account(task.key).running -= 1

    def _start(self, task: Task) -> None:
        self.tasks[task.id] = task
        account = self.account(task.key)
        account.tasks_created += 1
        if not task.finished:
            account.running += 1
            account.max_running = max(account.max_running, account.running)
            heapq.heappush(self._heap, (task.finish_at, self._next_seq(), task.id))

    def _charge(
        self,
        key: str,
        cost: float,
        task_id: str | None,
        create_ms: int,
        task_type: str = USAGE_TASK_TYPE,
    ) -> UsageRecord:
        record = UsageRecord(
            id=str(uuid.uuid4()),
            key=key,
            task_type=task_type,
            task_id=task_id,
            cost_credits=cost,
            create_ms=create_ms,
            seq=self._next_seq(),
        )
        self._apply(record)
        if self._journal is not None:  # building the event costs more than the charge
            self._journal({"e": "usage", "record": record.to_json()})
        return record

    def _apply(self, record: UsageRecord) -> None:
        account = self.account(record.key)
        account.book.add(record)
        if account.balance is not None:
            account.balance -= record.cost_credits
        if record.cost_credits >= 0:
            account.charged += record.cost_credits
        else:
            account.refunded -= record.cost_credits

    # -- the API ----------------------------------------------------------

    def create(self, key: str, body: Any, now: float) -> Task:
        """Create and charge a task, or raise Refused with the documented error."""
        config = self.config
        if config.no_membership:
            raise Refused(MEMBERSHIP_REQUIRED, "membership required: subscribe to create tasks")
        try:
            request = parse_create(body)
        except InvalidInput as exc:
            raise Refused(INVALID_INPUT, exc.message) from None
        account = self.account(key)
        if config.max_running is not None and account.running >= config.max_running:
            self._refuse_running(key, now)
        cost = request.cost
        if account.balance is not None and account.balance < cost:
            raise Refused(
                INSUFFICIENT_BALANCE,
                f"insufficient balance: {_fmt(cost)} credits needed, "
                f"{_fmt(account.balance)} available",
            )
        low, high = config.gen_seconds
        gen = self._rng.uniform(low, high)
        failed = self._rng.random() < config.fail_rate
        task = Task(
            id=str(uuid.uuid4()),
            key=key,
            input=request.raw_input,
            duration=request.duration,
            model_mode=request.model_mode,
            cost=cost,
            created_at=now,
            finish_at=now + gen,
            failed=failed,
            error=self._rng.choice(FAILURE_REASONS) if failed else None,
        )
        self._start(task)
        if self._journal is not None:
            self._journal({"e": "task", "task": task.to_json()})
        self._charge(key, cost, task.id, to_ms(now))
        return task

    def _refuse_running(self, key: str, now: float) -> None:
        config = self.config
        message = f"too many running tasks: at most {config.max_running} at once"
        soonest = min((f for f, _, t in self._heap if self.tasks[t].key == key), default=now)
        wait = max(soonest - now, 0.0)
        if config.max_running_code is None:
            raise Refused(
                TOO_MANY_RUNNING, message, always_http=True, retry_after=wait, reason="max_running"
            )
        raise Refused(
            config.max_running_code,
            message,
            http_status=429,
            retry_after=wait,
            reason="max_running",
        )

    def find(self, key: str, task_id: Any) -> Task:
        """The task ``task_id`` of ``key``; another account's task is not found either."""
        if not isinstance(task_id, str) or not task_id:
            raise Refused(INVALID_INPUT, "task_id is required")
        task = self.tasks.get(task_id)
        if task is None or task.key != key:
            raise Refused(NOT_FOUND, "task not found")
        return task

    # -- administration ---------------------------------------------------

    def add_charge(
        self, key: str, cost: float, task_id: str | None, create_ms: int, task_type: str
    ) -> UsageRecord:
        """Record a charge the client never asked for (an orphan), as the real ledger could."""
        return self._charge(key, cost, task_id, create_ms, task_type)

    def set_balance(self, key: str, balance: float | None) -> None:
        """Set one key's balance (None: unlimited)."""
        self.account(key).balance = balance
        self._log({"e": "balance", "key": key, "balance": balance})

    def reset(self) -> None:
        """Forget every task, record and account."""
        self._clear()
        self._log({"e": "reset"})

    def _clear(self) -> None:
        self.tasks.clear()
        self.accounts.clear()
        self._heap.clear()

    def replay(self, events: Iterable[dict[str, Any]]) -> None:
        """Rebuild the state from journal events, without journaling them again."""
        journal, self._journal = self._journal, None
        try:
            for event in events:
                kind = event.get("e")
                if kind == "task":
                    self._start(Task.from_json(event["task"]))
                elif kind == "done":
                    task = self.tasks.get(event["id"])
                    if task is not None and not task.finished:
                        self._finish(task)
                elif kind == "usage":
                    record = UsageRecord.from_json(event["record"])
                    self._seq = max(self._seq, record.seq)
                    self._apply(record)
                elif kind == "balance":
                    self.account(event["key"]).balance = event["balance"]
                elif kind == "reset":
                    self._clear()
        finally:
            self._journal = journal

    # -- for the stats endpoint ---------------------------------------------

    def tasks_json(self, now: float) -> list[dict[str, Any]]:
        """Every task with its inputs and current status, oldest first."""
        return [
            {
                "id": t.id,
                "task_id": t.id,
                "key": t.key,
                "input": t.input,
                "duration": t.duration,
                "model_mode": t.model_mode,
                "cost_credits": api_number(t.cost),
                "created_at": format_time(to_ms(t.created_at)),
                "finish_at": format_time(to_ms(t.finish_at)),
                "failed": t.failed,
                "status": t.status(now, self.config),
            }
            for t in self.tasks.values()
        ]


def _fmt(value: float) -> str:
    return f"{api_number(value):,}"
