"""Give every event a position in the global feed (``Log.objects.feed``).

PostgreSQL: the new ``txid`` column holds the id of the transaction that
wrote the event (``pg_current_xact_id()``), or the ``txid`` of the event
before it in its log if that is greater; the feed is ordered by
``(txid, id)`` and delivers only events whose ``txid`` lies below the
reading snapshot's ``xmin`` (docs/read-side.md says why that never skips an
event). The no-gap trigger of migration 0005, which already reads the event
before, sets the column: every writer gets it, in the same ``INSERT``, at no
extra statement. An index on ``(txid, id)`` serves the feed.

Events stored before this migration get ``txid`` 0 without a rewrite of the
table (a constant default, dropped again at once): they come first in the
feed, in the order of their ids.

SQLite has one writer at a time: the feed is ordered by the id alone, and
the column stays NULL there.
"""

from typing import Any

from django.db import migrations, models

NO_GAP = "django_eventlog_event_no_gap"
FEED_INDEX = "django_eventlog_event_feed_idx"

FORWARDS = {
    "postgresql": [
        # The column, 0 for the events already stored: a constant default
        # costs no rewrite of the table (PostgreSQL 11+), and the trigger
        # sets every new row's value, so the default goes again.
        'ALTER TABLE django_eventlog_event ADD COLUMN "txid" bigint NOT NULL DEFAULT 0',
        'ALTER TABLE django_eventlog_event ALTER COLUMN "txid" DROP DEFAULT',
        f"""
        CREATE OR REPLACE FUNCTION django_eventlog_reject_gap() RETURNS trigger
        LANGUAGE plpgsql AS $$
        DECLARE
            previous_txid bigint;
            previous_id bigint;
        BEGIN
            -- The feed position (migration 0007): this transaction's id...
            NEW."txid" := pg_current_xact_id()::text::bigint;
            IF NEW."index" = 0 THEN
                IF NOT EXISTS (
                    SELECT 1 FROM django_eventlog_log WHERE id = NEW.log_id
                ) THEN
                    RAISE EXCEPTION USING
                        MESSAGE = '{NO_GAP}: event 0 of log ' || NEW.log_id
                            || ', which does not exist',
                        ERRCODE = 'foreign_key_violation',
                        CONSTRAINT = '{NO_GAP}';
                END IF;
            ELSIF NEW."index" > 0 THEN
                SELECT "txid", id INTO previous_txid, previous_id
                FROM django_eventlog_event
                WHERE log_id = NEW.log_id AND "index" = NEW."index" - 1;
                IF NOT FOUND THEN
                    RAISE EXCEPTION USING
                        MESSAGE = '{NO_GAP}: event ' || NEW."index" || ' of log '
                            || NEW.log_id || ' without event ' || NEW."index" - 1,
                        ERRCODE = 'foreign_key_violation',
                        CONSTRAINT = '{NO_GAP}';
                END IF;
                -- ... or the event before's, when that is greater (it was
                -- written by a transaction that got its id later), so that
                -- a log's events never sort before the event before them.
                IF previous_txid >= NEW."txid" THEN
                    NEW."txid" := previous_txid;
                    -- Ties are broken by id. Only a writer that took its id
                    -- before the event before was inserted (an INSERT that
                    -- guessed the index) can hold a smaller one: give it a
                    -- new one.
                    IF previous_id > NEW.id THEN
                        NEW.id := nextval(
                            pg_get_serial_sequence('django_eventlog_event', 'id')
                        );
                    END IF;
                END IF;
            END IF;
            RETURN NEW;
        END
        $$
        """,
        f'CREATE INDEX {FEED_INDEX} ON django_eventlog_event ("txid", id)',
    ],
    "sqlite": ['ALTER TABLE django_eventlog_event ADD COLUMN "txid" bigint NULL'],
}

# Migration 0005's function, as it was.
BACKWARDS = {
    "postgresql": [
        f"DROP INDEX {FEED_INDEX}",
        f"""
        CREATE OR REPLACE FUNCTION django_eventlog_reject_gap() RETURNS trigger
        LANGUAGE plpgsql AS $$
        BEGIN
            IF NEW."index" = 0 THEN
                IF NOT EXISTS (
                    SELECT 1 FROM django_eventlog_log WHERE id = NEW.log_id
                ) THEN
                    RAISE EXCEPTION USING
                        MESSAGE = '{NO_GAP}: event 0 of log ' || NEW.log_id
                            || ', which does not exist',
                        ERRCODE = 'foreign_key_violation',
                        CONSTRAINT = '{NO_GAP}';
                END IF;
            ELSIF NEW."index" > 0 AND NOT EXISTS (
                SELECT 1 FROM django_eventlog_event
                WHERE log_id = NEW.log_id AND "index" = NEW."index" - 1
            ) THEN
                RAISE EXCEPTION USING
                    MESSAGE = '{NO_GAP}: event ' || NEW."index" || ' of log '
                        || NEW.log_id || ' without event ' || NEW."index" - 1,
                    ERRCODE = 'foreign_key_violation',
                    CONSTRAINT = '{NO_GAP}';
            END IF;
            RETURN NEW;
        END
        $$
        """,
        'ALTER TABLE django_eventlog_event DROP COLUMN "txid"',
    ],
    # SQLite 3.35+ drops a column in place (no rebuild, so the triggers stay).
    "sqlite": ['ALTER TABLE django_eventlog_event DROP COLUMN "txid"'],
}


def _run(statements: dict[str, list[str]]) -> Any:
    def run(apps: Any, schema_editor: Any) -> None:
        for sql in statements.get(schema_editor.connection.vendor, []):
            schema_editor.execute(sql)

    return run


class Migration(migrations.Migration):
    dependencies = [("django_eventlog", "0006_event_type_log_index")]

    operations = [
        migrations.SeparateDatabaseAndState(
            database_operations=[migrations.RunPython(_run(FORWARDS), _run(BACKWARDS))],
            state_operations=[
                migrations.AddField(
                    model_name="event",
                    name="txid",
                    field=models.BigIntegerField(editable=False, null=True),
                ),
                # On PostgreSQL only: SQLite's feed reads by id.
                migrations.AddIndex(
                    model_name="event",
                    index=models.Index(fields=["txid", "id"], name=FEED_INDEX),
                ),
            ],
        )
    ]
