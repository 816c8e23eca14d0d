from typing import Any

import django
import django.db.models.deletion
import django.utils.timezone
from django.db import migrations, models

import django_eventlog.models

# Django 5.1 renamed CheckConstraint(check=...) to condition=...; 6.0 removed check.
_condition: dict[str, Any] = {
    "condition" if django.VERSION >= (5, 1) else "check": models.Q(index__gte=0)
}
_index_constraint = models.CheckConstraint(
    name="django_eventlog_event_index_gte_0", **_condition
)


class Migration(migrations.Migration):
    initial = True

    operations = [
        migrations.CreateModel(
            name="Log",
            fields=[
                (
                    "id",
                    models.UUIDField(
                        default=django_eventlog.models.uuid7,
                        editable=False,
                        primary_key=True,
                        serialize=False,
                    ),
                ),
                ("kind", models.CharField(db_index=True, max_length=100)),
                (
                    "created_at",
                    models.DateTimeField(
                        db_index=True, default=django.utils.timezone.now
                    ),
                ),
            ],
            options={"verbose_name": "log", "verbose_name_plural": "logs"},
        ),
        migrations.CreateModel(
            name="Event",
            fields=[
                ("id", models.BigAutoField(primary_key=True, serialize=False)),
                ("index", models.IntegerField()),
                ("type", models.CharField(max_length=200)),
                ("payload", models.JSONField()),
                (
                    "recorded_at",
                    models.DateTimeField(default=django.utils.timezone.now),
                ),
                (
                    "idempotency_key",
                    models.CharField(blank=True, max_length=255, null=True),
                ),
                (
                    "log",
                    models.ForeignKey(
                        db_index=False,
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="events",
                        to="django_eventlog.log",
                    ),
                ),
            ],
            options={
                "verbose_name": "event",
                "verbose_name_plural": "events",
                "constraints": [
                    models.UniqueConstraint(
                        fields=("log", "index"),
                        name="django_eventlog_event_log_index_uniq",
                    ),
                    models.UniqueConstraint(
                        fields=("idempotency_key",),
                        name="django_eventlog_event_idempotency_key_uniq",
                    ),
                    _index_constraint,
                ],
            },
        ),
    ]
