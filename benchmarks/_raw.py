"""The limit: raw psycopg 3 on tables shaped like django-eventlog's.

``raw_log`` and ``raw_event`` are copies of ``django_eventlog_log`` and
``django_eventlog_event`` made with ``CREATE TABLE ... (LIKE ... INCLUDING
ALL)``: the same columns, defaults, identity, CHECK and UNIQUE constraints and
indexes (no foreign key: ours has none since migration 0011). Nothing else is
on the path: no ORM, no validation, no round-trip check of the JSON, no
trigger (the feed's ``txid`` is the writing transaction's id, given in the
``INSERT``).

* Every statement is prepared (``prepare=True``), but the full fold's
  server-side cursor (a ``DECLARE`` is not).
* An append is one ``INSERT ... VALUES`` in autocommit; UNIQUE (log, index)
  is the concurrency check. A create is the log row and its first event in
  one transaction.
* Reads select the same five columns as django-eventlog (index, type, payload
  as text, recorded_at, idempotency_key) and ``json.loads`` the payload; a
  full fold goes through a server-side cursor in a transaction.
* The warm reduce keeps its state as JSON in Redis (redis-py GET and SET)
  and reads only the newer events.

:class:`PsycopgStore` holds all but the writes, which the minimal store
(``_minimal.py``) shares.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from datetime import datetime, timezone
from typing import Any

import psycopg
import redis
from _shared import NOTE, Conflict, Folded

ITERSIZE = 2000  # rows per fetch of the server-side cursor, as EVENTLOG_CHUNK_SIZE

SCHEMA = """
CREATE TABLE IF NOT EXISTS raw_log (LIKE django_eventlog_log INCLUDING ALL);
CREATE TABLE IF NOT EXISTS raw_event (LIKE django_eventlog_event INCLUDING ALL);
"""
# The feed's column (migration 0007) gets the writing transaction's id, as
# the library's trigger gives it (without the trigger's look at the event
# before: there is no trigger here).
TXID = "pg_current_xact_id()::text::bigint"
INSERT_EVENT = (
    "INSERT INTO raw_event (log_id, index, type, payload, recorded_at, "
    f"idempotency_key, txid) VALUES (%s, %s, 'bench.credited', %s, %s, NULL, {TXID})"
)

Handle = tuple[uuid.UUID, int]  # (log id, next index)


def payload(amount: int) -> str:
    return json.dumps({"amount": amount, "note": NOTE}, separators=(",", ":"))


def _now() -> datetime:
    return datetime.now(timezone.utc)


class PsycopgStore:
    """What the raw and the minimal store share: psycopg 3 in autocommit, every
    statement prepared (but the server-side cursor's), the reads, the warm
    reduce through Redis.

    A subclass names its events table and the UNIQUE constraint on (log id,
    index), whose violation is a :class:`Conflict`, and writes events with
    ``insert`` (one event), ``create`` and ``fill``.
    """

    name: str
    schema: str
    table: str
    log_index_key: str

    def __init__(self, conninfo: str, redis_url: str | None = None) -> None:
        self.conn = psycopg.connect(conninfo, autocommit=True)
        self.redis = redis.Redis.from_url(redis_url) if redis_url else None
        self.select = (
            'SELECT "index", type, payload::text, recorded_at, idempotency_key '
            f'FROM {self.table} WHERE log_id = %s AND "index" >= %s ORDER BY "index"'
        )

    @classmethod
    def setup(cls, conninfo: str) -> None:
        with psycopg.connect(conninfo, autocommit=True) as conn:
            conn.execute(cls.schema)

    def execute(self, sql: str, params: Sequence[Any]) -> psycopg.Cursor[Any]:
        return self.conn.execute(sql, params, prepare=True)

    def insert(self, log_id: uuid.UUID, index: int, amount: int) -> None:
        raise NotImplementedError

    def append(self, handle: Handle, amount: int) -> Handle:
        log_id, index = handle
        try:
            self.insert(log_id, index, amount)
        except psycopg.errors.UniqueViolation as e:
            if e.diag.constraint_name != self.log_index_key:
                raise
            raise Conflict(log_id) from None
        return log_id, index + 1

    def _fold(self, log_id: uuid.UUID, start: int, balance: int) -> Folded:
        count = start
        with self.conn.transaction():
            cursor = self.conn.cursor(name="fold")
            cursor.itersize = ITERSIZE
            cursor.execute(self.select, [log_id, start])
            for _index, _type, data, _recorded_at, _key in cursor:
                balance += json.loads(data)["amount"]
                count += 1
            cursor.close()
        return Folded(balance, count, count)

    def reduce(self, log_id: uuid.UUID) -> Folded:
        return self._fold(log_id, 0, 0)

    def reduce_handle(self, log_id: uuid.UUID, known: Handle | None) -> Handle:
        """After a conflict: the events newer than ``known``, decoded."""
        index = 0 if known is None else known[1]
        rows = self.execute(self.select, [log_id, index]).fetchall()
        for row_index, _type, data, _recorded_at, _key in rows:
            json.loads(data)
            index = row_index + 1
        return log_id, index

    def state(self, log_id: uuid.UUID) -> Handle:
        """After a conflict: the next index, from the primary key's index."""
        row: Any = self.execute(
            f'SELECT max("index") + 1 FROM {self.table} WHERE log_id = %s', [log_id]
        ).fetchone()
        if row[0] is None:
            raise LookupError(f"no log {log_id}")
        return log_id, int(row[0])

    def warm_reduce(self, log_id: uuid.UUID) -> Folded:
        """The cached state from Redis, the newer events, the state back."""
        assert self.redis is not None
        key = f"{self.table}:{log_id}"
        cached = self.redis.get(key)
        if cached is None:
            folded = self.reduce(log_id)
        else:
            balance, count = json.loads(cached)
            folded = Folded(balance, count, count)
            rows = self.execute(self.select, [log_id, count]).fetchall()
            for _index, _type, data, _recorded_at, _key in rows:
                balance += json.loads(data)["amount"]
                count += 1
            if count == folded.events:
                return folded
            folded = Folded(balance, count, count)
        self.redis.set(key, json.dumps([folded.balance, folded.events]))
        return folded

    def page(self, log_id: uuid.UUID, start: int, limit: int) -> list[tuple[int, int]]:
        rows = self.execute(self.select + " LIMIT %s", [log_id, start, limit])
        return [(row[0], json.loads(row[2])["amount"]) for row in rows.fetchall()]

    def check_log(self, log_id: uuid.UUID) -> tuple[int, int]:
        """(number of events, max index + 1) straight from the table."""
        row: Any = self.execute(
            f'SELECT count(*), coalesce(max("index"), -1) + 1 FROM {self.table} '
            "WHERE log_id = %s",
            [log_id],
        ).fetchone()
        return int(row[0]), int(row[1])

    def close(self) -> None:
        self.conn.close()
        if self.redis is not None:
            self.redis.close()


class RawStore(PsycopgStore):
    name = "raw psycopg"
    schema = SCHEMA
    table = "raw_event"
    log_index_key = "raw_event_log_id_index_key"

    def insert(self, log_id: uuid.UUID, index: int, amount: int) -> None:
        self.execute(INSERT_EVENT, [log_id, index, payload(amount), _now()])

    def _insert_log(self, now: datetime) -> uuid.UUID:
        log_id = uuid.uuid4()
        self.execute(
            "INSERT INTO raw_log (id, kind, created_at) VALUES (%s, 'account', %s)",
            [log_id, now],
        )
        return log_id

    def create(self, amount: int) -> Handle:
        with self.conn.transaction():
            log_id = self._insert_log(_now())
            self.insert(log_id, 0, amount)
        return log_id, 1

    def fill(self, count: int) -> uuid.UUID:
        now = _now()
        with self.conn.transaction():
            log_id = self._insert_log(now)
            self.execute(
                "INSERT INTO raw_event "
                "(log_id, index, type, payload, recorded_at, txid) "
                f"SELECT %s, i, 'bench.credited', %s::jsonb, %s, {TXID} "
                "FROM generate_series(0, %s - 1) AS i",
                [log_id, payload(1), now, count],
            )
        return log_id
