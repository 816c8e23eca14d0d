"""Log.objects.transact: reduce, decide, append, retry; and its async twin.

One test per path: a decision appended (one event, several, none), the
caller's rule error, a stale expected state, a used key (replay, conflict),
a lost race retried, retries exhausted. Races are made by a second writer
that appends right after transact reduces; the threads of
tests/reliability/test_concurrency.py race real connections on PostgreSQL.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import pytest
from asgiref.sync import async_to_sync

from django_eventlog import (
    Aggregate,
    ConcurrentAppend,
    Decision,
    DomainEvent,
    Event,
    EventRecord,
    IdempotencyConflict,
    IdempotentReplay,
    InvalidArgument,
    Log,
    LogNotFound,
    LogState,
    StaleState,
)

pytestmark = pytest.mark.django_db


class Funded(DomainEvent):
    type_name = "tests.transact.funded"
    amount: int


class Spent(DomainEvent):
    type_name = "tests.transact.spent"
    amount: int
    note: str = ""


class Overdrawn(Exception):
    """The wallet's rule: a spend may not take more than the balance."""


@dataclass
class Wallet(Aggregate):
    kinds = ("wallet",)

    balance: int = 0
    spends: int = 0

    def apply(self, record: EventRecord) -> None:
        match record.event:
            case Funded(amount=amount):
                self.balance += amount
            case Spent(amount=amount):
                self.balance -= amount
                self.spends += 1


def new_wallet(amount: int = 100) -> uuid.UUID:
    return Log.objects.create_log(Funded(amount), kind="wallet").log_id


def spend(amount: int, note: str = "") -> Any:
    """A decide function: spend ``amount`` if the balance allows it."""

    def decide(wallet: Wallet) -> Spent:
        if amount > wallet.balance:
            raise Overdrawn(f"only {wallet.balance} left")
        return Spent(amount, note)

    return decide


def returning(events: list[DomainEvent]) -> Any:
    """A decide function that decides ``events`` whatever the state."""
    return lambda wallet: events


def stored(log_id: uuid.UUID) -> list[tuple[int, str, dict[str, Any]]]:
    return list(
        Event.objects.filter(log_id=log_id)
        .order_by("index")
        .values_list("index", "type", "payload")
    )


@pytest.fixture
def racer(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Another writer that funds the wallet by 1 right after each of the next
    ``racer[0]`` reduces, so that the append that follows loses the race.
    Appends the index it wrote to the list."""
    manager = type(Log.objects)
    real_reduce = manager.reduce
    plan = [0]

    def racing_reduce(self: Any, log_id: Any, aggregate_class: Any, **kw: Any) -> Any:
        reduction = real_reduce(self, log_id, aggregate_class, **kw)
        if len(plan) - 1 < plan[0]:
            state = Log.objects.append(reduction, Funded(1))
            plan.append(state.next_index - 1)
        return reduction

    monkeypatch.setattr(manager, "reduce", racing_reduce)
    return plan


def test_a_decision_is_appended_and_described() -> None:
    log_id = new_wallet(100)
    done = Log.objects.transact(log_id, Wallet, spend(30))
    assert isinstance(done, Decision)
    assert done.events == (Spent(30),)
    assert done.state == LogState(log_id, 2)
    assert done.first_index == 1
    assert done.reduction.aggregate.balance == 100  # what decide saw
    assert stored(log_id)[1] == (1, "tests.transact.spent", {"amount": 30, "note": ""})
    assert Log.objects.reduce(log_id, Wallet).aggregate.balance == 70


def test_several_events_are_appended_with_contiguous_indices() -> None:
    log_id = new_wallet(100)
    done = Log.objects.transact(
        log_id, Wallet, lambda w: [Spent(10, "a"), Spent(20, "b"), Funded(5)]
    )
    assert done.state == LogState(log_id, 4)
    assert done.first_index == 1
    assert [(i, t) for i, t, _ in stored(log_id)] == [
        (0, "tests.transact.funded"),
        (1, "tests.transact.spent"),
        (2, "tests.transact.spent"),
        (3, "tests.transact.funded"),
    ]
    assert Log.objects.reduce(log_id, Wallet).aggregate.balance == 75


def test_a_decision_to_do_nothing_appends_nothing() -> None:
    log_id = new_wallet(100)
    done = Log.objects.transact(log_id, Wallet, lambda w: [])
    assert done.events == ()
    assert done.state == LogState(log_id, 1)
    assert done.first_index == 1
    assert len(stored(log_id)) == 1


def test_decide_returning_none_is_refused_before_writing() -> None:
    log_id = new_wallet(100)
    with pytest.raises(InvalidArgument, match="decide returned None"):
        Log.objects.transact(log_id, Wallet, lambda w: None)  # type: ignore[arg-type,return-value]
    assert len(stored(log_id)) == 1


def test_the_callers_rule_error_propagates_and_nothing_is_written() -> None:
    log_id = new_wallet(100)
    with pytest.raises(Overdrawn, match="only 100 left"):
        Log.objects.transact(log_id, Wallet, spend(101))
    assert len(stored(log_id)) == 1


def test_a_stale_expected_state_fails_the_precondition_before_deciding() -> None:
    log_id = new_wallet(100)
    Log.objects.append(LogState(log_id, 1), Spent(1))
    decided: list[int] = []

    def decide(wallet: Wallet) -> Spent:
        decided.append(wallet.balance)
        return Spent(1)

    with pytest.raises(StaleState) as raised:
        Log.objects.transact(log_id, Wallet, decide, expected=LogState(log_id, 1))
    assert (raised.value.log_id, raised.value.expected_index) == (log_id, 1)
    assert raised.value.current_index == 2
    assert decided == []
    assert len(stored(log_id)) == 2
    # The current state passes, its log id given as a UUID or as its string.
    done = Log.objects.transact(log_id, Wallet, decide, expected=LogState(log_id, 2))
    assert done.state == LogState(log_id, 3)
    as_text = LogState(str(log_id), 3)  # type: ignore[arg-type]
    done = Log.objects.transact(str(log_id), Wallet, decide, expected=as_text)
    assert done.state == LogState(log_id, 4)


def test_an_expected_state_of_another_log_fails_the_precondition() -> None:
    log_id, other = new_wallet(), new_wallet()
    with pytest.raises(StaleState):
        Log.objects.transact(log_id, Wallet, spend(1), expected=LogState(other, 1))
    assert len(stored(log_id)) == 1


def test_a_retry_replays_even_when_the_rules_now_refuse() -> None:
    log_id = new_wallet(100)
    first = Log.objects.transact(log_id, Wallet, spend(80), idempotency_key="k1")
    Log.objects.append(first.state, Funded(3))  # someone else writes after it
    # The balance is 23 now: spending 80 again would be refused. The retry
    # is decided on the state the original was decided on, and replays.
    with pytest.raises(IdempotentReplay) as raised:
        Log.objects.transact(log_id, Wallet, spend(80), idempotency_key="k1")
    assert (raised.value.log_id, raised.value.event_index) == (log_id, 1)
    assert len(stored(log_id)) == 3


def test_a_replay_of_a_batch_compares_every_event() -> None:
    log_id = new_wallet(100)
    batch = [Spent(10, "a"), Spent(20, "b")]
    Log.objects.transact(log_id, Wallet, lambda w: batch, idempotency_key="b1")
    with pytest.raises(IdempotentReplay) as replay:
        Log.objects.transact(log_id, Wallet, lambda w: batch, idempotency_key="b1")
    assert replay.value.event_index == 1
    others: list[list[DomainEvent]] = [
        [Spent(10, "a"), Spent(21, "b")],
        [Spent(10, "a")],
        [*batch, Funded(1)],
    ]
    for other in others:
        with pytest.raises(IdempotencyConflict) as conflict:
            Log.objects.transact(log_id, Wallet, returning(other), idempotency_key="b1")
        assert conflict.value.event_index == 1
    assert len(stored(log_id)) == 3


def test_a_key_reused_for_another_decision_conflicts() -> None:
    log_id = new_wallet(100)
    Log.objects.transact(log_id, Wallet, spend(10), idempotency_key="k2")
    with pytest.raises(IdempotencyConflict) as raised:
        Log.objects.transact(log_id, Wallet, spend(11), idempotency_key="k2")
    assert raised.value.event_index == 1
    # A decision the original state refuses is another request too.
    with pytest.raises(IdempotencyConflict):
        Log.objects.transact(log_id, Wallet, spend(1_000), idempotency_key="k2")
    assert len(stored(log_id)) == 2


def test_a_key_used_on_another_log_conflicts() -> None:
    log_id, other = new_wallet(), new_wallet()
    Log.objects.transact(other, Wallet, spend(10), idempotency_key="k3")
    with pytest.raises(IdempotencyConflict) as raised:
        Log.objects.transact(log_id, Wallet, spend(10), idempotency_key="k3")
    assert raised.value.log_id == other
    assert len(stored(log_id)) == 1


def test_a_lost_race_is_decided_again_and_then_appended(racer: list[int]) -> None:
    log_id = new_wallet(100)
    racer[0] = 2  # the first two attempts lose their race
    seen: list[int] = []

    def decide(wallet: Wallet) -> Spent:
        seen.append(wallet.balance)
        return Spent(wallet.balance)  # spend everything: decided anew each time

    done = Log.objects.transact(log_id, Wallet, decide, attempts=3)
    assert seen == [100, 101, 102]
    assert racer[1:] == [1, 2]
    assert done.first_index == 3
    assert done.events == (Spent(102),)
    assert Log.objects.reduce(log_id, Wallet).aggregate.balance == 0


def test_retries_exhausted_raise_concurrent_append(racer: list[int]) -> None:
    log_id = new_wallet(100)
    racer[0] = 1_000
    calls: list[int] = []

    def decide(wallet: Wallet) -> Spent:
        calls.append(1)
        return Spent(1)

    with pytest.raises(ConcurrentAppend) as raised:
        Log.objects.transact(log_id, Wallet, decide, attempts=4)
    assert raised.value.log_id == log_id
    assert len(calls) == 4
    types = [t for _, t, _ in stored(log_id)]
    assert "tests.transact.spent" not in types
    assert len(types) == 1 + 4  # the racer's funds only


def test_a_lost_race_with_an_expected_state_is_a_failed_precondition(
    racer: list[int],
) -> None:
    log_id = new_wallet(100)
    racer[0] = 1
    with pytest.raises(StaleState) as raised:
        Log.objects.transact(log_id, Wallet, spend(1), expected=LogState(log_id, 1))
    assert raised.value.current_index == 2


def test_a_held_reduction_is_decided_on_without_reducing(racer: list[int]) -> None:
    log_id = new_wallet(100)
    held = Log.objects.reduce(log_id, Wallet)
    racer[0] = 1  # a reduce by transact would race, and show here
    done = Log.objects.transact(log_id, Wallet, spend(5), reduction=held)
    assert done.reduction is held
    assert racer[1:] == []
    assert done.first_index == 1


def test_a_stale_held_reduction_loses_its_race_and_is_reduced_again() -> None:
    log_id = new_wallet(100)
    held = Log.objects.reduce(log_id, Wallet)
    Log.objects.append(held, Funded(1))
    done = Log.objects.transact(log_id, Wallet, spend(5), reduction=held)
    assert done.first_index == 2
    assert done.reduction.aggregate.balance == 101


def test_a_held_reduction_of_another_log_or_class_is_refused() -> None:
    log_id, other = new_wallet(), new_wallet()
    held = Log.objects.reduce(other, Wallet)
    with pytest.raises(
        InvalidArgument, match="reduction must be a reduction of this log"
    ):
        Log.objects.transact(log_id, Wallet, spend(1), reduction=held)


@pytest.mark.parametrize("attempts", [0, -1, True, "3"])
def test_attempts_must_be_a_positive_int(attempts: Any) -> None:
    log_id = new_wallet()
    with pytest.raises(InvalidArgument, match="attempts"):
        Log.objects.transact(log_id, Wallet, spend(1), attempts=attempts)
    assert len(stored(log_id)) == 1


def test_the_kind_guard_holds_for_transact() -> None:
    account = Log.objects.create_log(Funded(5), kind="account").log_id
    with pytest.raises(LogNotFound):
        Log.objects.transact(account, Wallet, spend(1))
    assert len(stored(account)) == 1


def test_atransact_appends_replays_and_fails_preconditions() -> None:
    log_id = new_wallet(100)
    atransact = async_to_sync(Log.objects.atransact)
    done = atransact(log_id, Wallet, spend(40), idempotency_key="a1")
    assert done.state == LogState(log_id, 2)
    with pytest.raises(IdempotentReplay) as raised:
        atransact(log_id, Wallet, spend(40), idempotency_key="a1")
    assert raised.value.event_index == 1
    with pytest.raises(StaleState):
        atransact(log_id, Wallet, spend(1), expected=LogState(log_id, 1))
    with pytest.raises(Overdrawn):
        atransact(log_id, Wallet, spend(61))
    assert Log.objects.reduce(log_id, Wallet).aggregate.balance == 60
