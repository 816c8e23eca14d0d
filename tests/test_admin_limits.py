"""The admin at scale and under hostile data, on either database.

What a page costs must not grow with the number of logs (the kind filter,
the type-filtered timeline), nor with the size of what is stored (payloads
and states are cut with a note, the event list fetches no payload), and no
query parameter can make a page fail with a 500.
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import pytest
from django.db import connection
from django.test import Client, override_settings
from django.utils import timezone

from django_eventlog import Aggregate, EventRecord, queries
from django_eventlog.admin import KindListFilter, LogAdmin
from django_eventlog.models import Event, Log, uuid7
from django_eventlog.sql import catalog_statements
from django_eventlog.timeline import payload_chars, render_json, render_payload
from tests.domain import Deposited
from tests.test_admin import (
    EVENT_LIST,
    LOG_LIST,
    bulk_logs,
    counted_get,
    log_url,
    parse,
    timeline,
)

pytestmark = pytest.mark.django_db

LIMIT = LogAdmin.timeline_payload_limit
DEPTH = LogAdmin.timeline_payload_depth
# The page around a timeline of one event, payload aside, is well under this.
PAGE_BUDGET = 2 * LIMIT + 60_000


def raw_log(*payloads: Any, kind: str = "blob") -> uuid.UUID:
    """A log whose events hold ``payloads`` as stored, whatever their shape."""
    log = Log.objects.create(id=uuid7(), kind=kind)
    for index, payload in enumerate(payloads):
        Event.objects.create(
            log=log, index=index, type=Deposited.type_name, payload=payload
        )
    return log.id


def nested(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = [value]
    return value


# 1. The kind filter and the type filter


def test_kind_filter_lists_each_kind_without_reading_every_log(
    admin_client: Client,
) -> None:
    now = timezone.now()
    for kind in ("order", "account", "payment"):
        bulk_logs(30, 1, kind=kind, newest=now)
    response, sql = counted_get(admin_client, LOG_LIST)
    assert not [q for q in sql if "DISTINCT" in q.upper()]
    choices = [
        a.attrs["href"]
        for a in parse(response).find_all("a")
        if a.attrs.get("href", "").startswith("?kind=")
    ]
    assert choices == ["?kind=account", "?kind=order", "?kind=payment"]
    filtered, _ = counted_get(admin_client, f"{LOG_LIST}?kind=order")
    assert b"\n30 logs\n" in filtered.content


def test_kind_filter_lists_at_most_its_limit(
    admin_client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    now = timezone.now()
    for kind in ("a", "b", "c", "d"):
        bulk_logs(2, 1, kind=kind, newest=now)
    monkeypatch.setattr(KindListFilter, "limit", 2)
    response, _ = counted_get(admin_client, LOG_LIST)
    assert b'href="?kind=a"' in response.content
    assert b'href="?kind=b"' in response.content
    assert b'href="?kind=c"' not in response.content


def test_the_kind_filter_probes_the_kind_index() -> None:
    bulk_logs(20, 1, kind="order", newest=timezone.now())
    with connection.cursor() as cursor:
        kind_index = next(
            name
            for name, info in connection.introspection.get_constraints(
                cursor, Log._meta.db_table
            ).items()
            if info["columns"] == ["kind"] and info["index"]
        )
        if connection.vendor == "postgresql":
            # On 20 rows a sequential scan is cheaper, and whether the planner
            # takes it depends on the table's statistics at that moment. Turned
            # off, it is still taken if the query cannot use the index at all,
            # so the plan shows what the query shape allows, every time.
            cursor.execute("SET LOCAL enable_seqscan = off")
            explain = "EXPLAIN ANALYZE"
        else:
            explain = "EXPLAIN QUERY PLAN"
        kinds = catalog_statements(connection).select_kinds
        cursor.execute(f"{explain} {kinds}", [100])
        plan = "\n".join(" ".join(map(str, row)) for row in cursor.fetchall())
    # Every read of the logs goes through the kind index: no scan of the table.
    # Two probes: the first kind, then the next after each.
    assert plan.count(kind_index) == 2, plan
    assert "Seq Scan" not in plan, plan
    assert not re.search(r"SCAN (TABLE )?django_eventlog_log(?! USING)", plan), plan


def _index_columns() -> dict[str, list[str]]:
    with connection.cursor() as cursor:
        constraints = connection.introspection.get_constraints(
            cursor, Event._meta.db_table
        )
    return {name: info["columns"] for name, info in constraints.items()}


def test_events_are_indexed_by_type_log_and_index() -> None:
    assert ["type", "log_id", "index"] in _index_columns().values()


def test_one_event_is_looked_up_by_the_unique_index_without_statistics() -> None:
    """What the no-gap trigger asks for each insert: on a table never
    analyzed, PostgreSQL's cached plan once picked the type index, whose
    leading log column alone matched, and read the whole log each time."""
    sql = 'SELECT 1 FROM {table} WHERE log_id = %s AND "index" = %s'
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            # A copy with the same indexes that is really never analyzed: the
            # test table itself may have been, by autovacuum, after earlier
            # tests wrote to it.
            cursor.execute(
                "CREATE TEMP TABLE never_analyzed "
                "(LIKE django_eventlog_event INCLUDING INDEXES) ON COMMIT DROP"
            )
            cursor.execute(
                "SELECT indexname FROM pg_indexes WHERE tablename = 'never_analyzed' "
                "AND indexdef LIKE '%%(log_id, index)'"
            )
            (unique_index,) = (row[0] for row in cursor.fetchall())
            # The plan a trigger caches: one for any parameters.
            cursor.execute("SET LOCAL plan_cache_mode = force_generic_plan")
            query = sql.format(table="never_analyzed") % ("$1", "$2")
            cursor.execute(f"PREPARE one_event(uuid, integer) AS {query}")
            cursor.execute(
                "EXPLAIN EXECUTE one_event('00000000-0000-0000-0000-000000000001', 1)"
            )
            plan = " ".join(row[0] for row in cursor.fetchall())
            cursor.execute("DEALLOCATE one_event")
        else:
            query = sql.format(table="django_eventlog_event")
            cursor.execute(f"EXPLAIN QUERY PLAN {query}", ["0" * 32, 1])
            plan = " ".join(str(cell) for row in cursor.fetchall() for cell in row)
    index = (
        unique_index if connection.vendor == "postgresql" else "(log_id=? AND index=?)"
    )
    assert index in plan, plan
    assert "type_log" not in plan, plan


def test_a_type_filtered_timeline_page_is_an_index_range_scan() -> None:
    log = bulk_logs(1, 300, newest=timezone.now())[0]
    sql = (
        'SELECT "index" FROM django_eventlog_event WHERE log_id = %s AND type = %s '
        'AND "index" >= %s ORDER BY "index" LIMIT 51'
    )
    log_id: Any = log.id if connection.vendor == "postgresql" else log.id.hex
    explain = "EXPLAIN" if connection.vendor == "postgresql" else "EXPLAIN QUERY PLAN"
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            # Statistics of this table as it is (a long log, no event of the
            # type), not as other tests left them: with those, one event per
            # log made the unique index look as cheap.
            cursor.execute("ANALYZE django_eventlog_event")
        cursor.execute(f"{explain} {sql}", [log_id, "tests.rare", 0])
        plan = " ".join(str(cell) for row in cursor.fetchall() for cell in row)
    assert "django_eventlog_type_log_idx" in plan, plan
    assert "SORT" not in plan.upper(), plan


# 2. Payloads and states of any size


def test_a_deeply_nested_payload_renders_cut_with_a_note(
    admin_client: Client,
) -> None:
    # 1.8 KB stored; 1.6 MB of HTML when rendered in full.
    log_id = raw_log(nested(900))
    response = admin_client.get(log_url(log_id))
    assert len(response.content) < PAGE_BUDGET
    shown = timeline(response)[0].payload
    assert shown.count("[") == DEPTH
    assert f"nesting deeper than {DEPTH} levels" in shown.splitlines()[-1]


def test_a_large_payload_renders_cut_with_a_note(admin_client: Client) -> None:
    log_id = raw_log({"blob": "x" * 500_000}, {"blob": "y" * 500_000})
    response = admin_client.get(log_url(log_id))
    assert len(response.content) < PAGE_BUDGET
    for entry, letter in zip(timeline(response), "xy", strict=True):
        text, note = entry.payload.rsplit("\n", 1)
        assert len(text) == LIMIT
        assert text.startswith('{"blob": "' + letter * 10)
        assert note == (
            "\u2026 truncated: more than 100,000 characters, the first 10,000 shown."
        )


def test_a_small_payload_renders_whole() -> None:
    assert render_payload('{"a": [1, {"b": 2}]}', limit=LIMIT, depth=DEPTH) == (
        json.dumps({"a": [1, {"b": 2}]}, indent=2)
    )
    assert json.loads(render_json(nested(DEPTH), limit=LIMIT, depth=DEPTH)) == (
        nested(DEPTH)
    )
    assert "\u2026" in render_json(nested(DEPTH + 1), limit=LIMIT, depth=DEPTH)


def test_a_payload_too_deep_to_parse_is_cut_as_stored() -> None:
    deep = "[" * 20_000 + "]" * 20_000
    shown = render_payload(deep, limit=LIMIT, depth=DEPTH)
    assert shown.startswith("[" * LIMIT + "\n")
    assert shown.endswith(": 40,000 characters, the first 10,000 shown.")


def test_the_timeline_reads_no_more_of_a_payload_than_it_may_show() -> None:
    log_id = raw_log({"blob": "x" * 500_000})
    [row] = queries.page_rows(connection.alias, log_id, 0, 2, payload_chars=12)
    assert row[2] == '{"blob": "xx'
    assert payload_chars(LIMIT) == 100_001
    # What render_payload gets is all it needs.
    read = queries.page_rows(
        connection.alias, log_id, 0, 2, payload_chars=payload_chars(LIMIT)
    )[0][2]
    assert render_payload(read, limit=LIMIT, depth=DEPTH).endswith(
        ": more than 100,000 characters, the first 10,000 shown."
    )


@dataclass
class Hoard(Aggregate):
    """Keeps a large, deep record of everything it sees."""

    seen: list[Any] = field(default_factory=list)

    def apply(self, record: EventRecord) -> None:
        self.seen.append(nested(50))
        self.seen.append("z" * 20_000)


@override_settings(EVENTLOG_ADMIN_AGGREGATES={"hoard": Hoard})
def test_a_large_state_renders_cut_with_a_note(admin_client: Client) -> None:
    log_id = raw_log({"amount": 1}, {"amount": 2}, kind="hoard")
    response = admin_client.get(log_url(log_id, "?state=1"))
    page = parse(response)
    states = [pre.text() for pre in page.find_all("pre") if "z" * 100 in pre.text()]
    assert len(states) == 2
    for state in states:
        assert len(state) < LIMIT + 200
        assert state.splitlines()[-1].startswith("\u2026 truncated: nesting deeper")
    assert len(response.content) < PAGE_BUDGET


def test_the_event_list_does_not_fetch_payloads(admin_client: Client) -> None:
    raw_log({"blob": "x" * 1_000})
    response, sql = counted_get(admin_client, EVENT_LIST)
    listed = [q for q in sql if "FROM" in q and "django_eventlog_event" in q]
    assert listed
    assert not [q for q in listed if "payload" in q], listed
    assert b"x" * 1_000 not in response.content
    # The event still links to its place in the timeline.
    assert b"/admin/django_eventlog/log/" in response.content


# 3. NUL characters


@pytest.mark.parametrize(
    "url",
    [
        f"{LOG_LIST}?kind=%00",
        f"{LOG_LIST}?q=%00",
        f"{LOG_LIST}?q=a%00b",
        f"{LOG_LIST}?created_at__gte=%00",
        f"{EVENT_LIST}?q=%00",
        f"{EVENT_LIST}?recorded_at__gte=2026%00",
    ],
)
def test_a_nul_in_a_list_parameter_is_a_bad_request(
    admin_client: Client, url: str
) -> None:
    raw_log({"amount": 1})
    assert admin_client.get(url).status_code == 400


@pytest.mark.parametrize("query", ["?type=a%00b", "?type=%00", "?order=%00"])
def test_a_nul_in_a_timeline_parameter_is_a_bad_request(
    admin_client: Client, query: str
) -> None:
    log_id = raw_log({"amount": 1})
    assert admin_client.get(log_url(log_id, query)).status_code == 400


def test_a_nul_in_an_object_id_is_not_found(admin_client: Client) -> None:
    for url in (f"{LOG_LIST}{quote(chr(0))}/change/", f"{EVENT_LIST}%00/change/"):
        response = admin_client.get(url, follow=True)
        assert response.status_code in (200, 404)
        assert response.redirect_chain in ([], [("/admin/", 302)])
