-- Hash-partition django_eventlog's events table by log (PostgreSQL 13 or later).
--
-- Run it once, after `manage.py migrate` has applied django_eventlog's
-- migrations, while nothing writes events:
--
--     psql -v ON_ERROR_STOP=1 -f partitioned_events.sql
--
-- It renames the current table to django_eventlog_event_unpartitioned, creates
-- the partitioned table under the old name, copies every event across and
-- keeps the old table (drop it once you are satisfied). It runs in one
-- transaction: if any statement fails, nothing changes.

BEGIN;

-- No reads or writes of events until COMMIT.
LOCK TABLE django_eventlog_event IN ACCESS EXCLUSIVE MODE;

-- Free the names the new table takes. Constraints that are indexes, indexes
-- and sequences need names unique in the schema; the others only per table.
ALTER TABLE django_eventlog_event RENAME TO django_eventlog_event_unpartitioned;
ALTER TABLE django_eventlog_event_unpartitioned
    RENAME CONSTRAINT django_eventlog_event_pkey
    TO django_eventlog_event_unpartitioned_pkey;
ALTER TABLE django_eventlog_event_unpartitioned
    RENAME CONSTRAINT django_eventlog_event_log_index_uniq
    TO django_eventlog_event_unpartitioned_log_index_uniq;
ALTER TABLE django_eventlog_event_unpartitioned
    RENAME CONSTRAINT django_eventlog_event_idempotency_key_uniq
    TO django_eventlog_event_unpartitioned_idempotency_key_uniq;
ALTER INDEX django_eventlog_event_recorded_at_brin
    RENAME TO django_eventlog_event_unpartitioned_recorded_at_brin;
ALTER INDEX django_eventlog_type_log_idx
    RENAME TO django_eventlog_event_unpartitioned_type_log_idx;
ALTER INDEX django_eventlog_event_feed_idx
    RENAME TO django_eventlog_event_unpartitioned_feed_idx;
ALTER INDEX django_eventlog_corr_idx
    RENAME TO django_eventlog_event_unpartitioned_corr_idx;
ALTER SEQUENCE django_eventlog_event_id_seq
    RENAME TO django_eventlog_event_unpartitioned_id_seq;

-- The same columns, names and types as the model's table. The primary key
-- must include the partition key: (id, log_id). Django still treats id as
-- the primary key; the sequence keeps it unique.
CREATE SEQUENCE django_eventlog_event_id_seq AS bigint;
CREATE TABLE django_eventlog_event (
    id bigint NOT NULL DEFAULT nextval('django_eventlog_event_id_seq'),
    "index" integer NOT NULL,
    type varchar(200) NOT NULL,
    payload jsonb NOT NULL,
    recorded_at timestamp with time zone NOT NULL,
    idempotency_key varchar(255),
    log_id uuid NOT NULL,
    -- The feed position's first part; the no-gap trigger sets it (0007).
    txid bigint NOT NULL,
    -- Who wrote the event and why (0009).
    actor varchar(200),
    correlation_id varchar(200),
    causation_id varchar(200),
    extra jsonb,
    -- The event class's schema version at write, NULL for 1 (0010).
    schema_version smallint,
    CONSTRAINT django_eventlog_event_pkey PRIMARY KEY (id, log_id),
    -- Named as in the model. Each partition gets an index of its own
    -- (django_eventlog_event_p0_log_id_index_key, ...): a violation names that.
    CONSTRAINT django_eventlog_event_log_index_uniq UNIQUE (log_id, "index"),
    -- No foreign key to the logs (migration 0011): the no-gap trigger
    -- refuses event 0 of a missing log, and logs are never deleted.
    CONSTRAINT django_eventlog_event_index_gte_0 CHECK ("index" >= 0)
) PARTITION BY HASH (log_id);
ALTER SEQUENCE django_eventlog_event_id_seq OWNED BY django_eventlog_event.id;

-- 8 partitions. The modulus is fixed once there is data: choose it for the
-- size you expect (each partition's indexes should fit in memory).
CREATE TABLE django_eventlog_event_p0 PARTITION OF django_eventlog_event
    FOR VALUES WITH (MODULUS 8, REMAINDER 0);
CREATE TABLE django_eventlog_event_p1 PARTITION OF django_eventlog_event
    FOR VALUES WITH (MODULUS 8, REMAINDER 1);
CREATE TABLE django_eventlog_event_p2 PARTITION OF django_eventlog_event
    FOR VALUES WITH (MODULUS 8, REMAINDER 2);
CREATE TABLE django_eventlog_event_p3 PARTITION OF django_eventlog_event
    FOR VALUES WITH (MODULUS 8, REMAINDER 3);
CREATE TABLE django_eventlog_event_p4 PARTITION OF django_eventlog_event
    FOR VALUES WITH (MODULUS 8, REMAINDER 4);
CREATE TABLE django_eventlog_event_p5 PARTITION OF django_eventlog_event
    FOR VALUES WITH (MODULUS 8, REMAINDER 5);
CREATE TABLE django_eventlog_event_p6 PARTITION OF django_eventlog_event
    FOR VALUES WITH (MODULUS 8, REMAINDER 6);
CREATE TABLE django_eventlog_event_p7 PARTITION OF django_eventlog_event
    FOR VALUES WITH (MODULUS 8, REMAINDER 7);

-- Migration 0003's BRIN index, migration 0006's index for the admin
-- timeline's type filter, migration 0007's for the feed, migration 0009's
-- for correlation ids, and an index to find an event by its key.
CREATE INDEX django_eventlog_event_recorded_at_brin
    ON django_eventlog_event USING brin (recorded_at);
CREATE INDEX django_eventlog_type_log_idx
    ON django_eventlog_event (type, log_id, "index");
CREATE INDEX django_eventlog_event_feed_idx
    ON django_eventlog_event (txid, id);
CREATE INDEX django_eventlog_corr_idx
    ON django_eventlog_event (correlation_id)
    WHERE correlation_id IS NOT NULL;
CREATE INDEX django_eventlog_event_idempotency_key_idx
    ON django_eventlog_event (idempotency_key)
    WHERE idempotency_key IS NOT NULL;

-- Idempotency keys stay unique across all partitions through a table of
-- their own. The trigger claims the key in the same statement as the
-- INSERT of the event, so a used key fails that INSERT with a unique
-- violation, as the unpartitioned table's UNIQUE (idempotency_key) did.
CREATE TABLE django_eventlog_event_key (
    idempotency_key varchar(255) NOT NULL,
    log_id uuid NOT NULL,
    "index" integer NOT NULL,
    CONSTRAINT django_eventlog_event_idempotency_key_uniq
        PRIMARY KEY (idempotency_key)
);

CREATE FUNCTION django_eventlog_claim_idempotency_key() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO django_eventlog_event_key (idempotency_key, log_id, "index")
    VALUES (NEW.idempotency_key, NEW.log_id, NEW."index");
    RETURN NULL;
END
$$;

CREATE TRIGGER django_eventlog_event_claim_key
    AFTER INSERT ON django_eventlog_event
    FOR EACH ROW WHEN (NEW.idempotency_key IS NOT NULL)
    EXECUTE FUNCTION django_eventlog_claim_idempotency_key();

-- TRUNCATE of the events (Django's flush, test teardown) empties the keys too.
CREATE FUNCTION django_eventlog_truncate_idempotency_keys() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    TRUNCATE django_eventlog_event_key;
    RETURN NULL;
END
$$;

CREATE TRIGGER django_eventlog_event_truncate_keys
    AFTER TRUNCATE ON django_eventlog_event
    FOR EACH STATEMENT
    EXECUTE FUNCTION django_eventlog_truncate_idempotency_keys();

-- Events and their keys stay immutable (migration 0002's function), and the
-- events cannot be emptied but by a test flush (migration 0005's).
CREATE TRIGGER django_eventlog_event_immutable
    BEFORE UPDATE OR DELETE ON django_eventlog_event
    FOR EACH ROW EXECUTE FUNCTION django_eventlog_reject_change();
CREATE TRIGGER django_eventlog_event_key_immutable
    BEFORE UPDATE OR DELETE ON django_eventlog_event_key
    FOR EACH ROW EXECUTE FUNCTION django_eventlog_reject_change();
CREATE TRIGGER django_eventlog_event_no_truncate
    BEFORE TRUNCATE ON django_eventlog_event
    FOR EACH STATEMENT EXECUTE FUNCTION django_eventlog_reject_truncate();

-- Move the events across, ids, keys and feed positions included, and
-- continue the ids.
INSERT INTO django_eventlog_event
    (id, "index", type, payload, recorded_at, idempotency_key, log_id, txid,
     actor, correlation_id, causation_id, extra, schema_version)
SELECT id, "index", type, payload, recorded_at, idempotency_key, log_id, txid,
    actor, correlation_id, causation_id, extra, schema_version
FROM django_eventlog_event_unpartitioned;
SELECT setval(
    'django_eventlog_event_id_seq',
    (SELECT coalesce(max(id), 0) + 1 FROM django_eventlog_event),
    false
);

-- No gap and the feed position, for every writer (the function of
-- migrations 0005 and 0007), from now on: created
-- after the copy, as pg_dump does, so the copy does not check each row.
CREATE TRIGGER django_eventlog_event_no_gap
    BEFORE INSERT ON django_eventlog_event
    FOR EACH ROW EXECUTE FUNCTION django_eventlog_reject_gap();

-- Autovacuum never analyzes a partitioned table itself: do it now, and
-- again from time to time, so the planner and the admin's estimated count
-- know its size.
ANALYZE django_eventlog_event;

COMMIT;
