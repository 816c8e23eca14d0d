"""The peer: the ``eventsourcing`` library (9.5.x) with its PostgreSQL persistence.

Every method goes through the library's public API (``Application``,
``Repository``, ``EventStore``). Settings, all passed in the ``env`` dict;
``os.environ`` is ignored (``construct_env``) so apps can coexist in a process:

- ``PERSISTENCE_MODULE=eventsourcing.postgres``: ``PostgresApplicationRecorder``.
- ``POSTGRES_ENABLE_DB_FUNCTIONS=y``: one prepared ``SELECT es_insert_events_uuid(...)``
  per save, instead of a pipelined transaction with LOCK TABLE, NOTIFY and INSERT.
- ``POSTGRES_POOL_SIZE=1``, ``POSTGRES_MAX_OVERFLOW=0``: one thread, one connection.
- ``ORIGINATOR_ID_TYPE=uuid`` (the default): a 16-byte key, not text.
- No ``CIPHER_TOPIC``/``CIPHER_KEY``/``COMPRESSOR_TOPIC``; the stdlib-json
  ``JSONTranscoder`` is the only transcoder the library ships.
- ``AGGREGATE_CACHE_MAXSIZE=1000`` with fast-forward (the default): only
  ``reduce_handle`` uses the cache. A hit reads just the events after the cached
  version (``Repository.get``), so it never returns a stale aggregate.
  ``reduce`` and ``reduce_from_snapshot`` use their own cache-less ``Repository``.
- ``IS_SNAPSHOTTING_ENABLED=y`` only with ``snapshots=True``: a ``*_snapshots`` table.
- ``SINGLE_ROW_TRACKING`` is left alone: it affects only the tracking tables of
  process applications, which this app does not create.

Extra or less work compared with a plain event table (checked in 9.5.6's source):

- The table ``accountsapp_events`` has primary key ``(originator_id,
  originator_version)`` and a ``notification_id bigserial`` with its own unique
  index, the app-wide notification log: each insert also takes a sequence value
  and updates a second index. ``select_events`` reads ``SELECT *`` (that column too).
- The insert function (``sql_create_pg_function_insert_events``) runs ``NOTIFY``,
  then ``INSERT ... SELECT ... FROM unnest(events) RETURNING notification_id``.
  It takes no table lock. Without it, ``insert_events`` -> ``_insert_stored_events``
  -> ``_lock_table`` runs ``LOCK TABLE ... IN EXCLUSIVE MODE``, which serialises
  all of the app's writers. Either way, PostgreSQL's ``NOTIFY`` serialises
  commits: ``PreCommit_Notify`` (async.c) holds a cluster-wide lock on
  "database 0" until after commit.
- The events reach the function as an array of the composite type
  ``stored_event_uuid``. psycopg sends it as text, escaping each field
  (``_dump_text_sequence``), about 40% of ``fill``'s time.
- A payload is JSON (``JSONTranscoder``, stdlib ``json``):
  ``Mapper.to_stored_event`` stores ``vars(event)`` minus id and version, so it
  also holds ``{"timestamp":{"_type_":"datetime_iso","_data_":"..."}}``. The
  first event also holds the ``originator_topic``. Each row also stores the
  event class's topic (text). ``Mapper.to_domain_event`` calls ``resolve_topic``,
  a Python ``object_hook`` for each JSON object and ``datetime.fromisoformat``.
- Reads are not streamed. ``PostgresAggregateRecorder.select_events``
  ``fetchall()``s ``dict_row`` rows into a list of ``StoredEvent``, so a whole log
  sits in memory. ``EventStore.get`` ``map``s it lazily to domain events, which
  ``project_aggregate`` folds one by one (``CanMutateAggregate.mutate`` checks
  id and version). Per event, ``project_aggregate`` runs
  ``assert isinstance(domain_event, CanMutateProtocol)``, a runtime-checkable
  ``Protocol``: on Python 3.11 that is about half of a cold reduce (gone with
  ``python -O``).
- A concurrency conflict is the primary-key violation, raised as
  ``eventsourcing.persistence.IntegrityError`` (a ``RecordConflictError``).
- ``create_table`` runs ``CREATE OR REPLACE FUNCTION`` every time an app starts.
  Apps that start at the same moment fail with "tuple concurrently updated", so
  ``PeerStore`` builds its app under an advisory lock.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

import psycopg
from _shared import NOTE, Conflict, Folded
from eventsourcing.application import Application, Repository
from eventsourcing.domain import Aggregate
from eventsourcing.persistence import IntegrityError
from eventsourcing.utils import Environment, EnvType

FILL_BATCH = 1000  # pending events per save in fill()
# Serialises CREATE TABLE/TYPE/FUNCTION when several processes start at once.
_DDL_LOCK = 0x7065657200  # arbitrary advisory lock key


class Account(Aggregate):
    class Credited(Aggregate.Event):
        amount: int
        note: str

        def apply(self, aggregate: Any) -> None:
            aggregate.balance += self.amount
            aggregate.count += 1

    class Created(Credited, Aggregate.Created):
        """The first ``Credited``: the library needs a "created" event first."""

    def __init__(self, amount: int, note: str) -> None:
        # Created.apply() then credits the amount, as for every later event.
        self.balance = 0
        self.count = 0

    def credit(self, amount: int, note: str) -> None:
        self.trigger_event(self.Credited, amount=amount, note=note)


class AccountsApp(Application[UUID]):
    def construct_env(self, name: str, env: EnvType | None = None) -> Environment:
        return Environment(name, env)  # no os.environ


Handle = Account


def _folded(account: Account) -> Folded:
    return Folded(account.balance, account.count, account.version)


class PeerStore:
    name = "eventsourcing"

    def __init__(
        self,
        *,
        host: str,
        port: int,
        user: str,
        password: str,
        dbname: str,
        snapshots: bool = False,
    ) -> None:
        env = {
            "PERSISTENCE_MODULE": "eventsourcing.postgres",
            "POSTGRES_HOST": host,
            "POSTGRES_PORT": str(port),
            "POSTGRES_USER": user,
            "POSTGRES_PASSWORD": password,
            "POSTGRES_DBNAME": dbname,
            "POSTGRES_POOL_SIZE": "1",
            "POSTGRES_MAX_OVERFLOW": "0",
            "POSTGRES_ENABLE_DB_FUNCTIONS": "y",
            "ORIGINATOR_ID_TYPE": "uuid",
            "CREATE_TABLE": "y",
            "AGGREGATE_CACHE_MAXSIZE": "1000",
            "IS_SNAPSHOTTING_ENABLED": "y" if snapshots else "n",
        }
        with psycopg.connect(
            host=host, port=port, user=user, password=password, dbname=dbname
        ) as conn:
            conn.execute("SELECT pg_advisory_lock(%s)", (_DDL_LOCK,))
            self.app = AccountsApp(env)
        # One cache-less repository per kind of cold read.
        self._cold = Repository(self.app.events)
        self._from_snapshot = Repository(
            self.app.events, snapshot_store=self.app.snapshots
        )

    def create(self, amount: int) -> Handle:
        account = Account(amount, NOTE)
        self.app.save(account)
        return account

    def append(self, handle: Handle, amount: int) -> Handle:
        handle.credit(amount, NOTE)
        try:
            self.app.save(handle)
        except IntegrityError as e:
            raise Conflict(str(e)) from e
        return handle

    def reduce_handle(self, log_id: UUID, known: Handle | None = None) -> Handle:
        # ``known`` is unused: after a Conflict it holds the unsaved event. The
        # cache plays its part (a hit reads only the newer events).
        account: Account = self.app.repository.get(log_id)
        return account

    def log_id(self, handle: Handle) -> UUID:
        return handle.id

    def reduce(self, log_id: UUID) -> Folded:
        return _folded(self._cold.get(log_id))

    def fill(self, count: int) -> UUID:
        account = Account(1, NOTE)
        for _ in range(count - 1):
            account.credit(1, NOTE)
            if len(account.pending_events) >= FILL_BATCH:
                self.app.save(account)
        self.app.save(account)
        return account.id

    def take_snapshot(self, log_id: UUID) -> None:
        self.app.take_snapshot(log_id)

    def reduce_from_snapshot(self, log_id: UUID) -> Folded:
        return _folded(self._from_snapshot.get(log_id))

    def page(self, log_id: UUID, start: int, limit: int) -> list[tuple[int, int]]:
        rows = []
        for e in self.app.events.get(log_id, gt=start, limit=limit):
            assert isinstance(e, Account.Credited)
            rows.append((e.originator_version - 1, e.amount))
        return rows

    def close(self) -> None:
        self.app.close()
