"""The minimal store: raw psycopg 3 on the simplest table that keeps the same
promises per event, the second baseline of ``benchmarks/eventstores.py``.

One table, no logs table, no foreign key, no trigger, no feed column::

    minimal_event(log_id uuid, "index" bigint,
                  recorded_at timestamptz default now(),
                  idempotency_key varchar(255) unique, type varchar(200),
                  payload jsonb, primary key (log_id, "index"))

* A create is one ``INSERT`` of event 0 under a new time-ordered (uuid7) log
  id; an append is one ``INSERT`` of the next index. Both in autocommit,
  prepared; a violation of the primary key is the concurrency conflict.
* Reads, the warm reduce through Redis and the retries after a conflict are
  the raw store's (:class:`_raw.PsycopgStore`).
"""

from __future__ import annotations

import uuid

from _raw import Handle, PsycopgStore, payload
from _shared import uuid7

SCHEMA = """
CREATE TABLE IF NOT EXISTS minimal_event (
    log_id uuid,
    "index" bigint,
    recorded_at timestamptz DEFAULT now(),
    idempotency_key varchar(255) UNIQUE,
    type varchar(200),
    payload jsonb,
    PRIMARY KEY (log_id, "index")
);
"""
INSERT = (
    'INSERT INTO minimal_event (log_id, "index", type, payload) '
    "VALUES (%s, %s, 'bench.credited', %s)"
)


class MinimalStore(PsycopgStore):
    name = "minimal table"
    schema = SCHEMA
    table = "minimal_event"
    log_index_key = "minimal_event_pkey"

    def insert(self, log_id: uuid.UUID, index: int, amount: int) -> None:
        self.execute(INSERT, [log_id, index, payload(amount)])

    def create(self, amount: int) -> Handle:
        log_id = uuid7()
        self.insert(log_id, 0, amount)
        return log_id, 1

    def fill(self, count: int) -> uuid.UUID:
        log_id = uuid7()
        self.execute(
            'INSERT INTO minimal_event (log_id, "index", type, payload) '
            "SELECT %s, i, 'bench.credited', %s::jsonb "
            "FROM generate_series(0, %s - 1) AS i",
            [log_id, payload(1), count],
        )
        return log_id
