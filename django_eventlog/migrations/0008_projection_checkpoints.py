"""The projections' checkpoints (one row per projection: where it is in the
feed, its state and last error) and the record of events an operator
skipped. See django_eventlog/projection_runs.py."""

import django.utils.timezone
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("django_eventlog", "0007_feed_position"),
    ]

    operations = [
        migrations.CreateModel(
            name="ProjectionCheckpoint",
            fields=[
                (
                    "name",
                    models.CharField(max_length=200, primary_key=True, serialize=False),
                ),
                ("position", models.CharField(blank=True, max_length=40)),
                ("handled", models.BigIntegerField(default=0)),
                (
                    "state",
                    models.CharField(
                        choices=[
                            ("running", "running"),
                            ("failed", "failed"),
                            ("rebuilding", "rebuilding"),
                        ],
                        default="running",
                        max_length=20,
                    ),
                ),
                ("updated_at", models.DateTimeField(default=django.utils.timezone.now)),
                ("last_error", models.TextField(blank=True)),
                ("error_position", models.CharField(blank=True, max_length=40)),
                ("error_log_id", models.UUIDField(blank=True, null=True)),
                ("error_index", models.IntegerField(blank=True, null=True)),
                ("error_type", models.CharField(blank=True, max_length=200)),
            ],
            options={
                "verbose_name": "projection",
                "verbose_name_plural": "projections",
            },
        ),
        migrations.CreateModel(
            name="ProjectionSkip",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True,
                        primary_key=True,
                        serialize=False,
                        verbose_name="ID",
                    ),
                ),
                ("projection", models.CharField(max_length=200)),
                ("position", models.CharField(max_length=40)),
                ("log_id", models.UUIDField()),
                ("index", models.IntegerField()),
                ("type", models.CharField(max_length=200)),
                ("error", models.TextField(blank=True)),
                ("skipped_by", models.CharField(max_length=200)),
                ("reason", models.TextField(blank=True)),
                ("skipped_at", models.DateTimeField(default=django.utils.timezone.now)),
            ],
            options={
                "verbose_name": "skipped event",
                "verbose_name_plural": "skipped events",
            },
        ),
    ]
