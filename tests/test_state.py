"""Log.objects.state and astate: a log's LogState without an aggregate."""

from __future__ import annotations

import re
import uuid

import pytest
from asgiref.sync import async_to_sync
from django.db import connection
from django.test.utils import CaptureQueriesContext

from django_eventlog import (
    ConcurrentAppend,
    InvalidArgument,
    Log,
    LogNotFound,
    LogState,
)
from django_eventlog.sql import statements
from tests.conftest import ON_POSTGRESQL
from tests.domain import Deposited, Opened

pytestmark = pytest.mark.django_db


def test_the_state_names_the_index_the_next_event_takes() -> None:
    state = Log.objects.create_log(
        [Opened("ada"), Deposited(1), Deposited(2)], kind="account"
    )
    assert Log.objects.state(state.log_id) == LogState(state.log_id, 3)
    after = Log.objects.append(state, Deposited(3))
    assert Log.objects.state(str(state.log_id)) == after == LogState(state.log_id, 4)


def test_a_state_serves_an_append_and_goes_stale_after_another() -> None:
    log_id = Log.objects.create_log(Opened("ada"), kind="account").log_id
    seen = Log.objects.state(log_id)
    Log.objects.append(seen, Deposited(1))
    with pytest.raises(ConcurrentAppend):
        Log.objects.append(seen, Deposited(2))
    assert Log.objects.state(log_id) == LogState(log_id, 2)


def test_a_missing_log_is_not_found_and_a_bad_id_is_refused() -> None:
    missing = uuid.uuid4()
    with pytest.raises(LogNotFound) as found:
        Log.objects.state(missing)
    assert found.value.log_id == missing
    with pytest.raises(InvalidArgument):
        Log.objects.state("not-a-uuid")


def test_a_log_without_events_starts_at_index_0() -> None:
    # Only a writer outside create_log makes one; its first event is index 0.
    log = Log.objects.create(kind="account")
    assert Log.objects.state(log.id) == LogState(log.id, 0)
    assert Log.objects.state(log.id, kind="account") == LogState(log.id, 0)


def test_kind_guards_against_a_log_of_another_kind() -> None:
    state = Log.objects.create_log([Opened("ada"), Deposited(1)], kind="account")
    assert Log.objects.state(state.log_id, kind="account") == LogState(state.log_id, 2)
    with pytest.raises(LogNotFound):
        Log.objects.state(state.log_id, kind="payment")
    with pytest.raises(LogNotFound):
        Log.objects.state(uuid.uuid4(), kind="account")
    with pytest.raises(InvalidArgument):
        Log.objects.state(state.log_id, kind="")


def test_the_state_of_a_log_with_events_is_one_query() -> None:
    state = Log.objects.create_log([Opened("ada"), Deposited(1)], kind="account")
    with CaptureQueriesContext(connection) as queries:
        Log.objects.state(state.log_id)
    assert len(queries) == 1
    assert queries[0]["sql"].lstrip().upper().startswith("SELECT")


@pytest.mark.django_db(transaction=True)
def test_astate_is_state() -> None:
    state = Log.objects.create_log([Opened("ada"), Deposited(1)], kind="account")
    assert async_to_sync(Log.objects.astate)(state.log_id) == LogState(state.log_id, 2)
    with pytest.raises(LogNotFound):
        async_to_sync(Log.objects.astate)(state.log_id, kind="payment")


@pytest.mark.postgresql
def test_the_state_is_one_backward_probe_of_the_log_index_index() -> None:
    state = Log.objects.create_log([Opened("ada"), Deposited(1)], kind="account")
    with connection.cursor() as cursor:
        # Two events: the planner would rather read the table; what matters
        # is that the index serves it without a sort.
        cursor.execute("SET LOCAL enable_seqscan = off")
        cursor.execute(
            f"EXPLAIN {statements(connection).select_last_index}", [state.log_id]
        )
        plan = "\n".join(row[0] for row in cursor.fetchall())
    # An index-only scan, or an index scan: either way one backward probe.
    assert re.search(
        r"Index (Only )?Scan Backward using django_eventlog_event_log_index_uniq", plan
    ), plan
    assert "Sort" not in plan
    assert ON_POSTGRESQL
