"""The global feed: ``Log.objects.feed`` on both databases.

What holds on PostgreSQL only (the horizon, per-log order under the
interleaving of issue 16, every writer getting a position) is in
``test_feed_postgresql.py``.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from asgiref.sync import async_to_sync

from django_eventlog import Event, FeedRecord, InvalidArgument, Log
from tests.domain import Deposited, Opened

pytestmark = pytest.mark.django_db


def write_some() -> list[tuple[uuid.UUID, int]]:
    """Three logs written in turns; (log id, index) in the order written."""
    written = []
    a = Log.objects.create_log(Opened("a"), kind="account")
    written.append((a.log_id, 0))
    b = Log.objects.create_log(Opened("b"), kind="savings")
    written.append((b.log_id, 0))
    a = Log.objects.append(a, Deposited(1))
    written.append((a.log_id, 1))
    c = Log.objects.create_log(
        [Opened("c"), Deposited(2), Deposited(3)], kind="account"
    )
    written += [(c.log_id, 0), (c.log_id, 1), (c.log_id, 2)]
    b = Log.objects.append(b, Deposited(4))
    written.append((b.log_id, 1))
    return written


def read_all(page_size: int, **filters: Any) -> list[FeedRecord]:
    """Every record of the feed, page by page."""
    found: list[FeedRecord] = []
    after = None
    while page := Log.objects.feed(after, limit=page_size, **filters):
        assert len(page) <= page_size
        found += page
        after = page[-1].position
    return found


def test_the_feed_holds_every_event_once_in_the_order_written() -> None:
    written = write_some()
    for page_size in (1, 2, 3, 100):
        records = read_all(page_size)
        assert [(r.log_id, r.index) for r in records] == written


def test_each_record_says_its_log_kind_and_event() -> None:
    write_some()
    records = Log.objects.feed()
    stored = {
        (e.log_id, e.index): (e.log.kind, e.type, e.payload, e.idempotency_key)
        for e in Event.objects.select_related("log")
    }
    assert len(records) == len(stored) == 7
    for record in records:
        kind, type_name, payload, key = stored[(record.log_id, record.index)]
        assert (record.kind, record.type, record.idempotency_key) == (
            kind,
            type_name,
            key,
        )
        assert record.event == (
            Opened(payload["owner"])
            if type_name == "tests.opened"
            else Deposited(**payload)
        )
    assert len({r.position for r in records}) == 7


def test_a_record_as_dict_carries_log_id_kind_and_position() -> None:
    state = Log.objects.create_log(
        Opened("ada"),
        kind="account",
        idempotency_key="k1",
        metadata={"actor": "user:7", "correlation_id": "req-1", "extra": {"ip": "::1"}},
    )
    [record] = Log.objects.feed()
    assert record.as_dict() == {
        "log_id": str(state.log_id),
        "kind": "account",
        "position": record.position,
        "index": 0,
        "type": "tests.opened",
        "recorded_at": record.recorded_at.isoformat(),
        "idempotency_key": "k1",
        "event": {"owner": "ada"},
        "metadata": {
            "actor": "user:7",
            "correlation_id": "req-1",
            "causation_id": None,
            "extra": {"ip": "::1"},
        },
    }


def test_after_the_last_position_the_feed_is_empty_until_more_is_written() -> None:
    state = Log.objects.create_log(Opened("ada"), kind="account")
    [first] = Log.objects.feed()
    assert Log.objects.feed(first.position) == []
    Log.objects.append(state, Deposited(5))
    [second] = Log.objects.feed(first.position)
    assert (second.log_id, second.index, second.event) == (
        state.log_id,
        1,
        Deposited(5),
    )
    # A position read again gives the same continuation.
    assert Log.objects.feed(first.position) == [second]


def test_kinds_filter_in_the_database_before_the_limit() -> None:
    written = write_some()
    kinds = {log_id: Log.objects.get(pk=log_id).kind for log_id, _ in written}
    savings = [w for w in written if kinds[w[0]] == "savings"]
    assert len(savings) == 2
    # One record a page: a filter applied after the limit would give empty pages.
    records = read_all(1, kinds=["savings"])
    assert [(r.log_id, r.index) for r in records] == savings
    both = read_all(2, kinds=["savings", "account"])
    assert [(r.log_id, r.index) for r in both] == written
    assert Log.objects.feed(kinds=["nothing"]) == []


def test_types_filter_by_class_or_stored_name() -> None:
    written = write_some()
    deposits = [
        (r.log_id, r.index) for r in read_all(100) if r.type == "tests.deposited"
    ]
    assert len(deposits) == 4
    assert [(r.log_id, r.index) for r in read_all(1, types=[Deposited])] == deposits
    by_name = read_all(3, types=("tests.deposited",))
    assert [(r.log_id, r.index) for r in by_name] == deposits
    both = read_all(1, kinds=["account"], types=[Opened])
    assert [(r.log_id, r.index) for r in both] == [
        w for w in written if w[1] == 0 and Log.objects.get(pk=w[0]).kind == "account"
    ]


def test_a_batch_comes_in_index_order() -> None:
    state = Log.objects.create_log(Opened("ada"), kind="account")
    Log.objects.append(state, [Deposited(n) for n in range(1, 51)])
    assert [r.index for r in Log.objects.feed(limit=100)] == list(range(51))


@pytest.mark.parametrize(
    "after",
    [
        "",
        "12",
        "1.2.3",
        "-1.2",
        "1.-2",
        "a.b",
        "01.2",
        " 1.2",
        "1.2\n",
        1,
        1.5,
        b"1.2",
        f"{2**63}.1",
        f"1.{2**63}",
    ],
)
def test_a_position_not_from_the_feed_is_refused(after: Any) -> None:
    with pytest.raises(InvalidArgument, match="after"):
        Log.objects.feed(after)


@pytest.mark.parametrize(
    ("filters", "message"),
    [
        ({"kinds": "account"}, "kinds must be a list"),
        ({"kinds": []}, "kinds must not be empty"),
        ({"kinds": [""]}, "kinds"),
        ({"kinds": ["x" * 101]}, "kinds"),
        ({"types": Deposited}, "types must be a list"),
        ({"types": [object]}, "types"),
        ({"types": ["x" * 201]}, "types"),
        ({"limit": 0}, "limit"),
        ({"limit": "5"}, "limit"),
        ({"limit": 1001}, "EVENTLOG_MAX_PAGE_SIZE"),
    ],
)
def test_bad_filters_and_limits_are_refused(
    filters: dict[str, Any], message: str
) -> None:
    with pytest.raises(InvalidArgument, match=message):
        Log.objects.feed(**filters)


def test_limit_defaults_to_the_page_size(settings: Any) -> None:
    settings.EVENTLOG_PAGE_SIZE = 3
    state = Log.objects.create_log(Opened("ada"), kind="account")
    Log.objects.append(state, [Deposited(n) for n in range(1, 6)])
    assert [r.index for r in Log.objects.feed()] == [0, 1, 2]


def test_afeed_reads_the_same_pages() -> None:
    write_some()
    # async_to_sync: afeed's database work runs in this thread, on the
    # test's connection and transaction.
    first = async_to_sync(Log.objects.afeed)(limit=4)
    assert len(first) == 4
    assert first == Log.objects.feed(limit=4)
    rest = async_to_sync(Log.objects.afeed)(first[-1].position, kinds=["account"])
    assert rest == Log.objects.feed(first[-1].position, kinds=["account"])
    assert rest
    assert all(r.kind == "account" for r in rest)


def test_feed_horizon_holds_nothing_back_without_open_transactions() -> None:
    write_some()
    horizon = Log.objects.feed_horizon()
    assert horizon.held_back == 0
