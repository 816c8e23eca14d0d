"""The recipes of docs/scaling.md, run: routers, replicas, partitions, Redis Cluster.

The docs include the recipes from docs/recipes/ and these tests use the same
files: the routers and the cluster factory by their dotted paths, as a
settings module names them, and the partitioning DDL by running it.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import tempfile
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import pytest
from django.contrib.auth.models import User
from django.core.management import call_command
from django.db import DatabaseError, connections, router, transaction
from django.test.utils import CaptureQueriesContext, override_settings
from django.utils.module_loading import import_string

from django_eventlog import (
    Aggregate,
    ConcurrentAppend,
    EventRecord,
    IdempotencyConflict,
    IdempotentReplay,
    Log,
    LogNotFound,
    LogState,
    NeverCache,
    cache_stats,
)
from django_eventlog.models import Event
from tests.conftest import ON_POSTGRESQL, stats_delta
from tests.databases import database_alias
from tests.domain import Account, Deposited, Opened
from tests.redis_server import free_port
from tests.versions import release

RECIPES = Path(__file__).resolve().parents[2] / "docs" / "recipes"
PARTITIONED_EVENTS_SQL = RECIPES / "partitioned_events.sql"
EVENT_LOG_ROUTER = "docs.recipes.routers.EventLogRouter"
READ_REPLICA_ROUTER = "docs.recipes.routers.ReadReplicaRouter"
CLUSTER_FACTORY = "docs.recipes.redis_cluster.RedisClusterConnectionFactory"

T = TypeVar("T")


# Databases added at run time. The test settings have only "default"; a
# recipe with a second database gets one here: a file on SQLite, a database
# of the same server on PostgreSQL, dropped afterwards.


def _server_params(settings_dict: dict[str, Any], dbname: str) -> dict[str, Any]:
    params = {
        "dbname": dbname,
        "host": settings_dict["HOST"],
        "port": settings_dict["PORT"],
        "user": settings_dict["USER"],
        "password": settings_dict["PASSWORD"],
    }
    return {name: value for name, value in params.items() if value}


def _on_server(statement: str, name: str) -> None:
    """Run ``statement`` with ``{}`` standing for the database ``name``."""
    import psycopg
    from psycopg import sql

    params = _server_params(connections["default"].settings_dict, "postgres")
    with psycopg.connect(**params, autocommit=True) as conn:
        conn.execute(sql.SQL(statement).format(sql.Identifier(name)))


@contextmanager
def new_database(alias: str, tmp_path: Path) -> Iterator[None]:
    """DATABASES[alias]: a new, empty database (not migrated)."""
    if not ON_POSTGRESQL:
        with database_alias(alias, NAME=str(tmp_path / f"{alias}.sqlite3")):
            yield
        return
    name = f"{connections['default'].settings_dict['NAME']}_{alias}"
    _on_server("DROP DATABASE IF EXISTS {} WITH (FORCE)", name)
    _on_server("CREATE DATABASE {}", name)
    try:
        with database_alias(alias, NAME=name):
            yield
    finally:
        _on_server("DROP DATABASE IF EXISTS {} WITH (FORCE)", name)


def migrate(alias: str) -> None:
    call_command("migrate", database=alias, verbosity=0, interactive=False)


def tables(alias: str) -> set[str]:
    with connections[alias].cursor() as cursor:
        return set(connections[alias].introspection.table_names(cursor))


def race(threads: int, action: Callable[[int], T], alias: str) -> list[T | Exception]:
    """Run ``action(0)`` ... ``action(threads - 1)`` at once, one connection each."""
    barrier = threading.Barrier(threads)
    results: list[T | Exception] = [RuntimeError("did not run")] * threads

    def run(i: int) -> None:
        try:
            connections[alias].connect()
            barrier.wait(timeout=30)
            results[i] = action(i)
        except Exception as e:
            results[i] = e
        finally:
            connections.close_all()

    workers = [threading.Thread(target=run, args=(i,)) for i in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=60)
    return results


# Events on their own database


@pytest.fixture
def events_database(tmp_path: Path) -> Iterator[None]:
    with (
        new_database("events", tmp_path),
        override_settings(DATABASE_ROUTERS=[EVENT_LOG_ROUTER]),
    ):
        migrate("events")
        yield


@pytest.mark.django_db
def test_the_event_log_router_migrates_only_the_library_to_the_events_database(
    events_database: None,
) -> None:
    on_events = tables("events")
    assert {"django_eventlog_log", "django_eventlog_event"} <= on_events
    assert not {"auth_user", "django_content_type", "django_session"} & on_events
    assert router.allow_migrate("events", "django_eventlog")
    assert not router.allow_migrate("default", "django_eventlog")
    assert not router.allow_migrate("events", "auth")
    assert router.allow_migrate("default", "auth")


@pytest.mark.django_db
def test_the_event_log_router_sends_reads_and_writes_to_the_events_database(
    events_database: None,
) -> None:
    assert router.db_for_write(Event) == router.db_for_read(Event) == "events"
    assert router.db_for_write(Log) == router.db_for_read(Log) == "events"
    assert router.db_for_read(User) == "default"

    state = Log.objects.create_log(Opened("ada"), kind="account")
    state = Log.objects.append(state, Deposited(5), idempotency_key="k-1")
    assert Log.objects.reduce(state.log_id, Account).aggregate.balance == 5
    assert [r.index for r in Log.objects.load(state.log_id)] == [0, 1]
    with pytest.raises(IdempotentReplay):
        Log.objects.append(state, Deposited(5), idempotency_key="k-1")
    assert Event.objects.using("events").filter(log_id=state.log_id).count() == 2
    assert not Event.objects.using("default").filter(log_id=state.log_id).exists()

    log = Log.objects.get(pk=state.log_id)
    event = Event.objects.get(log_id=state.log_id, index=0)
    assert log._state.db == event._state.db == "events"
    assert router.allow_relation(log, event)
    assert router.allow_relation(log, User(username="ada")) is False


@pytest.mark.django_db
def test_only_an_atomic_block_on_the_events_database_wraps_appends(
    events_database: None,
) -> None:
    class Undo(Exception):
        pass

    state = Log.objects.create_log(Opened("ada"), kind="account")
    with contextlib.suppress(Undo), transaction.atomic(using="events"):
        Log.objects.append(state, Deposited(1))
        raise Undo
    assert [r.index for r in Log.objects.load(state.log_id)] == [0]

    # transaction.atomic() is the default database's: the append commits.
    with contextlib.suppress(Undo), transaction.atomic():
        Log.objects.append(state, Deposited(2))
        raise Undo
    assert [r.index for r in Log.objects.load(state.log_id)] == [0, 1]


# Read replicas


def replicate(log_id: uuid.UUID, through: int) -> None:
    """Copy the log and its events up to ``through`` from "default" to "replica"."""
    if not Log.objects.using("replica").filter(pk=log_id).exists():
        Log.objects.using("replica").bulk_create(
            [Log.objects.using("default").get(pk=log_id)]
        )
    copied = Event.objects.using("replica").filter(log_id=log_id).count()
    new = Event.objects.using("default").filter(
        log_id=log_id, index__gte=copied, index__lte=through
    )
    Event.objects.using("replica").bulk_create(list(new.order_by("index")))


@pytest.fixture
def lagging_replica(tmp_path: Path) -> Iterator[None]:
    """A "replica" database that the test replicates to by hand."""
    with new_database("replica", tmp_path):
        migrate("replica")
        with override_settings(DATABASE_ROUTERS=[READ_REPLICA_ROUTER]):
            yield


# transaction=True: cached reductions are written when "default" commits.
@pytest.mark.django_db(transaction=True)
def test_a_lagging_replica_never_loses_an_update(lagging_replica: None) -> None:
    assert router.db_for_read(Event) == "replica"
    assert router.db_for_write(Event) == "default"
    state = Log.objects.create_log(Opened("ada"), kind="account")

    # Not yet on the replica: reads say the log does not exist.
    with pytest.raises(LogNotFound):
        Log.objects.reduce(state.log_id, Account)
    with pytest.raises(LogNotFound):
        Log.objects.load(state.log_id)

    for amount in (1, 2, 3):
        state = Log.objects.append(state, Deposited(amount))
    replicate(state.log_id, through=2)

    # The replica has events 0 to 2 of 0 to 3: the reduction misses event 3.
    stale = Log.objects.reduce(state.log_id, Account)
    assert (stale.through_index, stale.aggregate.balance) == (2, 3)
    with pytest.raises(ConcurrentAppend):
        Log.objects.append(stale, Deposited(100))
    assert Event.objects.using("default").filter(log_id=state.log_id).count() == 4

    # Read your writes from the primary: the cached prefix plus event 3.
    before = cache_stats()
    fresh = Log.objects.db_manager("default").reduce(state.log_id, Account)
    assert (fresh.through_index, fresh.aggregate.balance) == (3, 6)
    assert stats_delta(before) == {
        "hits": 1,
        "events_applied_after_hit": 1,
        "writes": 1,
    }
    Log.objects.append(fresh, Deposited(100))

    # The cached reduction may now be ahead of the replica: still a true prefix.
    before = cache_stats()
    again = Log.objects.reduce(state.log_id, Account)
    assert (again.through_index, again.aggregate.balance) == (3, 6)
    assert stats_delta(before) == {"hits": 1}
    replicate(state.log_id, through=4)
    caught_up = Log.objects.reduce(state.log_id, Account)
    assert (caught_up.through_index, caught_up.aggregate.balance) == (4, 106)


# Hash-partitioned events (PostgreSQL)


def run_sql_file(alias: str, path: Path) -> None:
    """Run a SQL file on its own connection, as psql would."""
    import psycopg

    params = _server_params(
        connections[alias].settings_dict, connections[alias].settings_dict["NAME"]
    )
    with psycopg.connect(**params, autocommit=True) as conn:
        conn.execute(path.read_text())


def sql_run(alias: str, statement: str) -> None:
    with connections[alias].cursor() as cursor:
        cursor.execute(statement)


def sql_rows(alias: str, query: str) -> list[tuple[Any, ...]]:
    with connections[alias].cursor() as cursor:
        cursor.execute(query)
        return list(cursor.fetchall())


def partitions_of(alias: str) -> dict[uuid.UUID, set[str]]:
    """Each log's id and the partitions that hold its events."""
    found: dict[uuid.UUID, set[str]] = {}
    query = "SELECT log_id, tableoid::regclass::text FROM django_eventlog_event"
    for log_id, partition in sql_rows(alias, query):
        found.setdefault(log_id, set()).add(partition)
    return found


@pytest.fixture
def partitioned(tmp_path: Path) -> Iterator[str]:
    """A migrated database of its own, where the test partitions the events."""
    with new_database("partitioned", tmp_path):
        migrate("partitioned")
        yield "partitioned"


def partition(alias: str) -> None:
    connections[alias].close()
    run_sql_file(alias, PARTITIONED_EVENTS_SQL)
    connections[alias].connect()
    assert sql_rows(
        alias,
        "SELECT relkind FROM pg_class WHERE oid = 'django_eventlog_event'::regclass",
    ) == [("p",)]


@pytest.mark.postgresql
@pytest.mark.django_db
def test_partitioning_keeps_the_events_and_keys_already_stored(
    partitioned: str,
) -> None:
    store = Log.objects.db_manager(partitioned)
    state = store.create_log(Opened("ada"), kind="account", idempotency_key="open")
    state = store.append(state, Deposited(5), idempotency_key="deposit")
    # An event at a later schema version keeps it.
    noted = release("tests.partitioned.noted", 2, {"note": str})
    state = store.append(state, noted(note="kept"))
    before = [r.as_dict() for r in store.load(state.log_id)]
    columns = "SELECT id, schema_version FROM django_eventlog_event ORDER BY id"
    ids = sql_rows(partitioned, columns)
    assert [version for _, version in ids] == [None, None, 2]

    partition(partitioned)

    assert [r.as_dict() for r in store.load(state.log_id)] == before
    assert sql_rows(partitioned, columns) == ids
    assert sql_rows(
        partitioned,
        "SELECT count(*) FROM django_eventlog_event_unpartitioned",
    ) == [(3,)]
    with pytest.raises(IdempotentReplay) as replay:
        store.create_log(Opened("ada"), kind="account", idempotency_key="open")
    assert (replay.value.log_id, replay.value.event_index) == (state.log_id, 0)
    with pytest.raises(IdempotencyConflict):
        store.append(state, Deposited(6), idempotency_key="deposit")
    # New events continue the ids.
    store.append(state, Deposited(6))
    (new_id,) = sql_rows(
        partitioned, "SELECT id FROM django_eventlog_event WHERE index = 3"
    )[0]
    assert new_id > max(i for i, _ in ids)


@pytest.mark.postgresql
@pytest.mark.django_db
def test_the_library_works_the_same_on_partitioned_events(partitioned: str) -> None:
    partition(partitioned)
    sql_run(partitioned, "DROP TABLE django_eventlog_event_unpartitioned")
    store = Log.objects.db_manager(partitioned)

    # Logs spread over the partitions; each log's events stay in one.
    states = {}
    for i in range(1, 17):
        log_id = uuid.UUID(int=i)
        state = store.create_log(Opened(f"owner {i}"), kind="account", log_id=log_id)
        states[log_id] = store.append(state, Deposited(i))
    where = partitions_of(partitioned)
    assert all(len(found) == 1 for found in where.values())
    assert len(set().union(*where.values())) > 1

    # Reduce (streamed in chunks) and load.
    log_id = uuid.UUID(int=1)
    state = states[log_id]
    for amount in range(2, 10):
        state = store.append(state, Deposited(amount))
    with override_settings(EVENTLOG_CHUNK_SIZE=3):
        reduction = store.reduce(log_id, Account)
    assert reduction.aggregate.indices == list(range(10))
    assert reduction.aggregate.balance == sum(range(10))
    assert [r.index for r in store.load(log_id, start=4, limit=3)] == [4, 5, 6]
    event = Event.objects.using(partitioned).get(log_id=log_id, index=4)
    assert Event.objects.using(partitioned).get(pk=event.pk).index == 4

    # A stale state. PostgreSQL names the partition's constraint, not the
    # one the library knows: it checks the index with one more query.
    with (
        CaptureQueriesContext(connections[partitioned]) as queries,
        pytest.raises(ConcurrentAppend),
    ):
        store.append(states[log_id], Deposited(1))
    assert [q["sql"].split()[0] for q in queries] == ["INSERT", "SELECT"]

    # A state ahead of the log, a missing log, an existing log id.
    with pytest.raises(ConcurrentAppend):
        store.append(LogState(log_id, 12), Deposited(1))
    with pytest.raises(LogNotFound):
        store.append(LogState(uuid.UUID(int=999), 1), Deposited(1))
    with pytest.raises(ConcurrentAppend):
        store.create_log(Opened("again"), kind="account", log_id=log_id)

    # A race on one index: one winner.
    results = race(4, lambda i: store.append(reduction, Deposited(i)), partitioned)
    assert sum(isinstance(r, LogState) for r in results) == 1, results
    assert sum(isinstance(r, ConcurrentAppend) for r in results) == 3, results

    # An idempotency key is unique across partitions: two logs in two.
    first_in: dict[str, uuid.UUID] = {}
    for other, (name,) in where.items():
        if other != log_id:
            first_in.setdefault(name, other)
    a, b = list(first_in.values())[:2]
    on_a = store.append(states[a], Deposited(50), idempotency_key="transfer-1")
    original = (a, on_a.next_index - 1)
    with pytest.raises(IdempotentReplay) as replay:
        store.append(states[a], Deposited(50), idempotency_key="transfer-1")
    assert (replay.value.log_id, replay.value.event_index) == original
    # The same event on the other partition's log is another request.
    for resent in (Deposited(50), Deposited(51)):
        with pytest.raises(IdempotencyConflict) as conflict:
            store.append(states[b], resent, idempotency_key="transfer-1")
        assert (conflict.value.log_id, conflict.value.event_index) == original
    with pytest.raises(IdempotentReplay):
        store.check_idempotency_key("transfer-1", Deposited(50), log_id=a)
    with pytest.raises(IdempotencyConflict):
        store.check_idempotency_key("transfer-1", Deposited(50), log_id=b)
    assert [r.index for r in store.load(b)] == [0, 1]

    # A race on one key, each writer creating a log of its own id: one wins,
    # the others asked for another log (a conflict naming the winner's).
    results = race(
        4,
        lambda i: store.create_log(
            Opened("racer"),
            kind="account",
            log_id=uuid.UUID(int=100 + i),
            idempotency_key="create-once",
        ),
        partitioned,
    )
    (winner,) = [r for r in results if isinstance(r, LogState)]
    conflicts = [r for r in results if isinstance(r, IdempotencyConflict)]
    assert len(conflicts) == 3, results
    assert {(r.log_id, r.event_index) for r in conflicts} == {(winner.log_id, 0)}
    racers = [uuid.UUID(int=100 + i) for i in range(4)]
    assert Log.objects.using(partitioned).filter(pk__in=racers).count() == 1

    # The feed reads across the partitions, page by page, every event once,
    # each log's in index order, and its filters hold.
    stored = sql_rows(partitioned, 'SELECT log_id, "index" FROM django_eventlog_event')
    read: list[tuple[uuid.UUID, int]] = []
    after = None
    while page := store.feed(after, limit=7):
        read += [(r.log_id, r.index) for r in page]
        after = page[-1].position
    assert sorted(read) == sorted(stored)
    assert len(read) == len(set(read))
    for log in {log for log, _ in read}:
        indices = [index for other, index in read if other == log]
        assert indices == sorted(indices)
    opened = store.feed(types=[Opened], limit=1000)
    assert len(opened) == sum(1 for _, index in stored if index == 0)


@pytest.mark.postgresql
@pytest.mark.django_db
def test_partitioned_events_and_keys_are_immutable(partitioned: str) -> None:
    partition(partitioned)
    sql_run(partitioned, "DROP TABLE django_eventlog_event_unpartitioned")
    store = Log.objects.db_manager(partitioned)
    state = store.create_log(Opened("ada"), kind="account", idempotency_key="open")
    for statement in (
        "UPDATE django_eventlog_event SET type = 'x'",
        "UPDATE django_eventlog_event SET log_id = gen_random_uuid()",
        "DELETE FROM django_eventlog_event",
        "UPDATE django_eventlog_event_key SET idempotency_key = 'other'",
        "DELETE FROM django_eventlog_event_key",
    ):
        with (
            pytest.raises(DatabaseError, match="events are immutable"),
            transaction.atomic(using=partitioned),
        ):
            sql_run(partitioned, statement)
    assert [r.index for r in store.load(state.log_id)] == [0]

    # TRUNCATE (Django's flush) empties the keys with the events.
    call_command("flush", database=partitioned, interactive=False, verbosity=0)
    assert sql_rows(partitioned, "SELECT count(*) FROM django_eventlog_event_key") == [
        (0,)
    ]
    store.create_log(Opened("ada"), kind="account", idempotency_key="open")


# Server-side cursors (PgBouncer in transaction pooling mode)


@dataclass
class CursorProbe(Aggregate):
    """Records the server-side cursors open on "stream" while event 5 is applied."""

    aggregate_name = "tests.scaling.cursor_probe"
    cache_policy = NeverCache()
    alias: ClassVar[str] = "stream"
    holdable: list[bool] | None = None
    indices: list[int] = field(default_factory=list)

    def apply(self, record: EventRecord) -> None:
        self.indices.append(record.index)
        if record.index == 5:
            rows = sql_rows(self.alias, "SELECT is_holdable FROM pg_cursors")
            self.holdable = [is_holdable for (is_holdable,) in rows]


def account_with(deposits: int) -> LogState:
    state = Log.objects.create_log(Opened("ada"), kind="account")
    for amount in range(1, deposits + 1):
        state = Log.objects.append(state, Deposited(amount))
    return state


@pytest.mark.postgresql
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    ("disable", "holdable"), [(False, [True]), (True, [])], ids=["cursors", "none"]
)
def test_outside_a_transaction_reduce_streams_through_a_holdable_cursor(
    disable: bool, holdable: list[bool]
) -> None:
    state = account_with(9)
    with (
        database_alias("stream", DISABLE_SERVER_SIDE_CURSORS=disable),
        override_settings(EVENTLOG_CHUNK_SIZE=3),
    ):
        reduction = Log.objects.db_manager("stream").reduce(state.log_id, CursorProbe)
    assert reduction.aggregate.indices == list(range(10))
    # A cursor WITH HOLD outlives its transaction: behind a pooler in
    # transaction mode, the next FETCH may reach another server connection.
    assert reduction.aggregate.holdable == holdable


@pytest.mark.postgresql
@pytest.mark.django_db(transaction=True)
def test_inside_a_transaction_reduce_streams_through_a_cursor_of_that_transaction() -> (
    None
):
    state = account_with(9)
    with (
        database_alias("stream", DISABLE_SERVER_SIDE_CURSORS=False),
        override_settings(EVENTLOG_CHUNK_SIZE=3),
        transaction.atomic(using="stream"),
    ):
        reduction = Log.objects.db_manager("stream").reduce(state.log_id, CursorProbe)
    assert reduction.aggregate.indices == list(range(10))
    assert reduction.aggregate.holdable == [False]


# Redis Cluster


class LocalRedisCluster:
    """Three redis-server processes on 127.0.0.1 joined into one cluster."""

    def __init__(self, nodes: int = 3) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError(
                "redis-server is not installed (Debian: apt-get install redis-server)"
            )
        self.binary = binary
        self.ports = [free_port() for _ in range(nodes)]
        self.bus_ports = [free_port() for _ in range(nodes)]
        self.directory = tempfile.mkdtemp(prefix="eventlog-redis-cluster-")
        self.processes: list[subprocess.Popen[bytes]] = []

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.ports[0]}/0"

    def start(self) -> None:
        import redis

        for port, bus_port in zip(self.ports, self.bus_ports, strict=True):
            command = [
                self.binary,
                "--bind", "127.0.0.1",
                "--port", str(port),
                "--cluster-enabled", "yes",
                "--cluster-port", str(bus_port),
                "--cluster-config-file", f"nodes-{port}.conf",
                "--dir", self.directory,
                "--save", "",
                "--appendonly", "no",
            ]  # fmt: skip
            self.processes.append(
                subprocess.Popen(
                    command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
                )
            )
        self.nodes = [redis.Redis(port=port) for port in self.ports]
        for node in self.nodes:
            self._wait(node.ping)
        slots = 16384
        for i, node in enumerate(self.nodes):
            first, last = (
                i * slots // len(self.nodes),
                (i + 1) * slots // len(self.nodes),
            )
            node.cluster("ADDSLOTSRANGE", first, last - 1)
        for port, bus_port in zip(self.ports[1:], self.bus_ports[1:], strict=True):
            self.nodes[0].cluster("MEET", "127.0.0.1", port, bus_port)
        self._wait(self._ready)

    def _ready(self) -> bool:
        infos = [node.cluster("INFO") for node in self.nodes]
        return all(
            info["cluster_state"] == "ok"
            and int(info["cluster_known_nodes"]) == len(self.nodes)
            for info in infos
        )

    @staticmethod
    def _wait(ready: Callable[[], object]) -> None:
        import time

        import redis

        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                if ready():
                    return
            except redis.ConnectionError:
                pass
            time.sleep(0.05)
        raise RuntimeError("the Redis cluster did not come up")

    def keys_per_node(self) -> list[int]:
        return [node.dbsize() for node in self.nodes]

    def stop(self) -> None:
        for node in getattr(self, "nodes", []):
            node.close()
        for process in self.processes:
            process.terminate()
        for process in self.processes:
            process.wait(timeout=10)
        shutil.rmtree(self.directory, ignore_errors=True)


@pytest.fixture(scope="module")
def redis_cluster() -> Iterator[LocalRedisCluster]:
    cluster = LocalRedisCluster()
    try:
        cluster.start()
    except RuntimeError as e:
        cluster.stop()
        pytest.fail(str(e))
    yield cluster
    # The factory keeps one client per cluster and process: close this one's.
    factory = import_string(CLUSTER_FACTORY)
    for client in factory._clusters.values():
        client.close()
    factory._clusters.clear()
    cluster.stop()


@pytest.fixture
def cluster_cache(
    redis_cluster: LocalRedisCluster, settings: Any
) -> Iterator[LocalRedisCluster]:
    settings.CACHES = {
        **settings.CACHES,
        "eventlog": {
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": redis_cluster.url,
            "OPTIONS": {
                "CONNECTION_FACTORY": CLUSTER_FACTORY,
                "SOCKET_CONNECT_TIMEOUT": 0.5,
                "SOCKET_TIMEOUT": 0.5,
            },
        },
    }
    settings.EVENTLOG_CACHE_ALIAS = "eventlog"
    yield redis_cluster
    for node in redis_cluster.nodes:
        node.flushall()


@pytest.mark.django_db(transaction=True)  # the cache is written on commit
def test_django_redis_with_the_cluster_factory_caches_across_the_nodes(
    cluster_cache: LocalRedisCluster,
) -> None:
    states = [account_with(2) for _ in range(12)]
    before = cache_stats()
    for state in states:
        assert Log.objects.reduce(state.log_id, Account).aggregate.balance == 3
    assert stats_delta(before) == {"misses": 12, "writes": 12}
    per_node = cluster_cache.keys_per_node()
    assert sum(per_node) == 12
    assert sum(1 for keys in per_node if keys) > 1, per_node

    before = cache_stats()
    for state in states:
        Log.objects.append(state, Deposited(10))
        assert Log.objects.reduce(state.log_id, Account).aggregate.balance == 13
    assert stats_delta(before) == {
        "hits": 12,
        "events_applied_after_hit": 12,
        "writes": 12,
    }

    # Clearing by prefix scans every primary node.
    call_command("eventlog_clear_cache", "--all", verbosity=0)
    assert cluster_cache.keys_per_node() == [0, 0, 0]


@pytest.mark.django_db(transaction=True)  # the cache is written on commit
def test_a_one_node_client_on_a_cluster_fails_open(
    redis_cluster: LocalRedisCluster, settings: Any
) -> None:
    settings.CACHES = {
        **settings.CACHES,
        "eventlog": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": redis_cluster.url,
        },
    }
    settings.EVENTLOG_CACHE_ALIAS = "eventlog"
    states = [account_with(2) for _ in range(12)]
    before = cache_stats()
    for state in states:
        assert Log.objects.reduce(state.log_id, Account).aggregate.balance == 3
    # Keys in the slots of the other nodes answer MOVED: logged errors.
    assert stats_delta(before).get("errors", 0) > 0
    assert redis_cluster.keys_per_node()[1:] == [0, 0]
    for node in redis_cluster.nodes:
        node.flushall()
