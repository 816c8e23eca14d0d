"""Reject UPDATE and DELETE on the events table in the database itself.

See django_eventlog/triggers.py for how Django's flush of a test database
still gets through (migration 0005 refuses TRUNCATE). On SQLite, a later
migration that rebuilds the events table drops these triggers and must create
them again.
"""

from typing import Any

from django.db import migrations

MESSAGE = "django_eventlog: events are immutable"

FORWARDS = {
    "postgresql": [
        f"""
        CREATE FUNCTION django_eventlog_reject_change() RETURNS trigger
        LANGUAGE plpgsql AS $$
        BEGIN
            RAISE EXCEPTION USING
                MESSAGE = '{MESSAGE} (' || TG_OP || ' on ' || TG_TABLE_NAME || ')',
                ERRCODE = 'restrict_violation';
        END
        $$
        """,
        """
        CREATE TRIGGER django_eventlog_event_immutable
        BEFORE UPDATE OR DELETE ON django_eventlog_event
        FOR EACH ROW EXECUTE FUNCTION django_eventlog_reject_change()
        """,
    ],
    "sqlite": [
        f"""
        CREATE TRIGGER django_eventlog_event_no_update
        BEFORE UPDATE ON django_eventlog_event
        BEGIN SELECT RAISE(ABORT, '{MESSAGE}'); END
        """,
        f"""
        CREATE TRIGGER django_eventlog_event_no_delete
        BEFORE DELETE ON django_eventlog_event
        WHEN django_eventlog_events_locked()
        BEGIN SELECT RAISE(ABORT, '{MESSAGE}'); END
        """,
    ],
}

BACKWARDS = {
    "postgresql": [
        "DROP TRIGGER django_eventlog_event_immutable ON django_eventlog_event",
        "DROP FUNCTION django_eventlog_reject_change()",
    ],
    "sqlite": [
        "DROP TRIGGER django_eventlog_event_no_update",
        "DROP TRIGGER django_eventlog_event_no_delete",
    ],
}


def _run(statements: dict[str, list[str]]) -> Any:
    def run(apps: Any, schema_editor: Any) -> None:
        for sql in statements.get(schema_editor.connection.vendor, []):
            schema_editor.execute(sql)

    return run


class Migration(migrations.Migration):
    dependencies = [("django_eventlog", "0001_initial")]

    operations = [migrations.RunPython(_run(FORWARDS), _run(BACKWARDS))]
