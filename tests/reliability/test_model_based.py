"""Model-based test: random sequences of create_log, append, reduce, load and
check_idempotency_key agree with a plain-Python model of the store.

Each example works on logs of its own kind and keys of its own prefix (both
from a fresh uuid4), so nothing has to be deleted between examples: the model
only ever compares itself with its own rows.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any, TypeVar

import hypothesis
import pytest
from asgiref.sync import async_to_sync
from django.core.cache import BaseCache
from django.db import transaction
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from django_eventlog import (
    ConcurrentAppend,
    DomainEvent,
    Event,
    EventLogError,
    IdempotencyConflict,
    IdempotentReplay,
    Log,
    LogNotFound,
    LogState,
    cache_stats,
    reset_cache_stats,
)
from tests.domain import Account, Deposited, Opened

T = TypeVar("T")

PAGE_SIZE = 100  # EVENTLOG_PAGE_SIZE's default: load()'s limit when none is given

# Few distinct values, so that equal events (idempotent replays) come up often.
events = st.one_of(
    st.builds(Opened, owner=st.sampled_from(["ann", "bob", "zoë", "عل", "😀"])),
    st.builds(
        Opened,
        owner=st.text(
            st.characters(exclude_categories=["Cs"], exclude_characters="\x00"),
            max_size=8,
        ),
    ),
    st.builds(Deposited, amount=st.integers(-3, 3)),
    st.builds(Deposited, amount=st.integers(-(10**12), 10**12)),
)
key_suffixes = st.text(
    st.characters(exclude_categories=["Cs"], exclude_characters="\x00"),
    max_size=6,
)


def attempt(call: Callable[..., T], *args: Any, **kwargs: Any) -> T | EventLogError:
    """What ``call`` returns, or the EventLogError it raises; all else escapes."""
    try:
        return call(*args, **kwargs)
    except EventLogError as e:
        return e


@dataclass(frozen=True)
class Stored:
    """One event of the model: what load() must give back at its index."""

    event: DomainEvent
    key: str | None


def same_event(a: DomainEvent, b: DomainEvent) -> bool:
    """What the store calls equal events (type name and JSON payload)."""
    return a.type_name == b.type_name and a == b


def fold(history: list[Stored]) -> Account:
    owner, balance = "", 0
    for stored in history:
        if isinstance(stored.event, Opened):
            owner = stored.event.owner
        elif isinstance(stored.event, Deposited):
            balance += stored.event.amount
    return Account(owner, balance, list(range(len(history))))


class EventLogMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        prefix = uuid.uuid4().hex
        self.kind = f"model-{prefix}"
        self.key_prefix = f"{prefix}:"
        self.logs: dict[uuid.UUID, list[Stored]] = {}
        self.order: list[uuid.UUID] = []  # log ids, in creation order
        self.keys: dict[str, tuple[uuid.UUID, int]] = {}  # key -> (log, index)
        self.states: dict[uuid.UUID, list[LogState]] = defaultdict(list)
        self.fresh_keys = 0

    # Drawing from the model

    def draw_key(self, data: st.DataObject) -> str | None:
        mode = data.draw(st.sampled_from(["none", "fresh", "used"]), label="key")
        if mode == "none":
            return None
        if mode == "used" and self.keys:
            return data.draw(st.sampled_from(sorted(self.keys)), label="used key")
        self.fresh_keys += 1
        suffix = data.draw(key_suffixes, label="key suffix")
        return f"{self.key_prefix}{self.fresh_keys}:{suffix}"

    def draw_event(self, data: st.DataObject, key: str | None) -> DomainEvent:
        """An event; with a used key, often the event that key was used for."""
        if key in self.keys and data.draw(st.booleans(), label="retry same event"):
            log_id, index = self.keys[key]
            return self.logs[log_id][index].event
        return data.draw(events, label="event")

    def draw_log(self, data: st.DataObject) -> uuid.UUID:
        return data.draw(st.sampled_from(self.order), label="log")

    def expect_key_error(
        self,
        error: object,
        key: str,
        event: DomainEvent,
        where: str,
        write: uuid.UUID | tuple[str, uuid.UUID | None],
    ) -> None:
        """``error`` is the replay or conflict a used ``key`` must give to
        ``write``: an append's log id, or a create's (kind, given log id)."""
        log_id, index = self.keys[key]
        original = self.logs[log_id][index].event
        # The replay rule of docs/concepts.md: the same request only.
        if isinstance(write, tuple):
            kind, given = write
            same_request = index == 0 and kind == self.kind and given in (None, log_id)
        else:
            same_request = write == log_id
        expected = (
            IdempotentReplay
            if same_request and same_event(original, event)
            else IdempotencyConflict
        )
        assert type(error) is expected, f"{where}: {error!r}, expected {expected}"
        assert isinstance(error, (IdempotentReplay, IdempotencyConflict))
        assert (error.idempotency_key, error.log_id, error.event_index) == (
            key,
            log_id,
            index,
        )

    def record(self, log_id: uuid.UUID, event: DomainEvent, key: str | None) -> None:
        if key is not None:
            self.keys[key] = (log_id, len(self.logs[log_id]))
        self.logs[log_id].append(Stored(event, key))

    # Rules

    @rule(data=st.data())
    def create_log(self, data: st.DataObject) -> None:
        key = self.draw_key(data)
        event = self.draw_event(data, key)
        id_mode = data.draw(st.sampled_from(["generated", "given", "existing"]))
        if id_mode == "existing" and self.order:
            log_id: uuid.UUID | None = self.draw_log(data)
        elif id_mode == "given":
            log_id = uuid.uuid4()
        else:
            log_id = None
        # Either spelling of a given id.
        as_text = data.draw(st.booleans(), label="log id as str")
        given = str(log_id) if as_text and log_id is not None else log_id
        # Another kind only with a used key: it writes nothing then, and the
        # model keeps to logs of its own kind.
        kind = self.kind
        if key in self.keys and data.draw(st.booleans(), label="another kind"):
            kind = f"{self.kind}:other"

        outcome = attempt(
            Log.objects.create_log,
            event,
            kind=kind,
            log_id=given,
            idempotency_key=key,
        )
        hypothesis.event(f"create_log: {type(outcome).__name__}")
        if key is not None and key in self.keys:
            # A used key wins over a taken log id.
            self.expect_key_error(outcome, key, event, "create_log", (kind, log_id))
            if log_id is not None and log_id not in self.logs:
                assert not Log.objects.filter(pk=log_id).exists()
            return
        if log_id is not None and log_id in self.logs:
            assert type(outcome) is ConcurrentAppend, f"taken id: {outcome!r}"
            assert outcome.log_id == log_id
            return
        assert type(outcome) is LogState, f"create_log: {outcome!r}"
        assert outcome.next_index == 1
        assert log_id is None or outcome.log_id == log_id
        assert outcome.log_id not in self.logs
        self.logs[outcome.log_id] = []
        self.order.append(outcome.log_id)
        self.record(outcome.log_id, event, key)
        self.states[outcome.log_id].append(outcome)

    @precondition(lambda self: bool(self.order))
    @rule(data=st.data())
    def append(self, data: st.DataObject) -> None:
        how = data.draw(
            st.sampled_from(["fresh", "known", "stale", "ahead", "missing"])
        )
        self.try_append(data, how)

    # A second entry point, so that logs grow and reduces fold new events
    # onto cached reductions.
    @precondition(lambda self: bool(self.order))
    @rule(data=st.data())
    def append_fresh(self, data: st.DataObject) -> None:
        self.try_append(data, "fresh")

    def try_append(self, data: st.DataObject, how: str) -> None:
        key = self.draw_key(data)
        log_id = self.draw_log(data)
        if key in self.keys and data.draw(st.booleans(), label="the key's log"):
            log_id = self.keys[key][0]  # a replay is on the original's log
        length = len(self.logs[log_id])
        if how == "missing":
            log_id, length = uuid.uuid4(), 0
            state = LogState(log_id, data.draw(st.integers(0, 2)))
        elif how == "known":  # any state the API handed out for this log
            state = data.draw(st.sampled_from(self.states[log_id]), label="state")
        elif how == "stale":
            state = LogState(log_id, data.draw(st.integers(0, length - 1)))
        elif how == "ahead":
            state = LogState(log_id, data.draw(st.integers(length + 1, length + 3)))
        else:
            state = LogState(log_id, length)
        event = self.draw_event(data, key)
        in_atomic = data.draw(st.booleans(), label="inside atomic()")

        index = state.next_index
        with transaction.atomic() if in_atomic else nullcontext():
            outcome = attempt(Log.objects.append, state, event, idempotency_key=key)
            # A failed append leaves the caller's transaction usable.
            assert Log.objects.filter(pk=log_id).exists() == (how != "missing")
        hypothesis.event(f"append {how}: {type(outcome).__name__}")

        if key is not None and key in self.keys:
            # A used key wins, whether or not a row could be inserted: a
            # retry is answered as one even against a state ahead of the
            # log, and a missing log is another log (a conflict).
            self.expect_key_error(outcome, key, event, "append", log_id)
        elif how == "missing":
            assert type(outcome) is LogNotFound, f"missing log: {outcome!r}"
            assert outcome.log_id == log_id
        elif index > length:
            # Nothing is inserted without the event before it, so no gap.
            assert type(outcome) is ConcurrentAppend, f"ahead: {outcome!r}"
            assert outcome.log_id == log_id
        elif index < length:
            assert type(outcome) is ConcurrentAppend, f"stale: {outcome!r}"
            assert outcome.log_id == log_id
        else:
            assert type(outcome) is LogState, f"fresh state: {outcome!r}"
            assert outcome == LogState(log_id, length + 1)
            self.record(log_id, event, key)
            self.states[log_id].append(outcome)

    @precondition(lambda self: bool(self.order))
    @rule(data=st.data(), asynchronous=st.booleans())
    def reduce(self, data: st.DataObject, asynchronous: bool) -> None:
        reduce = (
            async_to_sync(Log.objects.areduce) if asynchronous else Log.objects.reduce
        )
        if data.draw(st.sampled_from(["log", "log", "log", "missing log"])) != "log":
            missing = uuid.uuid4()
            outcome = attempt(reduce, missing, Account)
            assert type(outcome) is LogNotFound, repr(outcome)
            assert outcome.log_id == missing
            return
        log_id = self.draw_log(data)
        spellings: list[uuid.UUID | str] = [log_id, str(log_id), log_id.hex]
        reduction = reduce(data.draw(st.sampled_from(spellings)), Account)
        history = self.logs[log_id]
        assert reduction.log_id == log_id
        assert reduction.aggregate == fold(history)
        assert reduction.through_index == len(history) - 1
        assert reduction.next_index == len(history)
        self.states[log_id].append(reduction)

    @precondition(lambda self: bool(self.order))
    @rule(data=st.data(), asynchronous=st.booleans())
    def load(self, data: st.DataObject, asynchronous: bool) -> None:
        load = async_to_sync(Log.objects.aload) if asynchronous else Log.objects.load
        if data.draw(st.sampled_from(["log", "log", "log", "missing log"])) != "log":
            missing = uuid.uuid4()
            outcome = attempt(load, missing, start=data.draw(st.integers(0, 2)))
            assert type(outcome) is LogNotFound, repr(outcome)
            assert outcome.log_id == missing
            return
        log_id = self.draw_log(data)
        history = self.logs[log_id]
        start = data.draw(st.integers(0, len(history) + 2), label="start")
        limit = data.draw(st.none() | st.integers(1, len(history) + 2), label="limit")
        records = load(log_id, start=start, limit=limit)
        end = start + (PAGE_SIZE if limit is None else limit)
        expected = [
            (index, stored.event.type_name, stored.event, stored.key)
            for index, stored in enumerate(history)
        ][start:end]
        got = [(r.index, r.type, r.event, r.idempotency_key) for r in records]
        assert got == expected
        assert [type(r.event) for r in records] == [type(e[2]) for e in expected]

    @precondition(lambda self: bool(self.order))
    @rule(data=st.data())
    def check_idempotency_key(self, data: st.DataObject) -> None:
        key = self.draw_key(data)
        if key is None:
            return
        event = self.draw_event(data, key)
        # The write the check stands for: an append to a log (maybe a missing
        # one), or a create with a generated or a given log id.
        write: uuid.UUID | tuple[str, uuid.UUID | None]
        as_write = data.draw(st.sampled_from(["append", "create", "create with id"]))
        log_id = data.draw(
            st.sampled_from([*self.order, uuid.uuid4()]), label="check's log"
        )
        if as_write == "append":
            write = log_id
            outcome = attempt(
                Log.objects.check_idempotency_key, key, event, log_id=log_id
            )
        else:
            given = log_id if as_write == "create with id" else None
            write = (self.kind, given)
            outcome = attempt(
                Log.objects.check_idempotency_key,
                key,
                event,
                kind=self.kind,
                log_id=given,
            )
        if key in self.keys:
            self.expect_key_error(outcome, key, event, "check_idempotency_key", write)
        else:
            assert outcome is None, f"free key {key!r}: {outcome!r}"

    # Invariants

    @invariant()
    def store_matches_model(self) -> None:
        rows = Event.objects.filter(log__kind=self.kind).values_list(
            "log_id", "index", "idempotency_key"
        )
        indices: dict[uuid.UUID, list[int]] = defaultdict(list)
        stored_keys: list[str] = []
        for log_id, index, key in rows:
            indices[log_id].append(index)
            if key is not None:
                stored_keys.append(key)
        # Indices contiguous from 0, as many as the model holds; no gap, no
        # event that a refused call wrote.
        for log_id, history in self.logs.items():
            assert sorted(indices.pop(log_id, [])) == list(range(len(history)))
        assert not indices, f"events in logs the model does not know: {indices}"
        # No key stored twice, and exactly the keys the model used.
        assert len(stored_keys) == len(set(stored_keys))
        assert set(stored_keys) == set(self.keys)
        logs = set(Log.objects.filter(kind=self.kind).values_list("id", flat=True))
        assert logs == set(self.logs)

    @invariant()
    def cache_never_failed(self) -> None:
        assert cache_stats().errors == 0


# In autocommit (transaction=True) a reduce's cache entry is written at once,
# so later reduces of the same log start from it; append runs without and,
# when the rule says so, within the caller's atomic() block.
@pytest.mark.django_db(transaction=True)
def test_event_store_behaves_like_its_model(eventlog_cache: BaseCache) -> None:
    reset_cache_stats()
    run_state_machine_as_test(
        EventLogMachine,
        settings=settings(
            max_examples=40,
            stateful_step_count=30,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow],
        ),
    )
    assert cache_stats().hits > 0
