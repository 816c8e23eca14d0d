"""Hold the store's rules in the database for every writer, not only ours.

- No gap: an event is inserted only at index 0 of an existing log, or right
  after the event before it of the same log. A row trigger checks it, so the
  ORM, raw SQL and other services are held to it too; the library's own
  ``INSERT`` no longer carries the check itself.
- Logs are immutable, like events: a trigger rejects ``UPDATE`` and
  ``DELETE`` on the logs table.
- Emptying the tables (``TRUNCATE`` on PostgreSQL, the ``DELETE`` of
  Django's ``flush`` on SQLite) is refused too, except on a connection the
  test helpers let flush (``django_eventlog.testing.allow_flush``). See
  django_eventlog/triggers.py.

On SQLite, a later migration that rebuilds either table drops these triggers
and must create them again; ``eventlog_verify`` reports a missing one with
this migration's SQL to restore it.
"""

from typing import Any

from django.db import migrations

#: The trigger that refuses a gap; also the name its error carries (the
#: constraint name on PostgreSQL, the start of the message on SQLite).
NO_GAP = "django_eventlog_event_no_gap"
#: PostgreSQL: the transaction-local setting the test helpers turn on to flush.
FLUSHING = "django_eventlog.flushing"
LOGS_IMMUTABLE = "django_eventlog: logs are immutable"

FORWARDS = {
    "postgresql": [
        f"""
        CREATE FUNCTION django_eventlog_reject_gap() RETURNS trigger
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
        f"""
        CREATE TRIGGER {NO_GAP}
        BEFORE INSERT ON django_eventlog_event
        FOR EACH ROW EXECUTE FUNCTION django_eventlog_reject_gap()
        """,
        f"""
        CREATE FUNCTION django_eventlog_reject_log_change() RETURNS trigger
        LANGUAGE plpgsql AS $$
        BEGIN
            RAISE EXCEPTION USING
                MESSAGE = '{LOGS_IMMUTABLE} (' || TG_OP || ' on ' || TG_TABLE_NAME
                    || ')',
                ERRCODE = 'restrict_violation';
        END
        $$
        """,
        """
        CREATE TRIGGER django_eventlog_log_immutable
        BEFORE UPDATE OR DELETE ON django_eventlog_log
        FOR EACH ROW EXECUTE FUNCTION django_eventlog_reject_log_change()
        """,
        f"""
        CREATE FUNCTION django_eventlog_reject_truncate() RETURNS trigger
        LANGUAGE plpgsql AS $$
        BEGIN
            IF current_setting('{FLUSHING}', true) IS DISTINCT FROM 'on' THEN
                RAISE EXCEPTION USING
                    MESSAGE = 'django_eventlog: ' || TG_TABLE_NAME
                        || ' cannot be emptied (TRUNCATE)',
                    HINT = 'Test databases flush through '
                        || 'django_eventlog.testing.allow_flush().',
                    ERRCODE = 'restrict_violation';
            END IF;
            RETURN NULL;
        END
        $$
        """,
        """
        CREATE TRIGGER django_eventlog_event_no_truncate
        BEFORE TRUNCATE ON django_eventlog_event
        FOR EACH STATEMENT EXECUTE FUNCTION django_eventlog_reject_truncate()
        """,
        """
        CREATE TRIGGER django_eventlog_log_no_truncate
        BEFORE TRUNCATE ON django_eventlog_log
        FOR EACH STATEMENT EXECUTE FUNCTION django_eventlog_reject_truncate()
        """,
    ],
    "sqlite": [
        f"""
        CREATE TRIGGER {NO_GAP}
        BEFORE INSERT ON django_eventlog_event
        WHEN CASE
            WHEN NEW."index" = 0 THEN NOT EXISTS (
                SELECT 1 FROM django_eventlog_log WHERE id = NEW.log_id
            )
            WHEN NEW."index" > 0 THEN NOT EXISTS (
                SELECT 1 FROM django_eventlog_event
                WHERE log_id = NEW.log_id AND "index" = NEW."index" - 1
            )
            ELSE 0
        END
        BEGIN SELECT RAISE(ABORT, '{NO_GAP}: no event before it, or no log'); END
        """,
        f"""
        CREATE TRIGGER django_eventlog_log_no_update
        BEFORE UPDATE ON django_eventlog_log
        BEGIN SELECT RAISE(ABORT, '{LOGS_IMMUTABLE}'); END
        """,
        f"""
        CREATE TRIGGER django_eventlog_log_no_delete
        BEFORE DELETE ON django_eventlog_log
        WHEN django_eventlog_events_locked()
        BEGIN SELECT RAISE(ABORT, '{LOGS_IMMUTABLE}'); END
        """,
    ],
}

BACKWARDS = {
    "postgresql": [
        "DROP TRIGGER django_eventlog_log_no_truncate ON django_eventlog_log",
        "DROP TRIGGER django_eventlog_event_no_truncate ON django_eventlog_event",
        "DROP FUNCTION django_eventlog_reject_truncate()",
        "DROP TRIGGER django_eventlog_log_immutable ON django_eventlog_log",
        "DROP FUNCTION django_eventlog_reject_log_change()",
        f"DROP TRIGGER {NO_GAP} ON django_eventlog_event",
        "DROP FUNCTION django_eventlog_reject_gap()",
    ],
    "sqlite": [
        "DROP TRIGGER django_eventlog_log_no_delete",
        "DROP TRIGGER django_eventlog_log_no_update",
        f"DROP TRIGGER {NO_GAP}",
    ],
}


def _run(statements: dict[str, list[str]]) -> Any:
    def run(apps: Any, schema_editor: Any) -> None:
        for sql in statements.get(schema_editor.connection.vendor, []):
            schema_editor.execute(sql)

    return run


class Migration(migrations.Migration):
    dependencies = [("django_eventlog", "0004_event_log_type_index")]

    operations = [migrations.RunPython(_run(FORWARDS), _run(BACKWARDS))]
