"""Who and why in the admin, on either database: the timeline shows each
event's actor, correlation id and causation id; a correlation id links to
the event list filtered to it across every log; the event list filters by
actor, reading a bounded window of event ids. Pages stay one bounded query
per page of events, and everything written by a user is escaped.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING

import pytest
from django.contrib.auth.models import Permission, User
from django.db import connection
from django.test import Client
from django.utils import timezone
from django.utils.html import escape

from django_eventlog import Log, event_context
from django_eventlog.event_admin import ActorListFilter
from django_eventlog.models import Event, uuid7
from tests.domain import Deposited, Opened
from tests.test_admin import (
    EVENT_LIST,
    PAGE,
    Node,
    counted_get,
    indices,
    log_url,
    parse,
    result_rows,
)

if TYPE_CHECKING:
    from django.test.client import _MonkeyPatchedWSGIResponse as Response

pytestmark = pytest.mark.django_db

XSS_ACTOR = "<script>alert('actor')</script>"
XSS_CORRELATION = '"><img src=x onerror=alert(1)>'


@dataclass
class Written:
    """Two requests' writes to two logs, and one write with no metadata.

    ``first``: 0 by user:1 in req-A, 1 by user:2 in req-B, 2 by nobody.
    ``second``: 0 by user:1 in req-A, 1 by user:1 in req-A caused by cmd-7.
    By id: first[0], second[0], first[1], second[1], first[2].
    """

    first: uuid.UUID
    second: uuid.UUID


def written() -> Written:
    with event_context(actor="user:1", correlation_id="req-A"):
        first = Log.objects.create_log(Opened("ada"), kind="account")
        second = Log.objects.create_log(Opened("bob"), kind="account")
    with event_context(actor="user:2", correlation_id="req-B"):
        first = Log.objects.append(first, Deposited(5))
    with event_context(actor="user:1", correlation_id="req-A"):
        second = Log.objects.append(
            second, Deposited(7), metadata={"causation_id": "cmd-7"}
        )
    Log.objects.append(first, Deposited(1))
    return Written(first.log_id, second.log_id)


@dataclass
class Shown:
    """The metadata cells of one timeline row."""

    actor: str
    correlation: str
    link: str | None
    causation: str | None


def shown(response: Response) -> list[Shown]:
    rows = []
    for row in parse(response).find_all("tr", "eventlog-event"):
        cell = row.find("td", "eventlog-metadata")

        def text(name: str, cell: Node = cell) -> str | None:
            found = cell.find_all("div", f"eventlog-{name}")
            return found[0].text() if found else None

        links = cell.find_all("a")
        rows.append(
            Shown(
                text("actor") or "",
                text("correlation") or "",
                links[0].attrs["href"] if links else None,
                text("causation"),
            )
        )
    return rows


def listed(response: Response) -> list[tuple[uuid.UUID, int]]:
    """The (log, index) of each row of an event list, top to bottom."""
    return [
        (
            uuid.UUID(row.find(None, "field-timeline_link").text()),
            int(row.find(None, "field-index").text()),
        )
        for row in result_rows(response)
    ]


def sidebar(response: Response, title: str) -> list[tuple[str, str, bool]]:
    """The (text, href, selected) of each choice of a list filter."""
    doc = parse(response)
    for details in doc.find_all("details"):
        summary = details.find("summary").text()
        if summary.strip().lower().startswith(f"by {title}"):
            return [
                (
                    li.find("a").text(),
                    li.find("a").attrs["href"],
                    "selected" in li.classes,
                )
                for li in details.find_all("li")
            ]
    for heading in doc.find_all("h3"):  # Django 4.2: no <details>
        if heading.text().strip().lower().startswith(f"by {title}"):
            ul = _next_ul(doc, heading)
            return [
                (
                    li.find("a").text(),
                    li.find("a").attrs["href"],
                    "selected" in li.classes,
                )
                for li in ul.find_all("li")
            ]
    raise AssertionError(f"no filter {title!r}")


def _next_ul(doc: Node, heading: Node) -> Node:
    nodes = list(doc.iter())
    return next(n for n in nodes[nodes.index(heading) :] if n.tag == "ul")


def follow(client: Client, href: str) -> Response:
    """GET a changelist link (a query string) relative to the event list."""
    assert href.startswith("?")
    return client.get(EVENT_LIST + href)


@pytest.fixture
def log_viewer(db: None) -> Client:
    """A staff user who may view logs but not the event list."""
    user = User.objects.create_user("log-viewer", password="unused", is_staff=True)
    user.user_permissions.set(
        Permission.objects.filter(
            content_type__app_label="django_eventlog", codename="view_log"
        )
    )
    client = Client()
    client.force_login(user)
    return client


# 1. The timeline


def test_the_timeline_shows_who_wrote_each_event_and_why(admin_client: Client) -> None:
    logs = written()
    first = shown(admin_client.get(log_url(logs.first)))
    assert [(s.actor, s.correlation, s.causation) for s in first] == [
        ("user:1", "req-A", None),
        ("user:2", "req-B", None),
        ("", "", None),
    ]
    assert [s.link is not None for s in first] == [True, True, False]
    second = shown(admin_client.get(log_url(logs.second)))
    assert [(s.actor, s.correlation, s.causation) for s in second] == [
        ("user:1", "req-A", None),
        ("user:1", "req-A", "caused by cmd-7"),
    ]
    # Newest first, the metadata stays with its event.
    newest = admin_client.get(log_url(logs.second, "?order=desc"))
    assert indices(newest) == [1, 0]
    assert [s.causation for s in shown(newest)] == ["caused by cmd-7", None]


def test_metadata_in_the_timeline_and_the_event_list_is_escaped(
    admin_client: Client,
) -> None:
    with event_context(actor=XSS_ACTOR, correlation_id=XSS_CORRELATION):
        state = Log.objects.create_log(Opened("eve"), kind="account")
    Log.objects.append(state, Deposited(1), metadata={"causation_id": XSS_ACTOR})
    timeline_page = admin_client.get(log_url(state.log_id))
    [opened, deposited] = shown(timeline_page)
    assert (opened.actor, opened.correlation) == (XSS_ACTOR, XSS_CORRELATION)
    assert deposited.causation == f"caused by {XSS_ACTOR}"
    assert opened.link is not None
    by_correlation = admin_client.get(opened.link)
    assert listed(by_correlation) == [(state.log_id, 0)]
    by_actor = admin_client.get(EVENT_LIST, {"actor": XSS_ACTOR})
    assert listed(by_actor) == [(state.log_id, 0)]
    pages = {
        "timeline": timeline_page,
        "by correlation": by_correlation,
        "by actor": by_actor,
        "event list": admin_client.get(EVENT_LIST),
    }
    for name, page in pages.items():
        content = page.content.decode()
        assert XSS_ACTOR not in content, name
        assert "<img src=x" not in content, name
        assert escape(XSS_ACTOR) in content, name
    [row] = result_rows(by_actor)
    assert row.find(None, "field-actor").text() == XSS_ACTOR
    assert row.find(None, "field-correlation_link").text() == XSS_CORRELATION


def test_without_the_event_list_permission_the_correlation_is_not_a_link(
    log_viewer: Client,
) -> None:
    logs = written()
    rows = shown(log_viewer.get(log_url(logs.second)))
    assert [(s.actor, s.correlation, s.link) for s in rows] == [
        ("user:1", "req-A", None),
        ("user:1", "req-A", None),
    ]
    assert log_viewer.get(f"{EVENT_LIST}?correlation_id=req-A").status_code == 403


@pytest.mark.urls("tests.admin_urls")
def test_the_correlation_link_stays_on_its_admin_site(admin_client: Client) -> None:
    logs = written()
    page = admin_client.get(f"/custom-admin/django_eventlog/log/{logs.first}/change/")
    link = shown(page)[0].link
    assert link is not None
    assert link.startswith("/custom-admin/django_eventlog/event/?")
    rows = result_rows(admin_client.get(link))
    assert sorted(row.find(None, "field-index").text() for row in rows) == [
        "0",
        "0",
        "1",
    ]


def _metadata_log(length: int, *, metadata: bool) -> uuid.UUID:
    log = Log.objects.create(id=uuid7(), kind="account")
    start = timezone.now()
    Event.objects.bulk_create(
        Event(
            log_id=log.id,
            index=index,
            type=Deposited.type_name,
            payload={"amount": index},
            recorded_at=start + timedelta(microseconds=index),
            actor=f"user:{index % 7}" if metadata else None,
            correlation_id=f"req-{index % 5}" if metadata else None,
            causation_id=f"cmd-{index}" if metadata else None,
        )
        for index in range(length)
    )
    return log.id


def test_a_timeline_page_with_metadata_costs_what_one_without_costs(
    admin_client: Client, log_viewer: Client
) -> None:
    with_metadata = _metadata_log(3 * PAGE, metadata=True)
    without = _metadata_log(3 * PAGE, metadata=False)
    for client in (admin_client, log_viewer):
        plain = len(counted_get(client, log_url(without))[1])
        for query in ("", f"?from={2 * PAGE}", "?order=desc", "?type=tests.deposited"):
            response, sql = counted_get(client, log_url(with_metadata, query))
            assert len(sql) == plain, (query, sql)
            rows = shown(response)
            assert len(rows) == PAGE
            assert all(s.actor.startswith("user:") for s in rows)
    # The page's events, with their metadata, come from one LIMIT query.
    _, sql = counted_get(admin_client, log_url(with_metadata))
    reads = [q for q in sql if '"django_eventlog_event"."actor"' in q]
    assert len(reads) == 1
    assert re.search(rf"LIMIT {PAGE + 1}\b", reads[0])


# 2. The correlation link


def test_a_correlation_links_to_its_events_in_every_log(admin_client: Client) -> None:
    logs = written()
    first = shown(admin_client.get(log_url(logs.first)))
    link = first[0].link
    assert link is not None
    path, _, query = link.partition("?")
    assert path == EVENT_LIST
    response = follow(admin_client, f"?{query}")
    # Newest first: everything req-A wrote, in both logs, and nothing else.
    assert listed(response) == [(logs.second, 1), (logs.second, 0), (logs.first, 0)]
    for row in result_rows(response):
        assert row.find(None, "field-actor").text() == "user:1"
        assert row.find(None, "field-correlation_link").text() == "req-A"
        assert row.find(None, "field-type").text() in {
            "tests.opened",
            "tests.deposited",
        }
        assert row.find(None, "field-recorded_at").text()
    assert b"\n3 events\n" in response.content
    assert sidebar(response, "correlation id")[1][0::2] == ("req-A", True)
    # The other request's link: its one event.
    other = first[1].link
    assert other is not None
    assert listed(admin_client.get(other)) == [(logs.first, 1)]
    # From the event list, a correlation links to the same list.
    [row] = result_rows(admin_client.get(other))
    again = row.find(None, "field-correlation_link").find("a").attrs["href"]
    assert listed(admin_client.get(again)) == [(logs.first, 1)]
    # Unfiltered, the correlation filter is not in the sidebar.
    with pytest.raises(AssertionError, match="no filter"):
        sidebar(admin_client.get(EVENT_LIST), "correlation id")
    assert listed(admin_client.get(EVENT_LIST, {"correlation_id": "req-C"})) == []


def _plans(sql: list[str]) -> list[str]:
    """The plans of the given queries, as each database prints them."""
    plans = []
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            # On a few rows a sequential scan is cheaper; turned off, it is
            # still taken when the query cannot use an index at all.
            cursor.execute("SET LOCAL enable_seqscan = off")
            # Plan from statistics of the rows just written: autovacuum may
            # have counted the table between tests, when the rolled-back
            # tests had left it empty, and a table believed empty plans as
            # one row whatever the filter.
            cursor.execute("ANALYZE django_eventlog_event")
            explain = "EXPLAIN"
        else:
            explain = "EXPLAIN QUERY PLAN"
        for query in sql:
            cursor.execute(f"{explain} {query}")
            plans.append("\n".join(" ".join(map(str, r)) for r in cursor.fetchall()))
    return plans


def _event_reads(sql: list[str], column: str) -> list[str]:
    return [
        q for q in sql if 'FROM "django_eventlog_event"' in q and f'"{column}" =' in q
    ]


def test_the_correlation_filter_reads_the_correlation_index(
    admin_client: Client,
) -> None:
    _metadata_log(200, metadata=True)
    written()
    _, sql = counted_get(admin_client, f"{EVENT_LIST}?correlation_id=req-A")
    reads = _event_reads(sql, "correlation_id")
    assert len(reads) == 2  # the count and the page
    for plan in _plans(reads):
        assert "django_eventlog_corr_idx" in plan, plan


# 3. The actor filter


def test_the_actor_filter_lists_only_that_actors_events(admin_client: Client) -> None:
    logs = written()
    unfiltered = admin_client.get(EVENT_LIST)
    choices = sidebar(unfiltered, "actor")
    assert [(text, selected) for text, _, selected in choices] == [
        ("All", True),
        ("user:1", False),
        ("user:2", False),
    ]
    user_1 = follow(admin_client, choices[1][1])
    assert listed(user_1) == [(logs.second, 1), (logs.second, 0), (logs.first, 0)]
    assert {row.find(None, "field-actor").text() for row in result_rows(user_1)} == {
        "user:1"
    }
    assert [selected for *_, selected in sidebar(user_1, "actor")[:3]] == [
        False,
        True,
        False,
    ]
    user_2 = follow(admin_client, choices[2][1])
    assert listed(user_2) == [(logs.first, 1)]
    assert b"\n1 event\n" in user_2.content
    # With the correlation filter: both at once.
    both = admin_client.get(EVENT_LIST, {"actor": "user:2", "correlation_id": "req-A"})
    assert listed(both) == []
    assert listed(admin_client.get(EVENT_LIST, {"actor": "user:3"})) == []
    # "All" lists every event again.
    assert len(listed(follow(admin_client, sidebar(user_1, "actor")[0][1]))) == 5


def test_the_actor_choices_come_from_the_newest_events_only(
    admin_client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    logs = written()
    # The two newest events: first[2] (nobody) and second[1] (user:1).
    monkeypatch.setattr(ActorListFilter, "recent", 2)
    response, sql = counted_get(admin_client, EVENT_LIST)
    assert [text for text, *_ in sidebar(response, "actor")] == ["All", "user:1"]
    assert not [q for q in sql if "DISTINCT" in q.upper()]
    reads = [q for q in sql if '"django_eventlog_event"."actor"' in q]
    assert any(re.search(r"LIMIT 2\b", q) for q in reads), reads
    # An actor not offered still filters, and shows as chosen.
    older = admin_client.get(EVENT_LIST, {"actor": "user:2"})
    assert listed(older) == [(logs.first, 1)]
    assert [(text, selected) for text, _, selected in sidebar(older, "actor")][:3] == [
        ("All", False),
        ("user:1", False),
        ("user:2", True),
    ]
    monkeypatch.setattr(ActorListFilter, "recent", 1_000)
    monkeypatch.setattr(ActorListFilter, "limit", 1)
    response = admin_client.get(EVENT_LIST)
    assert [text for text, *_ in sidebar(response, "actor")] == ["All", "user:1"]


def test_the_actor_filter_reads_a_window_of_ids_and_pages_back(
    admin_client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    logs = written()
    monkeypatch.setattr(ActorListFilter, "window", 2)
    # Windows of two ids, newest first: (second[1], first[2]),
    # (second[0], first[1]), then first[0] and whatever is older.
    page = admin_client.get(EVENT_LIST, {"actor": "user:1"})
    newest = Event.objects.get(log_id=logs.first, index=2).pk
    assert f"By actor (ids {newest - 1:,} to {newest:,})" in page.content.decode()
    seen = [listed(page)]
    older = [c for c in sidebar(page, "actor") if c[0].startswith("Older events")]
    assert not [c for c in sidebar(page, "actor") if c[0].startswith("Newer")]
    page = follow(admin_client, older[0][1])
    seen.append(listed(page))
    back = [c for c in sidebar(page, "actor") if c[0].startswith("Newer events")]
    assert listed(follow(admin_client, back[0][1])) == seen[0]
    older = [c for c in sidebar(page, "actor") if c[0].startswith("Older events")]
    seen.append(listed(follow(admin_client, older[0][1])))
    assert seen == [[(logs.second, 1)], [(logs.second, 0)], [(logs.first, 0)]]
    # Another actor starts from the newest events again.
    other = next(c for c in sidebar(page, "actor") if c[0] == "user:2")
    assert "actor_before" not in other[1]


def test_the_actor_filter_is_a_range_of_the_primary_key(
    admin_client: Client,
) -> None:
    _metadata_log(200, metadata=True)
    _, sql = counted_get(admin_client, f"{EVENT_LIST}?actor=user:3")
    reads = _event_reads(sql, "actor")
    assert len(reads) == 2  # the count and the page
    for plan in _plans(reads):
        if connection.vendor == "postgresql":
            assert re.search(r"Index Cond: \(\(id >= \d+\) AND \(id < \d+\)\)", plan), (
                plan
            )
        else:
            assert "USING INTEGER PRIMARY KEY (rowid>? AND rowid<?)" in plan, plan


@pytest.mark.parametrize("before", ["x", "0", "-5", "", "1.5", str(2**63)])
def test_a_bad_window_is_an_incorrect_lookup(admin_client: Client, before: str) -> None:
    written()
    response = admin_client.get(EVENT_LIST, {"actor": "user:1", "actor_before": before})
    assert response.status_code == 302
    assert response["Location"].endswith("?e=1")


def test_neither_metadata_column_is_sortable(admin_client: Client) -> None:
    written()
    table = parse(admin_client.get(EVENT_LIST)).by_id("result_list")
    headers = table.find("thead").find_all("th")
    sortable = {
        name
        for th in headers
        for name in th.classes
        if name.startswith("column-") and "sortable" in th.classes
    }
    assert {"column-id", "column-type", "column-recorded_at"} <= sortable
    assert not sortable & {"column-actor", "column-correlation_link"}
