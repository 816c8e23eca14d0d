"""The version of an event's schema: ``DomainEvent.schema_version`` at write.

NULL stands for version 1: every event stored before this migration, and
every version-1 event after it, so adding the column rewrites no table, on
PostgreSQL or SQLite (whose triggers of migrations 0002 and 0005 stay in
place), and a writer that knows nothing of versions stores version 1.
"""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("django_eventlog", "0009_event_metadata"),
    ]

    operations = [
        migrations.AddField(
            model_name="event",
            name="schema_version",
            field=models.SmallIntegerField(blank=True, editable=False, null=True),
        ),
    ]
