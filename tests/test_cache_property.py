"""Reducing through the cache, wherever the reduces fall, gives what one cold
fold of the same events gives."""

from __future__ import annotations

import dataclasses
import uuid
from typing import Literal

import pytest
from asgiref.sync import async_to_sync
from django.core.cache import BaseCache
from django.db import transaction
from django.test import override_settings
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from django_eventlog import (
    DomainEvent,
    Log,
    NeverCache,
    Reduction,
    cache_stats,
    reset_cache_stats,
)
from tests.conftest import stats_delta
from tests.domain import Account, Deposited, Opened

Mode = Literal["sync", "sync in atomic", "async"]
MODES: tuple[Mode, ...] = ("sync", "sync in atomic", "async")


class ColdAccount(Account):
    """Account, folded from the first event on every time."""

    cache_policy = NeverCache()


owners = st.text(
    st.characters(exclude_categories=["Cs"], exclude_characters="\x00"),
    max_size=12,
)
events = st.one_of(
    st.builds(Opened, owner=owners),
    st.builds(Deposited, amount=st.integers(-(10**12), 10**12)),
    st.builds(Deposited, amount=st.integers(-3, 3)),
)


@st.composite
def histories(
    draw: st.DrawFn,
) -> tuple[list[DomainEvent], list[tuple[int, Mode]]]:
    """Events, and the log lengths at which to reduce (with how)."""
    history: list[DomainEvent] = list(draw(st.lists(events, min_size=1, max_size=25)))
    # Repeated lengths reduce again with no new event in between.
    lengths = sorted(
        draw(st.lists(st.integers(1, len(history)), min_size=1, max_size=6))
    )
    modes = st.sampled_from(MODES)
    return history, [(length, draw(modes)) for length in lengths]


def expected(history: list[DomainEvent]) -> Account:
    """The fold written out by hand."""
    owner, balance = "", 0
    for event in history:
        if isinstance(event, Opened):
            owner = event.owner
        elif isinstance(event, Deposited):
            balance += event.amount
    return Account(owner, balance, list(range(len(history))))


def reduce(log_id: uuid.UUID, mode: Mode) -> Reduction[Account]:
    if mode == "async":
        return async_to_sync(Log.objects.areduce)(log_id, Account)
    if mode == "sync in atomic":
        # The entry is written when this block commits.
        with transaction.atomic():
            return Log.objects.reduce(log_id, Account)
    return Log.objects.reduce(log_id, Account)


# In autocommit each reduce's entry is written before the next reduce reads.
@pytest.mark.django_db(transaction=True)
@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    case=histories(),
    chunk_size=st.sampled_from((1, 2, 3, 2000)),
)
def test_cached_reduces_at_any_cut_points_equal_a_cold_fold(
    eventlog_cache: BaseCache,
    case: tuple[list[DomainEvent], list[tuple[int, Mode]]],
    chunk_size: int,
) -> None:
    history, cuts = case
    eventlog_cache.clear()
    reset_cache_stats()
    with override_settings(EVENTLOG_CHUNK_SIZE=chunk_size):
        state = Log.objects.create_log(history[0], kind="account")
        appended = 1
        hits = 0
        for number, (length, mode) in enumerate(cuts):
            for event in history[appended:length]:
                state = Log.objects.append(state, event)
            new_events, appended = length - appended, length

            before = cache_stats()
            reduction = reduce(state.log_id, mode)
            delta = stats_delta(before)
            cold = Log.objects.reduce(state.log_id, ColdAccount)

            assert reduction.aggregate == expected(history[:length])
            assert dataclasses.asdict(reduction.aggregate) == dataclasses.asdict(
                cold.aggregate
            )
            assert reduction.through_index == cold.through_index == length - 1
            assert reduction.next_index == length
            if number == 0:
                assert delta == {"misses": 1, "writes": 1}
            elif new_events == 0:
                assert delta == {"hits": 1}  # nothing new: nothing written
            else:
                assert delta == {
                    "hits": 1,
                    "writes": 1,
                    "events_applied_after_hit": new_events,
                }
            hits += delta.get("hits", 0)
    assert hits == len(cuts) - 1
    if len(cuts) >= 2:
        assert cache_stats().hits >= 1
    assert cache_stats().errors == 0
