"""Drop the events' foreign key to the logs (PostgreSQL): the no-gap trigger
and the logs' immutability already hold what it held, for every writer.

- An event at index 0 is inserted only if its log exists, and any other
  only right after the event before it in the same log (migration 0005's
  trigger, which reads the log or that event anyway); so no event names a
  log that was never there.
- A log is never deleted or changed (migration 0005's trigger on the logs
  rejects ``UPDATE`` and ``DELETE``, and ``TRUNCATE`` outside a test
  flush); so no event is left without its log.

The foreign key checked the same again after each insert: a probe of the
logs' primary key, and a ``FOR KEY SHARE`` lock on the log's row, which
every append to a log takes on one row (a hot log's writers share it
through a MultiXact) and which writes to the log's page. What it cost
appends is measured in ``benchmarks/schema_cost.py``
(docs/performance.md).

The model keeps the relation (``Event.log``, ``Log.events``, joins and
``on_delete=PROTECT`` in the ORM) with ``db_constraint=False``. SQLite
keeps its constraint: dropping it would rebuild the table (and drop
migration 0005's triggers with it), and its single writer pays little for
it. ``eventlog_verify`` reports a missing or disabled trigger.
"""

from typing import Any

from django.db import migrations, models

#: The name Django gave the constraint (migration 0001), restored backwards.
FOREIGN_KEY = "django_eventlog_event_log_id_7e5cdfe3_fk_django_eventlog_log_id"

FORWARDS = [
    # By what it is, not by its name: a database may have been set up with
    # another name (the partitioning recipe, a restore). %% is a literal %:
    # schema_editor.execute() formats parameters.
    """
    DO $$
    DECLARE
        name text;
    BEGIN
        FOR name IN
            SELECT conname FROM pg_constraint
            WHERE conrelid = 'django_eventlog_event'::regclass
                AND confrelid = 'django_eventlog_log'::regclass
                AND contype = 'f'
        LOOP
            EXECUTE format(
                'ALTER TABLE django_eventlog_event DROP CONSTRAINT %%I', name
            );
        END LOOP;
    END
    $$
    """,
]
BACKWARDS = [
    f"""
    ALTER TABLE django_eventlog_event ADD CONSTRAINT {FOREIGN_KEY}
    FOREIGN KEY (log_id) REFERENCES django_eventlog_log (id)
    DEFERRABLE INITIALLY DEFERRED
    """,
]


def _run(statements: list[str]) -> Any:
    def run(apps: Any, schema_editor: Any) -> None:
        if schema_editor.connection.vendor != "postgresql":
            return
        for sql in statements:
            schema_editor.execute(sql)

    return run


class Migration(migrations.Migration):
    dependencies = [("django_eventlog", "0010_event_schema_version")]

    operations = [
        migrations.SeparateDatabaseAndState(
            database_operations=[migrations.RunPython(_run(FORWARDS), _run(BACKWARDS))],
            state_operations=[
                migrations.AlterField(
                    model_name="event",
                    name="log",
                    field=models.ForeignKey(
                        db_constraint=False,
                        db_index=False,
                        on_delete=models.PROTECT,
                        related_name="events",
                        to="django_eventlog.log",
                    ),
                ),
            ],
        )
    ]
