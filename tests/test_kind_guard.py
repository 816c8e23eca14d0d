"""The kind guard: reduce and load answer LogNotFound for a log of another kind.

Given as ``kind=`` or declared as ``Aggregate.kinds``, it is checked in the
query that reads the log (its creation time on a cache miss, the first page
of events on a hit, the page of ``load``): no extra round trip.
"""

from __future__ import annotations

import dataclasses
import uuid
from dataclasses import dataclass
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from django.core.cache import cache
from django.db import connection
from django.test.utils import CaptureQueriesContext

from django_eventlog import (
    Aggregate,
    EventRecord,
    InvalidArgument,
    Log,
    LogNotFound,
    cache_stats,
)
from tests.domain import Account, Deposited, Opened, open_account

pytestmark = pytest.mark.django_db


@dataclass
class AccountOnly(Account):
    kinds = ("account",)


@dataclass
class LedgerOrAccount(Account):
    kinds = ("ledger", "account")


@dataclass
class LedgerOnly(Account):
    kinds = ("ledger",)


def queries_of(call: Any) -> int:
    with CaptureQueriesContext(connection) as queries:
        call()
    return len(queries)


def test_reduce_with_the_logs_kind_reduces() -> None:
    log_id = open_account(5, 7).log_id
    assert Log.objects.reduce(log_id, Account, kind="account").aggregate.balance == 12
    assert Log.objects.reduce(log_id, AccountOnly).aggregate.balance == 12
    assert Log.objects.reduce(log_id, LedgerOrAccount).aggregate.balance == 12


def test_reduce_of_a_log_of_another_kind_is_not_found() -> None:
    log_id = open_account(5).log_id
    with pytest.raises(LogNotFound) as raised:
        Log.objects.reduce(log_id, Account, kind="ledger")
    assert raised.value.log_id == log_id
    with pytest.raises(LogNotFound):
        Log.objects.reduce(log_id, LedgerOnly)


def test_an_explicit_kind_replaces_the_class_kinds() -> None:
    log_id = open_account(5).log_id
    assert Log.objects.reduce(log_id, LedgerOnly, kind="account").aggregate.balance == 5
    with pytest.raises(LogNotFound):
        Log.objects.reduce(log_id, AccountOnly, kind="ledger")


def test_the_guard_holds_on_a_cache_hit_in_the_same_query(
    django_capture_on_commit_callbacks: Any,
) -> None:
    log_id = open_account(5).log_id
    with django_capture_on_commit_callbacks(execute=True):
        Log.objects.reduce(log_id, Account)  # cached, by a reduce without a guard
    hits = cache_stats().hits
    unguarded = queries_of(lambda: Log.objects.reduce(log_id, Account))
    guarded = queries_of(lambda: Log.objects.reduce(log_id, Account, kind="account"))
    assert cache_stats().hits == hits + 2
    assert guarded == unguarded == 1
    with pytest.raises(LogNotFound):
        Log.objects.reduce(log_id, Account, kind="ledger")
    assert cache_stats().hits == hits + 3  # refused after a hit, by its query
    # New events after the cached reduction come with the guarded page.
    Log.objects.append(Log.objects.reduce(log_id, Account), Deposited(3))
    assert Log.objects.reduce(log_id, Account, kind="account").aggregate.balance == 8


def test_the_guard_holds_on_a_cache_miss_in_the_same_query() -> None:
    log_id = open_account(5).log_id
    unguarded = queries_of(lambda: Log.objects.reduce(log_id, Account, kind=None))
    # Each reduce writes the cache: clear it between, so both miss.
    cache.clear()
    guarded = queries_of(lambda: Log.objects.reduce(log_id, AccountOnly))
    cache.clear()
    assert guarded == unguarded
    with pytest.raises(LogNotFound):
        Log.objects.reduce(log_id, LedgerOnly)


def test_a_missing_log_is_not_found_with_or_without_a_guard() -> None:
    for kind in (None, "account"):
        with pytest.raises(LogNotFound):
            Log.objects.reduce(uuid.uuid4(), Account, kind=kind)
        with pytest.raises(LogNotFound):
            Log.objects.load(uuid.uuid4(), kind=kind)


def test_load_with_a_kind() -> None:
    log_id = open_account(5, 7).log_id
    records = Log.objects.load(log_id, kind="account")
    assert [r.index for r in records] == [0, 1, 2]
    assert records[0].event == Opened("ada")
    assert [r.index for r in Log.objects.load(log_id, start=2, kind="account")] == [2]
    # Past the end of a log of that kind: an empty page, not "not found".
    assert Log.objects.load(log_id, start=3, kind="account") == []
    with pytest.raises(LogNotFound):
        Log.objects.load(log_id, kind="ledger")
    with pytest.raises(LogNotFound):
        Log.objects.load(log_id, start=3, kind="ledger")


def test_load_with_a_kind_takes_one_query() -> None:
    log_id = open_account(5).log_id
    assert queries_of(lambda: Log.objects.load(log_id, start=9, kind="account")) == 1
    # Without the guard, an empty page asks whether the log exists.
    assert queries_of(lambda: Log.objects.load(log_id, start=9)) == 2


def test_the_async_twins_guard_too() -> None:
    log_id = open_account(5).log_id
    areduce = async_to_sync(Log.objects.areduce)
    aload = async_to_sync(Log.objects.aload)
    assert areduce(log_id, AccountOnly).aggregate.balance == 5
    assert areduce(log_id, AccountOnly).aggregate.balance == 5  # from the cache
    with pytest.raises(LogNotFound):
        areduce(log_id, LedgerOnly)
    with pytest.raises(LogNotFound):
        areduce(log_id, Account, kind="ledger")
    assert len(aload(log_id, kind="account")) == 2
    with pytest.raises(LogNotFound):
        aload(log_id, kind="ledger")


@pytest.mark.parametrize("kinds", ["account", (), [1], ("",)])
def test_a_bad_kinds_declaration_is_refused(kinds: Any) -> None:
    @dataclass
    class Bad(Aggregate):
        n: int = 0

        def apply(self, record: EventRecord) -> None:
            self.n += 1

    Bad.kinds = kinds
    log_id = open_account().log_id
    with pytest.raises(InvalidArgument, match=r"Bad\.kinds"):
        Log.objects.reduce(log_id, Bad)


@pytest.mark.parametrize("kind", ["", 1, "x" * 101])
def test_a_bad_kind_argument_is_refused(kind: Any) -> None:
    log_id = open_account().log_id
    with pytest.raises(InvalidArgument, match="kind"):
        Log.objects.reduce(log_id, Account, kind=kind)
    with pytest.raises(InvalidArgument, match="kind"):
        Log.objects.load(log_id, kind=kind)


def test_kinds_is_no_field_of_a_dataclass_aggregate() -> None:
    # A field would be part of the state (and of the cached entry).
    assert "kinds" not in {f.name for f in dataclasses.fields(AccountOnly)}
    assert AccountOnly().kinds == ("account",)
