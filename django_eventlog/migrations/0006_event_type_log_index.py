"""The admin's type index leads with the type: (type, log, index).

Led by the log, as migration 0004 made it, it also matches a lookup of one
event by (log, index), and on a table without statistics (a new database,
or a long import in one transaction) PostgreSQL's cached plan for that
lookup could pick it over ``UNIQUE (log, index)``: each lookup then read
every index entry of the log, and the no-gap trigger (migration 0005) made
an import of one long log quadratic. Led by the type it serves the timeline's
type filter the same way (type and log equal, a range of indices) and
matches nothing else.
"""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("django_eventlog", "0005_guards_for_every_writer")]

    operations = [
        migrations.RemoveIndex(model_name="event", name="django_eventlog_log_type_idx"),
        migrations.AddIndex(
            model_name="event",
            index=models.Index(
                fields=["type", "log", "index"], name="django_eventlog_type_log_idx"
            ),
        ),
    ]
