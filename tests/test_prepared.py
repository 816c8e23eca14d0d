"""The library's hot statements bind on the server and are prepared on
PostgreSQL whatever the DATABASES OPTIONS; everything else stays Django's."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from django.db import IntegrityError, connection, connections, transaction
from django.db.backends.base.base import BaseDatabaseWrapper
from django.test.utils import CaptureQueriesContext, override_settings

from django_eventlog import Log, LogState
from django_eventlog.prepared import prepared_cursor
from tests.domain import Account, Deposited, Opened

pytestmark = [pytest.mark.postgresql, pytest.mark.django_db(transaction=True)]

EVENTS = '"django_eventlog_event"'
#: The page and state SELECTs (the first chunk of a reduce is a page).
READS = f'FROM {EVENTS} WHERE {EVENTS}."log_id"'


def prepared(fragment: str) -> list[tuple[str, int]]:
    """This connection's prepared statements whose text holds ``fragment``:
    (text, how many times they ran)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT statement, generic_plans + custom_plans "
            "FROM pg_prepared_statements WHERE statement LIKE %s",
            [f"%{fragment}%"],
        )
        return [(text, int(runs)) for text, runs in cursor.fetchall()]


def appends() -> list[tuple[str, int]]:
    """The prepared appends (a create's statement starts WITH)."""
    return [
        (text, runs)
        for text, runs in prepared(f"INSERT INTO {EVENTS}")
        if not text.startswith("WITH")
    ]


@pytest.fixture
def options(request: pytest.FixtureRequest) -> Iterator[BaseDatabaseWrapper]:
    """The default database on a new connection with these OPTIONS (the
    parameter), whatever the suite's run set."""
    original = connections["default"]
    wrapper = original.copy()
    wrapper.settings_dict["OPTIONS"] = dict(request.param)
    connections["default"] = wrapper
    try:
        yield wrapper
    finally:
        wrapper.close()
        connections["default"] = original


def write_and_read(deposits: int) -> LogState:
    state = Log.objects.create_log(Opened("ada"), kind="account")
    for amount in range(1, deposits + 1):
        state = Log.objects.append(state, Deposited(amount))
    Log.objects.load(state.log_id)
    Log.objects.reduce(state.log_id, Account)
    Log.objects.state(state.log_id)
    return state


@pytest.mark.parametrize("options", [{}], indirect=True)
def test_with_djangos_default_options_appends_and_reads_are_prepared_once(
    options: BaseDatabaseWrapper,
) -> None:
    write_and_read(3)
    # Three appends, one prepared statement that ran each of them.
    assert [runs for _, runs in appends()] == [3]
    assert [runs for _, runs in prepared("WITH new_log AS")] == [1]
    assert prepared(READS)


@pytest.mark.parametrize("options", [{}], indirect=True)
def test_djangos_own_cursors_keep_binding_client_side(
    options: BaseDatabaseWrapper,
) -> None:
    write_and_read(1)
    with connection.cursor() as cursor:
        for _ in range(10):
            cursor.execute("SELECT %s + 1 AS eventlog_probe", [1])
    # Django's cursor quoted the value in and prepared nothing, as before.
    assert not prepared("eventlog_probe")
    assert Log.objects.filter(kind="account").count() == 1
    assert not prepared("COUNT(*)")


@pytest.mark.parametrize("options", [{}], indirect=True)
def test_the_setting_off_binds_on_the_server_and_prepares_nothing(
    options: BaseDatabaseWrapper,
) -> None:
    with override_settings(EVENTLOG_PREPARED_STATEMENTS=False):
        state = write_and_read(3)
        with prepared_cursor(connection) as cursor:
            assert type(cursor.cursor).__name__ == "BoundCursor"
    assert not prepared(EVENTS)
    assert Log.objects.state(state.log_id) == LogState(state.log_id, 4)


@pytest.mark.parametrize(
    "options",
    [
        {"server_side_binding": True},
        {"server_side_binding": True, "prepare_threshold": 2},
    ],
    indirect=True,
)
def test_with_server_side_binding_djangos_cursor_and_threshold_decide(
    options: BaseDatabaseWrapper,
) -> None:
    with prepared_cursor(connection) as cursor:
        assert type(cursor.cursor).__name__ == "ServerBindingCursor"
    write_and_read(3)
    threshold = options.settings_dict["OPTIONS"].get("prepare_threshold")
    if threshold is None:  # behind PgBouncer: nothing prepared, by anyone
        assert not prepared(EVENTS)
    else:  # psycopg prepares it once it has run ``threshold`` times
        assert [runs for _, runs in appends()] == [3 - threshold]


def test_the_statements_are_seen_by_execute_wrappers() -> None:
    seen: list[str] = []

    def wrapper(execute: Any, sql: str, *args: Any) -> Any:
        seen.append(sql)
        return execute(sql, *args)

    state = Log.objects.create_log(Opened("ada"), kind="account")
    with connection.execute_wrapper(wrapper):
        Log.objects.append(state, Deposited(1))
        Log.objects.state(state.log_id)
    assert [sql.split()[0] for sql in seen] == ["INSERT", "SELECT"]


def test_while_queries_are_logged_djangos_cursor_runs_them_with_their_text() -> None:
    # DEBUG and assertNumQueries: the log needs each statement's text.
    state = Log.objects.create_log(Opened("ada"), kind="account")
    with CaptureQueriesContext(connection) as log:
        Log.objects.append(state, Deposited(1))
        Log.objects.state(state.log_id)
        with prepared_cursor(connection) as cursor:
            assert type(cursor.cursor).__name__ != "BoundCursor"
    assert [query["sql"].split()[0] for query in log] == ["INSERT", "SELECT"]
    assert "'{\"amount\":1}'" in log[0]["sql"]  # the values, quoted in


def test_errors_are_djangos_and_the_transaction_is_the_callers() -> None:
    state = Log.objects.create_log(Opened("ada"), kind="account")
    with pytest.raises(IntegrityError) as raised, prepared_cursor(connection) as c:
        c.execute(
            'INSERT INTO "django_eventlog_log" (id, kind, created_at) '
            "VALUES (%s, 'account', now())",
            [state.log_id],
        )
    assert type(raised.value).__module__ == "django.db.utils"
    with transaction.atomic():
        Log.objects.append(state, Deposited(1))
        transaction.set_rollback(True)
    assert Log.objects.state(state.log_id) == LogState(state.log_id, 1)


def test_a_new_connection_prepares_again() -> None:
    state = Log.objects.create_log(Opened("ada"), kind="account")
    state = Log.objects.append(state, Deposited(1))
    connection.close()
    state = Log.objects.append(state, Deposited(2))
    assert Log.objects.state(state.log_id) == LogState(state.log_id, 3)


@pytest.mark.parametrize("options", [{}], indirect=True)
def test_a_connection_keeps_its_cursor_until_it_reconnects(
    options: BaseDatabaseWrapper,
) -> None:
    with prepared_cursor(connection) as first:
        kept = first.cursor
    with prepared_cursor(connection, prepare=False) as second:
        assert second.cursor is kept  # Django's wrapper closed it: still open
        second.execute("SELECT 1")
        assert second.fetchone() == (1,)
    with prepared_cursor(connection, binary=True) as feed:
        assert feed.cursor is not kept  # the binary one is apart
    # The database's TIME_ZONE changed (Django forgets its cached time zone
    # on such a change): a cursor that loads in the new one.
    options.settings_dict["TIME_ZONE"] = "America/New_York"
    del options.timezone
    with prepared_cursor(connection) as zoned:
        assert zoned.cursor is not kept
        assert str(zoned.cursor.timezone) == "America/New_York"
    connection.close()
    with prepared_cursor(connection) as after:
        assert after.cursor is not kept
