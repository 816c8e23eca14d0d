"""Who wrote an event and why: the columns of ``EventRecord.metadata``.

``actor``, ``correlation_id``, ``causation_id`` and ``extra``, NULL when
not set (and for every event stored before): adding a NULL column rewrites
no table, on PostgreSQL or SQLite (whose triggers of migrations 0002 and
0005 stay in place). The index on ``correlation_id`` holds only the events
that have one: everything one request did, for the admin's correlation
link.
"""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("django_eventlog", "0008_projection_checkpoints"),
    ]

    operations = [
        migrations.AddField(
            model_name="event",
            name="actor",
            field=models.CharField(blank=True, max_length=200, null=True),
        ),
        migrations.AddField(
            model_name="event",
            name="causation_id",
            field=models.CharField(blank=True, max_length=200, null=True),
        ),
        migrations.AddField(
            model_name="event",
            name="correlation_id",
            field=models.CharField(blank=True, max_length=200, null=True),
        ),
        migrations.AddField(
            model_name="event",
            name="extra",
            field=models.JSONField(blank=True, null=True),
        ),
        migrations.AddIndex(
            model_name="event",
            index=models.Index(
                condition=models.Q(("correlation_id__isnull", False)),
                fields=["correlation_id"],
                name="django_eventlog_corr_idx",
            ),
        ),
    ]
