"""Behind PgBouncer in transaction mode: EVENTLOG_PREPARED_STATEMENTS = False
keeps the library working on pooled server connections; with prepared
statements, as the setting's docs say, two clients on one server connection
collide."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from django.db import DatabaseError, connections
from django.test.utils import override_settings

from django_eventlog import Log, LogState, NeverCache
from tests.databases import database_alias
from tests.domain import Account, Deposited, Opened
from tests.pgbouncer_server import PgBouncer

pytestmark = [pytest.mark.postgresql, pytest.mark.django_db(transaction=True)]


class Uncached(Account):
    aggregate_name = "tests.pgbouncer.uncached"
    cache_policy = NeverCache()


@pytest.fixture
def bouncer() -> Iterator[PgBouncer]:
    """One server connection for every client: what one client prepared is
    there when the next one runs."""
    server = PgBouncer(connections["default"].settings_dict, pool_size=1)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def clients(bouncer: PgBouncer) -> Iterator[tuple[str, str]]:
    """Two aliases through the pooler, with Django's default OPTIONS and no
    server-side cursors (Django's advice for transaction pooling)."""
    through = {
        "HOST": "127.0.0.1",
        "PORT": bouncer.port,
        "OPTIONS": {},
        "DISABLE_SERVER_SIDE_CURSORS": True,
    }
    with database_alias("bouncer_a", **through), database_alias("bouncer_b", **through):
        yield "bouncer_a", "bouncer_b"


def prepared_on_the_server(alias: str) -> int:
    with connections[alias].cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_prepared_statements")
        (count,) = cursor.fetchone()
    return int(count)


@override_settings(EVENTLOG_PREPARED_STATEMENTS=False)
def test_with_the_setting_off_clients_share_server_connections(
    clients: tuple[str, str],
) -> None:
    a, b = (Log.objects.db_manager(alias) for alias in clients)
    state = a.create_log(Opened("ada"), kind="account")
    for amount in range(1, 7):
        writer = a if amount % 2 else b
        state = writer.append(state, Deposited(amount))
    assert b.state(state.log_id) == a.state(state.log_id) == LogState(state.log_id, 7)
    assert [record.index for record in b.load(state.log_id)] == list(range(7))
    assert a.reduce(state.log_id, Uncached).aggregate.balance == 21
    # Bound on the server, but nothing left prepared on the pooled connection.
    assert prepared_on_the_server(clients[0]) == 0


def test_with_prepared_statements_two_clients_collide(
    clients: tuple[str, str],
) -> None:
    # Why the setting exists: each client names its statements from _pg3_0
    # on, and here both use the one server connection.
    a, b = (Log.objects.db_manager(alias) for alias in clients)
    a.create_log(Opened("ada"), kind="account")
    assert prepared_on_the_server(clients[0]) == 1
    with pytest.raises(DatabaseError, match="already exists"):
        b.create_log(Opened("bob"), kind="account")
