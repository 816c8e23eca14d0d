"""How a page of the feed is read (both databases): the kinds of its logs
read once per process, and only for committed logs; recorded_at as the ORM
gives it; a batch's checkpoint moved by compare-and-set.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any, ClassVar

import pytest
from django.core.management.color import no_style
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from django_eventlog import Event, FeedRecord, Log, log_kinds
from django_eventlog.models import ProjectionCheckpoint
from django_eventlog.projection_runs import ProjectionRun
from django_eventlog.projections import Projection
from tests.domain import Deposited, Opened

pytestmark = pytest.mark.django_db

LOGS = "django_eventlog_log"


def kind_reads(queries: CaptureQueriesContext) -> int:
    """The queries that read the logs table (the kinds of a page's logs)."""
    return sum(LOGS in query["sql"] for query in queries.captured_queries)


def test_a_pages_kinds_are_read_once_for_all_its_logs() -> None:
    log_kinds.forget()
    states = [
        Log.objects.create_log(Opened(f"owner {i}"), kind=f"kind-{i % 3}")
        for i in range(6)
    ]
    for state in states:
        Log.objects.append(state, Deposited(1))
    with CaptureQueriesContext(connection) as first:
        records = Log.objects.feed(limit=100)
    assert [r.kind for r in records] == [f"kind-{i % 3}" for i in range(6)] * 2
    assert kind_reads(first) == 1  # one query for the six logs, not one a row


@pytest.mark.django_db(transaction=True)
def test_kinds_read_outside_a_transaction_are_kept_for_the_next_pages() -> None:
    log_kinds.forget()
    state = Log.objects.create_log(Opened("ada"), kind="account")
    [first] = Log.objects.feed()
    Log.objects.append(state, Deposited(5))
    with CaptureQueriesContext(connection) as later:
        [second] = Log.objects.feed(first.position)
    assert (first.kind, second.kind) == ("account", "account")
    assert kind_reads(later) == 0


@pytest.mark.django_db(transaction=True)
def test_a_kind_seen_in_a_rolled_back_transaction_is_not_kept() -> None:
    """A transaction sees its own uncommitted logs: one that rolls back must
    not leave a kind behind for an id that another log takes later."""
    log_kinds.forget()
    log_id = uuid.uuid4()
    with transaction.atomic():
        Log.objects.create_log(Opened("ada"), kind="account", log_id=log_id)
        assert [r.kind for r in Log.objects.feed()] == ["account"]
        transaction.set_rollback(True)
    Log.objects.create_log(Opened("ada"), kind="savings", log_id=log_id)
    assert [r.kind for r in Log.objects.feed()] == ["savings"]


@pytest.mark.django_db(transaction=True)
def test_a_flush_forgets_the_kinds() -> None:
    """The test helpers' flush empties the tables, and a log id may then be
    another log's: the kinds read before are forgotten."""
    log_kinds.forget()
    log_id = uuid.uuid4()
    Log.objects.create_log(Opened("ada"), kind="account", log_id=log_id)
    assert [r.kind for r in Log.objects.feed()] == ["account"]
    tables = connection.introspection.django_table_names(include_views=False)
    connection.ops.execute_sql_flush(
        connection.ops.sql_flush(no_style(), tables, reset_sequences=False)
    )
    assert not Log.objects.exists()
    Log.objects.create_log(Opened("ada"), kind="savings", log_id=log_id)
    assert [r.kind for r in Log.objects.feed()] == ["savings"]


@pytest.mark.django_db(transaction=True)
def test_past_kept_logs_the_cache_starts_over(monkeypatch: pytest.MonkeyPatch) -> None:
    log_kinds.forget()
    monkeypatch.setattr(log_kinds, "KEPT", 2)
    for i in range(3):
        Log.objects.create_log(Opened(f"owner {i}"), kind=f"kind-{i}")
    Log.objects.feed()  # three logs: more than are kept, the cache starts over
    with CaptureQueriesContext(connection) as again:
        records = Log.objects.feed()
    assert [r.kind for r in records] == ["kind-0", "kind-1", "kind-2"]
    assert kind_reads(again) == 1


@pytest.mark.django_db(transaction=True)
def test_a_page_of_more_logs_than_one_query_takes() -> None:
    """SQLite reads the kinds 500 ids at a time; PostgreSQL in one array."""
    log_kinds.forget()
    with transaction.atomic():  # one commit: quicker on SQLite
        for i in range(620):
            Log.objects.create_log(Opened(f"owner {i}"), kind=f"kind-{i % 7}")
    records = Log.objects.feed(limit=1000)
    assert [r.kind for r in records] == [f"kind-{i % 7}" for i in range(620)]


def test_recorded_at_is_the_orms_value_with_its_time_zone() -> None:
    state = Log.objects.create_log(Opened("ada"), kind="account")
    Log.objects.append(state, Deposited(5))
    stored = {e.index: e.recorded_at for e in Event.objects.filter(log_id=state.log_id)}
    records = Log.objects.feed()
    assert [r.recorded_at for r in records] == [stored[0], stored[1]]
    for record in records:
        assert record.recorded_at.utcoffset() == stored[0].utcoffset()
        assert record.recorded_at.tzinfo == stored[0].tzinfo


class Mover(Projection):
    """Moves its own checkpoint while it handles its batch, as another
    process (``eventlog_projections skip``, or a second runner without the
    lock) would."""

    name = "tests.mover"
    atomic: ClassVar[bool] = True
    seen: ClassVar[list[int]] = []

    def handle(self, record: FeedRecord) -> None:
        Mover.seen.append(record.index)
        ProjectionCheckpoint.objects.filter(name=self.name).update(position="1.1")


@pytest.mark.parametrize("atomic", [True, False], ids=["atomic", "subscriber"])
def test_a_checkpoint_moved_during_a_batch_is_not_moved_again(
    atomic: bool, monkeypatch: pytest.MonkeyPatch, caplog: Any
) -> None:
    monkeypatch.setattr(Mover, "atomic", atomic)
    Mover.seen = []
    state = Log.objects.create_log(Opened("ada"), kind="account")
    Log.objects.append(state, Deposited(5))
    run = ProjectionRun(Mover(), "default")
    run.checkpoint()
    with caplog.at_level(logging.WARNING, logger="django_eventlog.projections"):
        outcome = run.step()
    assert Mover.seen == [0, 1]
    assert outcome.handled == 0
    assert "moved by another process" in caplog.text
    found = ProjectionCheckpoint.objects.get(name=Mover.name)
    # Atomic: the batch rolled back with the handler's move. A subscriber
    # keeps the other process's move, and its own count untouched.
    assert (found.position, found.handled) == ("" if atomic else "1.1", 0)
