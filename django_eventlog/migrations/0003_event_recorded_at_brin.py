"""A BRIN index on recorded_at for the admin's time-range search (PostgreSQL).

Events are appended in time order, so a block-range index is a few pages
large and costs appends next to nothing, where a B-tree would cost each
append an index insert. SQLite has no BRIN: it goes without.
"""

from typing import Any

from django.db import migrations


def _run(sql: str) -> Any:
    def run(apps: Any, schema_editor: Any) -> None:
        if schema_editor.connection.vendor == "postgresql":
            schema_editor.execute(sql)

    return run


class Migration(migrations.Migration):
    dependencies = [("django_eventlog", "0002_immutable_events")]

    operations = [
        migrations.RunPython(
            _run(
                "CREATE INDEX django_eventlog_event_recorded_at_brin "
                "ON django_eventlog_event USING brin (recorded_at)"
            ),
            _run("DROP INDEX django_eventlog_event_recorded_at_brin"),
        )
    ]
