"""The writers of the read side's proof (tests/reliability/test_read_side_proof.py):
processes that append to account logs, one transaction in five rolled back,
some held open, some in the T2-first interleaving; each counts what it did.

No model is imported at module level: spawned writers import this module
before they call django.setup().
"""

from __future__ import annotations

import dataclasses
import os
import queue
import random
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, TypeVar

from django.db import connection

T = TypeVar("T")
ROLLBACK_SHARE = 0.2


@dataclasses.dataclass(frozen=True)
class WriterConfig:
    worker: int
    seconds: float
    seed: int
    shared: list[str]  # logs every writer appends to (ConcurrentAppend)
    hold: float  # seconds a held transaction stays open
    hold_every: tuple[float, float]  # seconds between holds, at random
    interleave: bool  # the T2-first interleaving (PostgreSQL)
    pause: float  # at most this many seconds between transactions, at random


class _Rollback(Exception):
    pass


class Session:
    """A thread with a database connection of its own, running steps on
    demand: the second transaction of the T2-first interleaving."""

    def __init__(self) -> None:
        self._steps: queue.Queue[tuple[Callable[[], Any], Future[Any]] | None] = (
            queue.Queue()
        )
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        from django.db import connections

        try:
            while (item := self._steps.get()) is not None:
                step, future = item
                try:
                    future.set_result(step())
                except BaseException as e:
                    future.set_exception(e)
        finally:
            connections.close_all()

    def do(self, step: Callable[[], T]) -> T:
        future: Future[T] = Future()
        self._steps.put((step, future))
        return future.result(timeout=60)

    def close(self) -> None:
        self._steps.put(None)
        self._thread.join(60)


class Writer:
    """One writer process's transactions, counted by what they did."""

    def __init__(self, config: WriterConfig) -> None:
        self.config = config
        self.rng = random.Random(config.seed)
        self.counts: Counter[str] = Counter()
        self.next: dict[uuid.UUID, int] = {}  # own logs: the next index
        self.shared = [uuid.UUID(x) for x in config.shared]
        # (log, index, T1's txid, T2's txid) of each committed T2-first append
        self.interleaved: list[tuple[str, int, int, int]] = []
        self.amount = config.worker * 10**6

    def deposit(self) -> Any:
        from tests.domain import Deposited

        self.amount += 1
        return Deposited(self.amount)

    def rollback(self) -> bool:
        return self.rng.random() < ROLLBACK_SHARE

    def run(self) -> dict[str, Any]:
        from django.db import OperationalError

        began = time.time()
        deadline = time.monotonic() + self.config.seconds
        next_hold = time.monotonic() + self.rng.uniform(*self.config.hold_every)
        session = Session() if self.config.interleave else None
        try:
            while (now := time.monotonic()) < deadline:
                try:
                    if len(self.next) < 2 or self.rng.random() < 0.05:
                        self.create()
                    elif now >= next_hold and now + self.config.hold < deadline:
                        self.hold()
                        next_hold = now + self.rng.uniform(*self.config.hold_every)
                    elif session is not None and self.rng.random() < 0.08:
                        self.interleave(session)
                    elif self.rng.random() < 0.1:
                        self.append_shared()
                    else:
                        self.append_own()
                except OperationalError:  # SQLite: "database is locked"
                    self.counts["locked"] += 1
                time.sleep(self.rng.uniform(0, self.config.pause))
        finally:
            if session is not None:
                session.close()
        return {
            "counts": dict(self.counts),
            "interleaved": self.interleaved,
            "began": began,
            "ended": time.time(),
        }

    def transaction(self, kind: str, work: Callable[[], None], hold: float = 0) -> bool:
        """Run ``work`` in a transaction, held open ``hold`` s, rolled back
        one time in five; whether it committed."""
        from django.db import transaction

        rolled_back = self.rollback()
        try:
            with transaction.atomic():
                work()
                if hold:
                    time.sleep(hold)
                if rolled_back:
                    raise _Rollback
        except _Rollback:
            self.counts[f"{kind} rolled back"] += 1
            return False
        self.counts[f"{kind} committed"] += 1
        return True

    def create(self) -> None:
        from django_eventlog import Log
        from tests.domain import Opened

        created: list[uuid.UUID] = []

        def work() -> None:
            state = Log.objects.create_log(
                Opened(f"writer {self.config.worker}"), kind="account"
            )
            created.append(state.log_id)

        if self.transaction("create", work):
            self.next[created[0]] = 1

    def append_own(self) -> None:
        from django_eventlog import Log, LogState

        logs = self.rng.sample(sorted(self.next), min(len(self.next), 2))
        pending = dict(self.next)

        def work() -> None:
            for log_id in logs:
                for _ in range(self.rng.randint(1, 2)):
                    state = LogState(log_id, pending[log_id])
                    pending[log_id] = Log.objects.append(
                        state, self.deposit()
                    ).next_index

        if self.transaction("append", work):
            self.next = pending

    def append_shared(self) -> None:
        from django_eventlog import ConcurrentAppend, Event, Log, LogState

        log_id = self.rng.choice(self.shared)

        def work() -> None:
            index = Event.objects.filter(log_id=log_id).count()
            Log.objects.append(LogState(log_id, index), self.deposit())

        try:
            self.transaction("shared", work)
        except ConcurrentAppend:
            self.counts["shared ConcurrentAppend"] += 1

    def hold(self) -> None:
        from django_eventlog import Log, LogState

        log_id = self.rng.choice(sorted(self.next))
        index = self.next[log_id]

        def work() -> None:
            Log.objects.append(LogState(log_id, index), self.deposit())

        if self.transaction("hold", work, hold=self.config.hold):
            self.next[log_id] = index + 1

    def interleave(self, session: Session) -> None:
        """T2 obtains its transaction id first (by another write), T1 appends
        index n and commits, T2 appends index n+1."""
        from django.db import transaction

        from django_eventlog import Log, LogState

        log_id, other = self.rng.sample(sorted(self.next), 2)
        n, m = self.next[log_id], self.next[other]
        atomic = transaction.atomic()
        session.do(atomic.__enter__)
        try:
            session.do(lambda: Log.objects.append(LogState(other, m), self.deposit()))
            t2 = session.do(txid)
            with transaction.atomic():  # T1
                Log.objects.append(LogState(log_id, n), self.deposit())
                t1 = txid()
            self.counts["interleave T1 committed"] += 1
            self.next[log_id] = n + 1
            session.do(
                lambda: Log.objects.append(LogState(log_id, n + 1), self.deposit())
            )
            if self.rollback():
                raise _Rollback
        except BaseException as e:
            failure = e
            session.do(
                lambda: atomic.__exit__(type(failure), failure, failure.__traceback__)
            )
            if not isinstance(failure, _Rollback):
                raise
            self.counts["interleave T2 rolled back"] += 1
            return
        session.do(lambda: atomic.__exit__(None, None, None))
        self.counts["interleave T2 committed"] += 1
        self.next[log_id], self.next[other] = n + 2, m + 1
        self.interleaved.append((str(log_id), n + 1, t1, t2))


def txid() -> int:
    """This transaction's id (PostgreSQL), which it already has."""

    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_current_xact_id_if_assigned()::text::bigint")
        return int(cursor.fetchone()[0])


def write(config: WriterConfig) -> dict[str, Any]:
    """A writer process's work (run in a DjangoPool process), at a lower CPU
    priority than the runners: on a machine of few cores they keep up, and
    wait at the horizon while a transaction is held open."""
    os.nice(10)
    return Writer(config).run()
