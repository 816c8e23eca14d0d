"""The feed's page query at scale: a range scan of its index (PostgreSQL).

The test's transaction builds a scratch schema holding copies of the two
tables, with every index of the real ones under the same names (copied from
``pg_indexes``), fills them with ``SIZE`` events in SQL, analyzes them and
puts the schema first on the ``search_path``, so the library's own page
query (``FeedStatements.page``) reads the copies. The tables are unlogged
(the planner does not care) and the whole schema goes with the rollback.

Each log has ``SIZE // LOGS`` events spread over the whole table; one event
in ``RARE`` has the rare type and one log in ``RARE`` has the rare kind. The
``txid`` grows with the id, over the transaction ids below the horizon, so
every event is delivered.

The unfiltered page, after an event in the middle of the table, must be an
``Index Scan`` of ``django_eventlog_event_feed_idx`` bounded by the position
(an ``Index Cond``), with no ``Sort``. The filtered pages (a rare type, a
rare kind) are run and checked, and their plans and times printed, but not
held to a plan: the planner picks by its estimate of the filter (at 10M
events, the rare type walks the feed index and filters; the rare kind reads
that kind's logs by the kind index and sorts their events), and neither has
an index of its own (``docs/performance.md``, "What the feed costs").
About a minute on 2 CPUs, most of it the fill and the index builds.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
from django.db import connection

from django_eventlog.sql import feed_statements

pytestmark = [pytest.mark.postgresql, pytest.mark.scale]

SIZE = 10_000_000
LOGS = SIZE // 100
RARE = 1_000
LIMIT = 100
SCHEMA = "feedplan"
FEED_INDEX = "django_eventlog_event_feed_idx"
COMMON_KIND, RARE_KIND = "feedplan.common", "feedplan.rare"
COMMON_TYPE, RARE_TYPE = "feedplan.common", "feedplan.rare"
# The log of event i is log i % LOGS, whose id is this uuid of the number.
LOG_UUID = "('00000000-0000-0000-0000-' || lpad(to_hex({}), 12, '0'))::uuid"


def nodes(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """A plan node and every node below it."""
    yield plan
    for child in plan.get("Plans", []):
        yield from nodes(child)


def build(cursor: Any, horizon: int) -> None:
    """The scratch schema, filled, indexed and analyzed; first on the path."""
    cursor.execute("SELECT current_schema()")
    original = cursor.fetchone()[0]
    cursor.execute(f"CREATE SCHEMA {SCHEMA}")
    for table in ("django_eventlog_log", "django_eventlog_event"):
        cursor.execute(
            f"CREATE UNLOGGED TABLE {SCHEMA}.{table} (LIKE {original}.{table})"
        )
    cursor.execute(
        f"INSERT INTO {SCHEMA}.django_eventlog_log (id, kind, created_at) "
        f"SELECT {LOG_UUID.format('j')}, CASE WHEN j %% %s = 3 THEN %s ELSE %s END, "
        "now() FROM generate_series(0, %s) AS j",
        [RARE, RARE_KIND, COMMON_KIND, LOGS - 1],
    )
    # txid: from 1 up to below the horizon, growing with the id.
    cursor.execute(
        f"INSERT INTO {SCHEMA}.django_eventlog_event "
        '(id, log_id, "index", type, payload, recorded_at, idempotency_key, txid) '
        f"SELECT i, {LOG_UUID.format('i %% %s')}, i / %s, "
        "CASE WHEN i %% %s = 7 THEN %s ELSE %s END, "
        """'{"amount": 1}'::jsonb, now(), NULL, 1 + i::bigint * %s / %s """
        "FROM generate_series(1, %s) AS i",
        [LOGS, LOGS, RARE, RARE_TYPE, COMMON_TYPE, horizon - 2, SIZE + 1, SIZE],
    )
    # Built after the fill, which is faster than filling indexed tables.
    cursor.execute(
        "SELECT tablename, indexdef FROM pg_indexes WHERE schemaname = %s "
        "AND tablename IN ('django_eventlog_log', 'django_eventlog_event')",
        [original],
    )
    for table, definition in cursor.fetchall():
        on = f" ON {original}.{table} "
        assert on in definition, definition
        cursor.execute(definition.replace(on, f" ON {SCHEMA}.{table} "))
    cursor.execute(
        f"ANALYZE {SCHEMA}.django_eventlog_log, {SCHEMA}.django_eventlog_event"
    )
    cursor.execute(f"SET LOCAL search_path = {SCHEMA}, {original}")


@pytest.mark.django_db
def test_feed_page_is_a_range_scan_of_its_index() -> None:
    statements = feed_statements(connection)
    assert statements.horizon_value is not None
    started = time.perf_counter()
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL maintenance_work_mem = '256MB'")
        cursor.execute("SELECT pg_current_xact_id()")  # the horizon is past it
        cursor.execute(f"SELECT {statements.horizon_value}")
        horizon = cursor.fetchone()[0]
        assert horizon > 2
        build(cursor, horizon)
        built = time.perf_counter() - started
        # The event in the middle of the table.
        middle = SIZE // 2
        after = [1 + middle * (horizon - 2) // (SIZE + 1), middle]
        cursor.execute("SELECT txid FROM django_eventlog_event WHERE id = %s", [middle])
        assert cursor.fetchone()[0] == after[0]
        report = [f"{SIZE:,} events built and analyzed in {built:.1f} s"]
        for kinds, types in ([], []), ([], [RARE_TYPE]), ([RARE_KIND], []):
            query = statements.page(len(kinds), len(types))
            params = [*after, *kinds, *types, LIMIT]
            cursor.execute(f"EXPLAIN (FORMAT JSON) {query}", params)
            found = cursor.fetchone()[0]
            plan = (json.loads(found) if isinstance(found, str) else found)[0]["Plan"]
            shape = " > ".join(
                f"{n['Node Type']} {n.get('Index Name', '')}".strip()
                for n in nodes(plan)
                if "Subplan Name" not in n and n["Node Type"] != "Function Scan"
            )
            if not kinds and not types:
                scans = [
                    node
                    for node in nodes(plan)
                    if node.get("Index Name") == FEED_INDEX
                    and node["Node Type"] == "Index Scan"
                ]
                text = json.dumps(plan, indent=1)
                assert len(scans) == 1, text
                # The position bounds the range read (the horizon may too).
                assert "ROW(txid, id) > ROW(" in scans[0].get("Index Cond", ""), text
                assert not [n for n in nodes(plan) if "Sort" in n["Node Type"]], text
            took = []
            for _ in range(3):  # the first read after the load, then the best
                start = time.perf_counter()
                cursor.execute(query, params)
                rows = cursor.fetchall()
                took.append((time.perf_counter() - start) * 1000)
                assert len(rows) == LIMIT
                assert (rows[0][0], rows[0][1]) > tuple(after)
            report.append(
                f"page({len(kinds)}, {len(types)}): {took[0]:.1f} ms first, "
                f"{min(took[1:]):.1f} ms at best, {shape}"
            )
    print("; ".join(report), f"; {time.perf_counter() - started:.1f} s in all")
