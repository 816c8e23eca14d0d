"""An index on (log, type, index) for the admin timeline's type filter.

With it, a page of one type is a range scan of the index; without it, the
page reads the log's events in index order until it has found enough of the
type, which on a long log with a rare type is all of them.
"""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("django_eventlog", "0003_event_recorded_at_brin")]

    operations = [
        migrations.AddIndex(
            model_name="event",
            index=models.Index(
                fields=["log", "type", "index"], name="django_eventlog_log_type_idx"
            ),
        ),
    ]
