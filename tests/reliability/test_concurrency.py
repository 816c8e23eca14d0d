"""Writers racing on one log, with real threads and real commits (PostgreSQL).

Each thread gets its own database connection (Django connections are
per-thread) and closes it when done, or the test database could not be dropped.
A ``threading.Barrier`` releases the writers together so that their INSERTs
really overlap.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from typing import TypeVar

import pytest
from django.db import connection

from django_eventlog import (
    ConcurrentAppend,
    Decision,
    Event,
    IdempotencyConflict,
    IdempotentReplay,
    Log,
    LogState,
)
from tests.domain import Account, Deposited, Opened

pytestmark = [pytest.mark.postgresql, pytest.mark.django_db(transaction=True)]

WORKERS = 8
ROUNDS = 20
SUCCESSES_PER_WORKER = 10
# A worker that needs more attempts than this is livelocked, not unlucky.
MAX_ATTEMPTS_PER_WORKER = 2000
# Seconds a thread may wait at a barrier or take to finish before the test fails
# (instead of hanging).
TIMEOUT = 60.0

T = TypeVar("T")
Outcome = LogState | Exception


def run_threads(
    count: int,
    work: Callable[[int, threading.Barrier], T],
    action: Callable[[], None] | None = None,
) -> list[T | Exception]:
    """Run ``work(i, barrier)`` in ``count`` threads; return each result or error.

    ``work`` calls ``barrier.wait()`` right before the write it races with;
    ``action`` runs in one of the threads each time all of them reach it.
    Every thread closes its own database connection when it is done.
    """
    barrier = threading.Barrier(count, action=action, timeout=TIMEOUT)
    results: list[T | Exception | None] = [None] * count

    def target(i: int) -> None:
        try:
            results[i] = work(i, barrier)
        except Exception as e:
            barrier.abort()  # do not leave the other threads waiting
            results[i] = e
        finally:
            connection.close()

    threads = [threading.Thread(target=target, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(TIMEOUT)
    assert not any(thread.is_alive() for thread in threads), "a worker hung"
    finished: list[T | Exception] = []
    for result in results:
        assert result is not None
        finished.append(result)
    return finished


def stored_indices(log_id: uuid.UUID) -> list[int]:
    return sorted(Event.objects.filter(log_id=log_id).values_list("index", flat=True))


def open_account() -> LogState:
    state: LogState = Log.objects.create_log(Opened(owner="alice"), kind="account")
    return state


def deposit_amount(round_number: int, worker: int) -> int:
    """A different amount for each round and worker, to tell who won."""
    return 1000 * (round_number + 1) + worker + 1


def test_racing_appends_at_one_index_let_exactly_one_win() -> None:
    log_id = open_account().log_id
    # Before each round, the last thread to reach the barrier reads the log's
    # state; all threads then append with that same state at once. A round
    # starts only after every append of the previous one has returned.
    current: list[LogState] = []

    def read_state() -> None:
        current[:] = [Log.objects.reduce(log_id, Account)]

    def work(worker: int, barrier: threading.Barrier) -> list[Outcome]:
        outcomes: list[Outcome] = []
        for round_number in range(ROUNDS):
            barrier.wait()
            state = current[0]
            event = Deposited(amount=deposit_amount(round_number, worker))
            try:
                new_state: LogState = Log.objects.append(state, event)
                outcomes.append(new_state)
            except ConcurrentAppend as e:
                outcomes.append(e)
        return outcomes

    results = run_threads(WORKERS, work, action=read_state)

    per_worker: list[list[Outcome]] = []
    for result in results:
        assert isinstance(result, list), repr(result)
        assert len(result) == ROUNDS
        per_worker.append(result)
    winners: list[int] = []
    for round_number in range(ROUNDS):
        outcomes = [per_worker[worker][round_number] for worker in range(WORKERS)]
        won = [w for w, o in enumerate(outcomes) if isinstance(o, LogState)]
        assert len(won) == 1, (round_number, outcomes)
        # The log held the Opened event plus one deposit per earlier round.
        assert outcomes[won[0]] == LogState(log_id, round_number + 2)
        for worker, outcome in enumerate(outcomes):
            if worker != won[0]:
                assert isinstance(outcome, ConcurrentAppend), outcome
                assert outcome.log_id == log_id
        winners.append(won[0])

    assert stored_indices(log_id) == list(range(1 + ROUNDS))
    assert Event.objects.filter(log_id=log_id).count() == 1 + ROUNDS
    # Each round's winner's deposit, and nobody else's, is at its index.
    stored = Log.objects.load(log_id, start=1, limit=ROUNDS)
    assert [record.index for record in stored] == list(range(1, 1 + ROUNDS))
    assert [record.event for record in stored] == [
        Deposited(amount=deposit_amount(r, w)) for r, w in enumerate(winners)
    ]
    reduction = Log.objects.reduce(log_id, Account)
    assert reduction.through_index == ROUNDS
    assert reduction.aggregate.indices == list(range(1 + ROUNDS))
    assert reduction.aggregate.balance == sum(
        deposit_amount(r, w) for r, w in enumerate(winners)
    )


def test_free_running_writers_retrying_on_conflict_all_get_their_appends_in() -> None:
    log_id = open_account().log_id

    def work(
        worker: int, barrier: threading.Barrier
    ) -> tuple[list[int], list[ConcurrentAppend]]:
        """Append SUCCESSES_PER_WORKER deposits; return the indices won and the
        ConcurrentAppend errors retried."""
        won: list[int] = []
        conflicts: list[ConcurrentAppend] = []
        barrier.wait()
        for _ in range(MAX_ATTEMPTS_PER_WORKER):
            if len(won) == SUCCESSES_PER_WORKER:
                break
            reduction = Log.objects.reduce(log_id, Account)
            try:
                state = Log.objects.append(reduction, Deposited(amount=worker + 1))
            except ConcurrentAppend as e:
                conflicts.append(e)
            else:
                assert state == LogState(log_id, reduction.next_index + 1)
                won.append(reduction.next_index)
        return won, conflicts

    results = run_threads(WORKERS, work)

    total = WORKERS * SUCCESSES_PER_WORKER
    won_indices: list[int] = []
    conflicts: list[ConcurrentAppend] = []
    for result in results:
        assert isinstance(result, tuple), repr(result)
        won, retried = result
        assert len(won) == SUCCESSES_PER_WORKER
        won_indices.extend(won)
        conflicts.extend(retried)
    # The writers did collide (typically a couple of hundred times in all), so
    # the retry path was exercised.
    assert conflicts
    assert {conflict.log_id for conflict in conflicts} == {log_id}
    # No index was handed to two writers, and none was skipped.
    assert sorted(won_indices) == list(range(1, 1 + total))
    assert stored_indices(log_id) == list(range(1 + total))
    reduction = Log.objects.reduce(log_id, Account)
    assert reduction.next_index == 1 + total
    assert reduction.aggregate.balance == SUCCESSES_PER_WORKER * sum(
        worker + 1 for worker in range(WORKERS)
    )


def test_racing_appends_with_one_idempotency_key_store_the_event_once() -> None:
    state = Log.objects.append(open_account(), Deposited(amount=5))
    log_id = state.log_id
    key = f"deposit-{uuid.uuid4()}"

    def work(_: int, barrier: threading.Barrier) -> Outcome:
        barrier.wait()
        try:
            new_state: LogState = Log.objects.append(
                state, Deposited(amount=100), idempotency_key=key
            )
        except IdempotentReplay as e:
            return e
        return new_state

    results = run_threads(WORKERS, work)

    won = [r for r in results if isinstance(r, LogState)]
    replays = [r for r in results if isinstance(r, IdempotentReplay)]
    assert won == [LogState(log_id, 3)], results
    assert len(replays) == WORKERS - 1, results
    stored = list(
        Event.objects.filter(idempotency_key=key).values_list("log_id", "index")
    )
    assert stored == [(log_id, 2)]
    for replay in replays:
        assert (replay.idempotency_key, replay.log_id, replay.event_index) == (
            key,
            log_id,
            2,
        )
    assert stored_indices(log_id) == [0, 1, 2]
    assert Log.objects.reduce(log_id, Account).aggregate.balance == 105


def test_racing_idempotent_create_log_creates_one_log() -> None:
    key = f"open-{uuid.uuid4()}"
    logs_before = Log.objects.count()

    def work(_: int, barrier: threading.Barrier) -> Outcome:
        barrier.wait()
        try:
            # Each call makes up a fresh log id.
            new_state: LogState = Log.objects.create_log(
                Opened(owner="bob"), kind="account", idempotency_key=key
            )
        except IdempotentReplay as e:
            return e
        return new_state

    results = run_threads(WORKERS, work)

    won = [r for r in results if isinstance(r, LogState)]
    replays = [r for r in results if isinstance(r, IdempotentReplay)]
    assert len(won) == 1, results
    assert len(replays) == WORKERS - 1, results
    log_id = won[0].log_id
    assert won[0] == LogState(log_id, 1)
    for replay in replays:
        assert (replay.idempotency_key, replay.log_id, replay.event_index) == (
            key,
            log_id,
            0,
        )
    assert list(
        Event.objects.filter(idempotency_key=key).values_list("log_id", "index")
    ) == [(log_id, 0)]
    # The losers' log rows rolled back with their events: no orphan logs.
    assert Log.objects.count() == logs_before + 1
    assert (
        Log.objects.count()
        == Event.objects.values_list("log_id", flat=True).distinct().count()
    )
    assert stored_indices(log_id) == [0]


def test_racing_appends_of_different_events_under_one_key_conflict() -> None:
    state = open_account()
    log_id = state.log_id
    key = f"deposit-{uuid.uuid4()}"

    def work(worker: int, barrier: threading.Barrier) -> Outcome:
        barrier.wait()
        try:
            new_state: LogState = Log.objects.append(
                state, Deposited(amount=worker + 1), idempotency_key=key
            )
        except IdempotencyConflict as e:
            return e
        return new_state

    results = run_threads(WORKERS, work)

    won = [w for w, r in enumerate(results) if isinstance(r, LogState)]
    conflicts = [r for r in results if isinstance(r, IdempotencyConflict)]
    assert len(won) == 1, results
    assert len(conflicts) == WORKERS - 1, results
    assert results[won[0]] == LogState(log_id, 2)
    for conflict in conflicts:
        assert (conflict.idempotency_key, conflict.log_id, conflict.event_index) == (
            key,
            log_id,
            1,
        )
    assert stored_indices(log_id) == [0, 1]
    [record] = Log.objects.load(log_id, start=1)
    assert record.idempotency_key == key
    assert record.event == Deposited(amount=won[0] + 1)


def test_racing_create_logs_of_different_events_under_one_key_conflict() -> None:
    key = f"open-{uuid.uuid4()}"
    logs_before = Log.objects.count()

    def work(worker: int, barrier: threading.Barrier) -> Outcome:
        barrier.wait()
        try:
            new_state: LogState = Log.objects.create_log(
                Opened(owner=f"owner-{worker}"), kind="account", idempotency_key=key
            )
        except IdempotencyConflict as e:
            return e
        return new_state

    results = run_threads(WORKERS, work)

    won = [w for w, r in enumerate(results) if isinstance(r, LogState)]
    conflicts = [r for r in results if isinstance(r, IdempotencyConflict)]
    assert len(won) == 1, results
    assert len(conflicts) == WORKERS - 1, results
    winner = results[won[0]]
    assert isinstance(winner, LogState)
    log_id = winner.log_id
    for conflict in conflicts:
        assert (conflict.idempotency_key, conflict.log_id, conflict.event_index) == (
            key,
            log_id,
            0,
        )
    assert Log.objects.count() == logs_before + 1
    [record] = Log.objects.load(log_id)
    assert record.event == Opened(owner=f"owner-{won[0]}")


class Overdrawn(Exception):
    """The rule of the transact tests: a withdrawal never overdraws."""


def withdraw(amount: int, decided: list[int]) -> Callable[[Account], Deposited]:
    """A decide function: withdraw ``amount`` if the balance covers it."""

    def decide(account: Account) -> Deposited:
        decided.append(account.balance)
        if account.balance < amount:
            raise Overdrawn(account.balance)
        return Deposited(amount=-amount)

    return decide


def test_transact_writers_racing_never_break_the_rule() -> None:
    log_id = Log.objects.append(open_account(), Deposited(amount=100)).log_id
    decided: list[int] = []

    def work(_: int, barrier: threading.Barrier) -> list[Decision[Account] | Overdrawn]:
        """Withdraw 10 three times, each a transact with retries."""
        outcomes: list[Decision[Account] | Overdrawn] = []
        barrier.wait()
        for _ in range(3):
            try:
                outcomes.append(
                    Log.objects.transact(
                        log_id, Account, withdraw(10, decided), attempts=100
                    )
                )
            except Overdrawn as e:
                outcomes.append(e)
        return outcomes

    results = run_threads(WORKERS, work)

    outcomes = [o for result in results for o in result]  # type: ignore[union-attr]
    done = [o for o in outcomes if isinstance(o, Decision)]
    refused = [o for o in outcomes if isinstance(o, Overdrawn)]
    assert len(outcomes) == 3 * WORKERS
    # 100 covers exactly ten withdrawals of 10, whoever wins the races.
    assert len(done) == 10
    assert len(refused) == 3 * WORKERS - 10
    assert sorted(d.first_index for d in done) == list(range(2, 12))
    # Lost races were decided again on the new state (more decisions than
    # calls), and no decision saw a negative balance.
    assert len(decided) > len(outcomes)
    assert min(decided) == 0
    assert stored_indices(log_id) == list(range(12))
    assert Log.objects.reduce(log_id, Account).aggregate.balance == 0


def test_transact_writers_racing_with_one_key_append_once() -> None:
    log_id = Log.objects.append(open_account(), Deposited(amount=100)).log_id
    key = f"withdraw-{uuid.uuid4()}"

    def work(_: int, barrier: threading.Barrier) -> Decision[Account] | Exception:
        barrier.wait()
        try:
            return Log.objects.transact(
                log_id, Account, withdraw(30, []), idempotency_key=key, attempts=100
            )
        except IdempotentReplay as e:
            return e

    results = run_threads(WORKERS, work)

    done = [r for r in results if isinstance(r, Decision)]
    replays = [r for r in results if isinstance(r, IdempotentReplay)]
    assert len(done) == 1, results
    assert len(replays) == WORKERS - 1, results
    assert {(r.log_id, r.event_index) for r in replays} == {(log_id, 2)}
    assert stored_indices(log_id) == [0, 1, 2]
    assert Log.objects.reduce(log_id, Account).aggregate.balance == 70


def test_transact_writers_with_one_attempt_win_or_get_concurrent_append() -> None:
    log_id = open_account().log_id

    def work(_: int, barrier: threading.Barrier) -> Decision[Account] | Exception:
        barrier.wait()
        try:
            return Log.objects.transact(
                log_id, Account, lambda account: Deposited(amount=1), attempts=1
            )
        except ConcurrentAppend as e:
            return e

    results = run_threads(WORKERS, work)

    done = [r for r in results if isinstance(r, Decision)]
    lost = [r for r in results if isinstance(r, ConcurrentAppend)]
    assert len(done) + len(lost) == WORKERS, results
    assert done
    assert sorted(d.first_index for d in done) == list(range(1, 1 + len(done)))
    assert stored_indices(log_id) == list(range(1 + len(done)))


def test_blind_writers_retrying_with_state_all_get_their_appends_in() -> None:
    # Log.objects.state instead of a reduce: the retry of an append no rule
    # depends on. Its state may be stale by the time the append runs; the
    # database still refuses the taken index, so nothing is lost or doubled.
    log_id = open_account().log_id

    def work(worker: int, barrier: threading.Barrier) -> tuple[list[int], int]:
        won: list[int] = []
        conflicts = 0
        state = Log.objects.state(log_id)
        barrier.wait()
        for _ in range(MAX_ATTEMPTS_PER_WORKER):
            if len(won) == SUCCESSES_PER_WORKER:
                break
            try:
                after = Log.objects.append(state, Deposited(amount=worker + 1))
            except ConcurrentAppend:
                conflicts += 1
                state = Log.objects.state(log_id)
            else:
                won.append(state.next_index)
                state = after
        return won, conflicts

    results = run_threads(WORKERS, work)

    total = WORKERS * SUCCESSES_PER_WORKER
    won_indices: list[int] = []
    conflicts = 0
    for result in results:
        assert isinstance(result, tuple), repr(result)
        won, retried = result
        assert len(won) == SUCCESSES_PER_WORKER
        won_indices.extend(won)
        conflicts += retried
    assert conflicts  # the writers did collide: the retry path ran
    assert sorted(won_indices) == list(range(1, 1 + total))
    assert stored_indices(log_id) == list(range(1 + total))
    assert Log.objects.state(log_id) == LogState(log_id, 1 + total)
    balance = Log.objects.reduce(log_id, Account).aggregate.balance
    assert balance == SUCCESSES_PER_WORKER * sum(w + 1 for w in range(WORKERS))
