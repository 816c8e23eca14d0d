"""The read-only admin of logs and events, on either database.

Pages are fetched with the test client and read back with a small HTML tree
builder, so assertions are on what an operator sees: rows, cells and links.
Query counts come from ``CaptureQueriesContext``; the content type cache is
cleared before each counted request so that counts do not depend on which
test ran first.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from datetime import timezone as dt_timezone
from html.parser import HTMLParser
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import urlencode

import django
import pytest
from django.contrib import admin
from django.contrib.admin.utils import display_for_value
from django.contrib.auth.models import Permission, User
from django.contrib.contenttypes.models import ContentType
from django.db import connection
from django.db.models import Count, Max
from django.test import Client, RequestFactory, override_settings
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import dateformat, timezone
from django.utils.html import escape
from pytest_django import DjangoAssertNumQueries

from django_eventlog import Aggregate, DomainEvent, EventRecord
from django_eventlog.admin import (
    EstimatedCountPaginator,
    EventAdmin,
    LogAdmin,
    ReadOnlyAdmin,
)
from django_eventlog.models import Event, Log, uuid7
from testproject.payments.events import (
    Authorized,
    Captured,
    PaymentRequest,
    Refunded,
    Requested,
)
from tests.admin_urls import CUSTOM_TIMELINE_PAGE_SIZE
from tests.bulk import bulk_create_events
from tests.domain import Deposited, Opened

if TYPE_CHECKING:
    from django.test.client import _MonkeyPatchedWSGIResponse as Response

pytestmark = pytest.mark.django_db

LOG_LIST = "/admin/django_eventlog/log/"
EVENT_LIST = "/admin/django_eventlog/event/"
# Session, user, (PostgreSQL: the pg_class estimate), COUNT of logs, the page
# of logs, the distinct kinds of the kind filter.
LOG_LIST_MAX_QUERIES = 6
# A long log: ten timeline pages. tests/reliability/test_admin_long_log.py
# pages through one of 100,000 events.
LONG_LOG_LENGTH = 500
BULK_BATCH = 5_000
PAGE = LogAdmin.timeline_page_size

XSS_PAYLOAD = "<script>alert(1)</script>"
XSS_KEY = '"><img src=x onerror=alert(1)>'


class Note(DomainEvent):
    """An event with free text, for the escaping tests."""

    type_name = "tests.admin.note"
    text: str


class OddlyNamed(DomainEvent):
    """A stored type name holding characters that URLs must encode."""

    type_name = "tests.admin odd&name"
    n: int


@dataclass
class Tally(Aggregate):
    """Counts events and sums deposits; counts its apply() calls, all instances
    together, in ``Tally.calls``."""

    calls: ClassVar[int] = 0

    events: int = 0
    deposited: int = 0

    def apply(self, record: EventRecord) -> None:
        Tally.calls += 1
        self.events += 1
        match record.event:
            case Deposited(amount=amount):
                self.deposited += amount


@dataclass
class Exploding(Aggregate):
    """An aggregate whose apply() fails on the second event."""

    seen: int = 0

    def apply(self, record: EventRecord) -> None:
        if record.index == 1:
            raise RuntimeError("boom <b>bold</b>")
        self.seen += 1


# A minimal HTML tree, enough to read the admin's tables and links.

_VOID = {"area", "base", "br", "col", "hr", "img", "input", "link", "meta", "wbr"}


@dataclass
class Node:
    tag: str
    attrs: dict[str, str]
    children: list[Node | str] = field(default_factory=list)

    @property
    def classes(self) -> set[str]:
        return set(self.attrs.get("class", "").split())

    def text(self) -> str:
        return "".join(
            child if isinstance(child, str) else child.text() for child in self.children
        )

    def iter(self) -> Iterator[Node]:
        for child in self.children:
            if isinstance(child, Node):
                yield child
                yield from child.iter()

    def find_all(self, tag: str | None = None, cls: str | None = None) -> list[Node]:
        return [
            node
            for node in self.iter()
            if (tag is None or node.tag == tag) and (cls is None or cls in node.classes)
        ]

    def find(self, tag: str | None = None, cls: str | None = None) -> Node:
        found = self.find_all(tag, cls)
        assert found, f"no <{tag} class={cls!r}>"
        return found[0]

    def by_id(self, id_: str) -> Node:
        found = [node for node in self.iter() if node.attrs.get("id") == id_]
        assert len(found) == 1, f"{len(found)} elements with id {id_!r}"
        return found[0]

    def cells(self) -> list[Node]:
        return [c for c in self.children if isinstance(c, Node) and c.tag == "td"]


class _TreeBuilder(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.root = Node("document", {})
        self.stack = [self.root]

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        node = Node(tag, {name: value or "" for name, value in attrs})
        self.stack[-1].children.append(node)
        if tag not in _VOID:
            self.stack.append(node)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.stack[-1].children.append(
            Node(tag, {name: value or "" for name, value in attrs})
        )

    def handle_endtag(self, tag: str) -> None:
        for depth in range(len(self.stack) - 1, 0, -1):
            if self.stack[depth].tag == tag:
                del self.stack[depth:]
                return

    def handle_data(self, data: str) -> None:
        self.stack[-1].children.append(data)


def parse(response: Response) -> Node:
    builder = _TreeBuilder()
    builder.feed(response.content.decode())
    builder.close()
    return builder.root


@dataclass
class Entry:
    """One event of a rendered timeline."""

    index: int
    type: str
    recorded: str
    key: str
    payload: str
    state: list[tuple[str, Any, bool]]


# The timeline's cells read into an Entry, by class.
_COLUMNS = ("index", "type", "recorded", "key", "payload")


def timeline(response: Response) -> list[Entry]:
    assert response.status_code == 200
    entries = []
    for row in parse(response).find_all("tr", "eventlog-event"):
        cells = [row.find("td", f"eventlog-{name}") for name in _COLUMNS]
        index = int(cells[0].text())
        assert row.attrs["id"] == f"event-{index}"
        state = [
            (
                tr.find("th").text(),
                json.loads(tr.find("pre").text()),
                "eventlog-changed" in tr.classes,
            )
            for tr in row.find_all("tr")
        ]
        entries.append(
            Entry(
                index,
                cells[1].text(),
                cells[2].text(),
                cells[3].text(),
                cells[4].find("pre").text(),
                state,
            )
        )
    return entries


def indices(response: Response) -> list[int]:
    return [entry.index for entry in timeline(response)]


def pager_href(response: Response, name: str) -> str | None:
    """The href of the timeline's "first", "previous" or "next" link, or None."""
    links = parse(response).find_all("a", f"eventlog-{name}")
    return links[0].attrs["href"] if links else None


def follow(client: Client, page_url: str, href: str | None) -> Response:
    """GET a timeline link (a query string) relative to ``page_url``."""
    assert href is not None
    assert href.startswith("?")
    return client.get(page_url + href.split("#")[0])


def log_url(log_id: uuid.UUID, query: str = "") -> str:
    return f"/admin/django_eventlog/log/{log_id}/change/{query}"


def counted_get(client: Client, url: str) -> tuple[Response, list[str]]:
    """GET ``url``, returning the response and the SQL of its queries."""
    ContentType.objects.clear_cache()
    with CaptureQueriesContext(connection) as queries:
        response = client.get(url)
    assert response.status_code == 200, url
    return response, [query["sql"] for query in queries.captured_queries]


_AGGREGATE = re.compile(r"\b(COUNT|MAX|MIN|SUM|AVG)\s*\(", re.IGNORECASE)
_COUNT_OF_LOGS = re.compile(
    r'SELECT COUNT\(\*\) AS "__count" FROM "django_eventlog_log"(?! *,)'
)


def aggregates_events(sql: str) -> bool:
    """Whether a query aggregates the events table (COUNT/MAX over it, a
    GROUP BY or a join), as opposed to counting the logs table."""
    if "django_eventlog_event" not in sql:
        return False
    if re.search(r'JOIN "django_eventlog_event"|GROUP BY', sql, re.IGNORECASE):
        return True
    return len(_AGGREGATE.findall(sql)) != len(_COUNT_OF_LOGS.findall(sql))


def snapshot() -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """Every column of every log and event."""
    return (
        list(Log.objects.order_by("id").values_list()),
        list(Event.objects.order_by("id").values_list()),
    )


# Data


def payment_log(
    key: str | None = "pay-1", capture_key: str | None = "cap-1"
) -> uuid.UUID:
    """The payment walkthrough's log, written through the public API."""
    state = Log.objects.create_log(
        Requested(PaymentRequest(10_000)), kind="payment", idempotency_key=key
    )
    state = Log.objects.append(state, Authorized(10_000, "x"))
    state = Log.objects.append(
        state, Captured(4_000, "W", "EUR"), idempotency_key=capture_key
    )
    Log.objects.append(state, Refunded(6_000, "R"))
    return state.log_id


def bulk_logs(
    count: int, events_per_log: int, *, kind: str = "account", newest: datetime
) -> list[Log]:
    """``count`` logs created one second apart, the first at ``newest``, each
    with ``events_per_log`` deposits recorded one second apart from its
    creation on."""
    logs = [
        Log(id=uuid7(), kind=kind, created_at=newest - timedelta(seconds=n))
        for n in range(count)
    ]
    Log.objects.bulk_create(logs, batch_size=BULK_BATCH)
    bulk_create_events(
        Event(
            log_id=log.id,
            index=index,
            type=Deposited.type_name,
            payload={"amount": index},
            recorded_at=log.created_at + timedelta(seconds=index),
        )
        for log in logs
        for index in range(events_per_log)
    )
    return logs


def long_log(length: int, *, kind: str = "account", every: int = 0) -> uuid.UUID:
    """A log of ``length`` events: Opened at 0 (and at every ``every``-th index
    when ``every`` is set), deposits of 1 elsewhere."""
    log = Log.objects.create(id=uuid7(), kind=kind)
    start = timezone.now()
    bulk_create_events(
        Event(
            log_id=log.id,
            index=index,
            type=Opened.type_name if opened else Deposited.type_name,
            payload={"owner": "carol"} if opened else {"amount": 1},
            recorded_at=start + timedelta(microseconds=index),
        )
        for index in range(length)
        for opened in [index == 0 or (every > 0 and index % every == 0)]
    )
    return log.id


# Users


def _staff_client(username: str, codenames: Iterable[str]) -> Client:
    user = User.objects.create_user(username, password="unused", is_staff=True)
    user.user_permissions.set(
        Permission.objects.filter(
            content_type__app_label="django_eventlog", codename__in=list(codenames)
        )
    )
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def viewer_client(db: None) -> Client:
    """A staff user with only the view permissions of logs and events."""
    return _staff_client("viewer", ["view_log", "view_event"])


@pytest.fixture
def no_view_client(db: None) -> Client:
    """A staff user with every permission of logs and events but view."""
    return _staff_client(
        "editor",
        [
            f"{action}_{model}"
            for action in ("add", "change", "delete")
            for model in ("log", "event")
        ],
    )


# 1. Read-only


@pytest.mark.parametrize("model", [Log, Event])
def test_registered_admins_grant_no_add_change_or_delete_even_to_superusers(
    model: type[Log | Event], admin_user: User, rf: RequestFactory
) -> None:
    model_admin = admin.site._registry[model]
    assert isinstance(model_admin, ReadOnlyAdmin)
    request = rf.get("/admin/")
    request.user = admin_user
    assert model_admin.has_view_permission(request)
    assert not model_admin.has_add_permission(request)
    assert not model_admin.has_change_permission(request)
    assert not model_admin.has_delete_permission(request)
    assert "delete_selected" not in model_admin.get_actions(request)


def test_superuser_pages_offer_no_add_change_or_delete(admin_client: Client) -> None:
    log_id = payment_log()
    event_id = Event.objects.get(log_id=log_id, index=0).pk
    for url in (LOG_LIST, EVENT_LIST, "/admin/"):
        page = admin_client.get(url)
        assert page.status_code == 200
        content = page.content.decode()
        assert f"{LOG_LIST}add/" not in content
        assert f"{EVENT_LIST}add/" not in content
        assert 'name="action"' not in content  # no actions, no checkboxes
    page = admin_client.get(log_url(log_id))
    assert page.status_code == 200
    content = page.content.decode()
    assert 'name="_save"' not in content
    assert 'name="_continue"' not in content
    assert 'class="deletelink"' not in content
    assert not parse(page).find_all("input", "vTextField")  # no editable fields
    # The event change URL is no form at all: it redirects to the timeline.
    assert admin_client.get(f"{EVENT_LIST}{event_id}/change/").status_code == 302


@pytest.mark.parametrize("who", ["superuser", "viewer"])
def test_a_log_offers_no_history_but_its_timeline(
    who: str, request: pytest.FixtureRequest
) -> None:
    """A log never changes: the timeline is its history, not Django's empty
    list of admin changes."""
    client: Client = request.getfixturevalue(
        "admin_client" if who == "superuser" else "viewer_client"
    )
    log_id = payment_log()
    history = f"{LOG_LIST}{log_id}/history/"
    page = client.get(log_url(log_id))
    assert page.status_code == 200
    content = page.content.decode()
    assert "historylink" not in content
    assert history not in content
    assert parse(page).find_all("ul", "object-tools") == []
    # The URL Django routes still answers, with the timeline.
    response = client.get(history)
    assert response.status_code == 302
    assert response["Location"] == log_url(log_id, "#timeline")
    assert indices(client.get(response["Location"]))[0] == 0


def test_the_history_of_a_missing_log_or_without_view_permission(
    admin_client: Client, no_view_client: Client
) -> None:
    log_id = payment_log()
    assert no_view_client.get(f"{LOG_LIST}{log_id}/history/").status_code == 403
    missing = admin_client.get(f"{LOG_LIST}{uuid.uuid4()}/history/")
    assert missing.status_code == 302  # Django's "doesn't exist" message
    assert missing["Location"] == "/admin/"


def _write_attempts(
    log_id: uuid.UUID, event_id: int
) -> list[tuple[str, str, dict[str, Any]]]:
    log_base = f"{LOG_LIST}{log_id}/"
    event_base = f"{EVENT_LIST}{event_id}/"
    log_fields = {"id": str(uuid.uuid4()), "kind": "hacked", "created_at": "2000-01-01"}
    event_fields = {
        "log": str(log_id),
        "index": "0",
        "type": "payment.refunded",
        "payload": '{"amount": 1, "reference_number": "X"}',
        "recorded_at": "2000-01-01",
        "idempotency_key": "hacked",
    }
    return [
        ("get", f"{LOG_LIST}add/", {}),
        ("post", f"{LOG_LIST}add/", log_fields),
        ("post", f"{log_base}change/", log_fields),
        ("get", f"{log_base}delete/", {}),
        ("post", f"{log_base}delete/", {"post": "yes"}),
        ("get", f"{EVENT_LIST}add/", {}),
        ("post", f"{EVENT_LIST}add/", event_fields),
        ("post", f"{event_base}change/", event_fields),
        ("get", f"{event_base}delete/", {}),
        ("post", f"{event_base}delete/", {"post": "yes"}),
    ]


@pytest.mark.parametrize("who", ["superuser", "viewer"])
def test_add_change_and_delete_urls_are_forbidden_and_alter_nothing(
    who: str, request: pytest.FixtureRequest
) -> None:
    client: Client = request.getfixturevalue(
        "admin_client" if who == "superuser" else "viewer_client"
    )
    log_id = payment_log()
    event_id = Event.objects.get(log_id=log_id, index=2).pk
    before = snapshot()
    statuses = {
        (method, url): getattr(client, method)(url, data).status_code
        for method, url, data in _write_attempts(log_id, event_id)
    }
    assert {k: v for k, v in statuses.items() if v != 403} == {}
    assert snapshot() == before


def test_bulk_delete_action_posted_to_the_lists_deletes_nothing(
    admin_client: Client,
) -> None:
    log_id = payment_log()
    event_ids = list(Event.objects.values_list("pk", flat=True))
    before = snapshot()
    for url, selected in ((LOG_LIST, [str(log_id)]), (EVENT_LIST, event_ids)):
        response = admin_client.post(
            url,
            {"action": "delete_selected", "_selected_action": selected, "post": "yes"},
        )
        assert response.status_code == 200
        assert b"Are you sure" not in response.content
    assert snapshot() == before


def test_seeing_anything_needs_the_view_permission(
    no_view_client: Client, viewer_client: Client
) -> None:
    log_id = payment_log()
    event_id = Event.objects.get(log_id=log_id, index=0).pk
    urls = [LOG_LIST, EVENT_LIST, log_url(log_id), f"{EVENT_LIST}{event_id}/change/"]
    # Add, change and delete permissions do not imply viewing here.
    assert [no_view_client.get(url).status_code for url in urls] == [403] * 4
    index = no_view_client.get("/admin/")
    assert index.status_code == 200
    assert b"/admin/django_eventlog/" not in index.content
    assert no_view_client.get("/admin/django_eventlog/").status_code == 404

    assert [viewer_client.get(url).status_code for url in urls] == [200, 200, 200, 302]
    index = viewer_client.get("/admin/")
    assert b'href="/admin/django_eventlog/log/"' in index.content
    assert b'href="/admin/django_eventlog/event/"' in index.content
    assert b"/admin/django_eventlog/log/add/" not in index.content


def test_anonymous_users_are_sent_to_the_login_page(client: Client) -> None:
    response = client.get(LOG_LIST)
    assert response.status_code == 302
    assert response["Location"].startswith("/admin/login/")


# 2. Log list


def test_log_list_columns(admin_client: Client) -> None:
    paid = payment_log()
    [empty] = bulk_logs(1, 0, kind="empty", newest=timezone.now())
    page = admin_client.get(LOG_LIST)
    assert page.status_code == 200
    doc = parse(page)
    headers = [
        next(c for c in th.classes if c.startswith("column-"))
        for th in doc.by_id("result_list").find("thead").find_all("th")
    ]
    assert headers == [
        "column-id",
        "column-kind",
        "column-created_at",
        "column-event_count",
        "column-last_event_at",
    ]
    rows = {
        row.find(None, "field-id").text(): row
        for row in doc.by_id("result_list").find("tbody").find_all("tr")
    }
    assert set(rows) == {str(paid), str(empty.id)}
    log = Log.objects.get(pk=paid)
    last = Event.objects.get(log_id=paid, index=3)
    row = rows[str(paid)]
    assert row.find("a").attrs["href"] == log_url(paid)
    assert row.find(None, "field-kind").text() == "payment"
    assert row.find(None, "field-created_at").text() == display_for_value(
        log.created_at, "-"
    )
    assert row.find(None, "field-event_count").text() == "4"
    assert row.find(None, "field-last_event_at").text() == display_for_value(
        last.recorded_at, "-"
    )
    row = rows[str(empty.id)]
    assert row.find(None, "field-event_count").text() == "0"
    assert row.find(None, "field-last_event_at").text() == "-"


def result_rows(response: Response) -> list[Node]:
    """The rows of a change list (none when the paginator says 0)."""
    assert response.status_code == 200
    doc = parse(response)
    tables = [node for node in doc.iter() if node.attrs.get("id") == "result_list"]
    if not tables:
        # <p class="paginator"> before Django 6.1, <nav class="paginator"> since.
        summary = doc.find(None, "paginator").text()
        assert re.search(r"\b0 (logs|events)\b", summary), summary
        return []
    return tables[0].find("tbody").find_all("tr")


def _listed_ids(response: Response) -> list[str]:
    return [row.find(None, "field-id").text() for row in result_rows(response)]


def test_log_search_by_exact_id_or_idempotency_key(admin_client: Client) -> None:
    first = payment_log(key="pay-1")
    second = payment_log(key="pay-2", capture_key="cap-2")
    bulk_logs(3, 1, newest=timezone.now())

    def search(term: str) -> list[str]:
        return _listed_ids(admin_client.get(LOG_LIST, {"q": term}))

    assert search(str(first)) == [str(first)]
    assert search(str(second).upper()) == [str(second)]
    assert search(f"  {second}  ") == [str(second)]
    assert search(str(first)[:8]) == []  # an id prefix is no match
    assert search("pay-2") == [str(second)]
    assert search("cap-2") == [str(second)]  # the key of a later event
    assert search("pay") == []  # keys match exactly too
    assert search("unknown") == []


def test_log_list_filters_by_kind_and_creation_date(admin_client: Client) -> None:
    now = timezone.now()
    accounts = bulk_logs(3, 1, kind="account", newest=now)
    orders = bulk_logs(2, 1, kind="order", newest=now - timedelta(days=400))
    page = admin_client.get(LOG_LIST)
    assert b'href="?kind=account"' in page.content
    assert b'href="?kind=order"' in page.content
    assert sorted(_listed_ids(admin_client.get(LOG_LIST, {"kind": "order"}))) == sorted(
        str(log.id) for log in orders
    )
    since = now - timedelta(days=7)
    in_range = admin_client.get(
        LOG_LIST,
        {"created_at__gte": since.isoformat(), "created_at__lt": now.isoformat()},
    )
    # Logs are newest first; the newest of the accounts was created at `now`.
    assert _listed_ids(in_range) == [str(log.id) for log in accounts[1:]]
    # The sidebar's own links ("Past 7 days") work too.
    past_week = parse(page).find_all("a")
    href = next(a.attrs["href"] for a in past_week if a.text() == "Past 7 days")
    assert sorted(_listed_ids(admin_client.get(LOG_LIST + href))) == sorted(
        str(log.id) for log in accounts
    )


def test_the_aggregate_detector_flags_a_naive_log_list() -> None:
    naive = Log.objects.annotate(Count("events"), Max("events__recorded_at"))
    assert aggregates_events(str(naive.query))
    assert aggregates_events(
        str(Log.objects.filter(pk__in=Event.objects.values("log_id")).query)
        + " GROUP BY x"
    )
    assert not aggregates_events(
        'SELECT COUNT(*) AS "__count" FROM "django_eventlog_log"'
    )


def test_log_list_queries_are_bounded_whatever_the_number_of_logs(
    admin_client: Client, django_assert_max_num_queries: DjangoAssertNumQueries
) -> None:
    now = timezone.now()
    few = bulk_logs(10, 3, newest=now)
    _, small = counted_get(admin_client, LOG_LIST)
    many = bulk_logs(9_990, 3, newest=now - timedelta(hours=1))
    assert Event.objects.count() == 30_000
    with django_assert_max_num_queries(LOG_LIST_MAX_QUERIES):
        response, large = counted_get(admin_client, LOG_LIST)
    assert len(large) == len(small)
    assert len(_listed_ids(response)) == 100
    assert _listed_ids(response)[:10] == [str(log.id) for log in few]
    assert b"10000 logs" in response.content
    # A search and a filter add no query either.
    searched: list[str] = []
    for query in ({"q": "no-such-key"}, {"kind": "account", "q": str(many[5].id)}):
        found, queries = counted_get(admin_client, f"{LOG_LIST}?{urlencode(query)}")
        assert len(queries) <= len(large)
        searched += queries
    assert _listed_ids(found) == [str(many[5].id)]
    if django.VERSION >= (5, 0):
        # "Show counts" (facets) counts logs, not events.
        searched += counted_get(admin_client, f"{LOG_LIST}?_facets=True")[1]
    for sql in small + large + searched:
        assert not aggregates_events(sql), sql


def _set_reltuples(model: type[Log | Event], value: int) -> None:
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE pg_class SET reltuples = %s WHERE oid = %s::regclass",
            [value, model._meta.db_table],
        )


@pytest.mark.postgresql
def test_unfiltered_lists_are_counted_from_table_statistics(
    admin_client: Client,
) -> None:
    # The statistics are set in the test's transaction, so they roll back
    # with it. ANALYZE would not do: it writes pg_class.reltuples in place,
    # which a rollback keeps, and later tests would plan with figures for
    # rows that no longer exist (a nested loop that took 36 s for one query).
    with connection.cursor() as cursor:
        cursor.execute("SELECT rolsuper FROM pg_roles WHERE rolname = current_user")
        row = cursor.fetchone()
    if not (row and row[0]):
        pytest.fail(
            "Setting pg_class.reltuples needs a superuser (the test cluster has one)."
        )
    payment_log()
    pages = ((LOG_LIST, Log, "1 log"), (EVENT_LIST, Event, "4 events"))
    for url, model, real in pages:
        _set_reltuples(model, 10_000)  # not more than 10,000: counted for real
        response, sql = counted_get(admin_client, url)
        assert [q for q in sql if "COUNT(*)" in q]
        assert f"\n{real}\n".encode() in response.content
    for url, model, _ in pages:
        _set_reltuples(model, 123_456)
        response, sql = counted_get(admin_client, url)
        assert not [q for q in sql if "COUNT(" in q.upper()], url
        plural = model._meta.verbose_name_plural
        assert f"\n123456 {plural}\n".encode() in response.content
        # The rows on the page are the real ones.
        assert len(result_rows(response)) == model.objects.count()
        paginator = EstimatedCountPaginator(model.objects.order_by("pk"), 100)
        assert paginator.count == 123_456
    # A filtered list is counted for real.
    response, sql = counted_get(admin_client, f"{EVENT_LIST}?q=payment.captured")
    assert [q for q in sql if "COUNT(*)" in q]
    assert b"\n1 event\n" in response.content


# 3. Timeline


def test_timeline_shows_each_event_oldest_first(admin_client: Client) -> None:
    log_id = payment_log(key="pay-1")
    stored = list(
        Event.objects.filter(log_id=log_id)
        .order_by("index")
        .values_list("index", "type", "recorded_at", "idempotency_key", "payload")
    )
    response = admin_client.get(log_url(log_id))
    entries = timeline(response)
    assert [(e.index, e.type, e.recorded, e.key, e.payload) for e in entries] == [
        (
            index,
            type_name,
            dateformat.format(timezone.localtime(recorded_at), "Y-m-d H:i:s.u e"),
            key or "",
            json.dumps(payload, indent=2, ensure_ascii=False),
        )
        for index, type_name, recorded_at, key, payload in stored
    ]
    assert (
        entries[0].payload == '{\n  "request": {\n    "amount_requested": 10000\n  }\n}'
    )
    assert [e.key for e in entries] == ["pay-1", "", "cap-1", ""]
    # The read-only fields are there too.
    content = response.content.decode()
    assert '<div class="readonly">4</div>' in content
    toggle = parse(response).find("a", "eventlog-order-toggle")
    assert toggle.text().strip() == "Show newest first"
    newest_first = follow(admin_client, log_url(log_id), toggle.attrs["href"])
    assert indices(newest_first) == [3, 2, 1, 0]
    toggle = parse(newest_first).find("a", "eventlog-order-toggle")
    assert toggle.text().strip() == "Show oldest first"
    assert indices(follow(admin_client, log_url(log_id), toggle.attrs["href"])) == [
        0,
        1,
        2,
        3,
    ]


def test_timeline_type_filter(admin_client: Client) -> None:
    log_id = payment_log()
    assert indices(admin_client.get(log_url(log_id, "?type=payment.captured"))) == [2]
    assert indices(admin_client.get(log_url(log_id, "?type=tests.opened"))) == []
    response = admin_client.get(log_url(log_id, "?type=payment.refunded&order=desc"))
    assert indices(response) == [3]
    options = parse(response).find("select").find_all("option")
    assert [o.attrs["value"] for o in options if "selected" in o.attrs] == [
        "payment.refunded"
    ]
    assert {"payment.captured", "tests.deposited"} <= {
        o.attrs["value"] for o in options
    }


def test_type_filter_pages_by_keyset_too(admin_client: Client) -> None:
    log_id = long_log(200, every=3)  # Opened at 0, 3, 6, ... 198: 67 of them
    page_url = log_url(log_id)
    first = admin_client.get(page_url + "?type=tests.opened")
    assert indices(first) == list(range(0, 3 * PAGE, 3))
    assert pager_href(first, "previous") is None
    second = follow(admin_client, page_url, pager_href(first, "next"))
    assert indices(second) == list(range(3 * PAGE, 200, 3))
    assert pager_href(second, "next") is None
    back = follow(admin_client, page_url, pager_href(second, "previous"))
    assert indices(back) == indices(first)


def test_pager_links_keep_a_type_name_that_urls_must_encode(
    admin_client: Client,
) -> None:
    log = Log.objects.create(id=uuid7(), kind="odd")
    Event.objects.bulk_create(
        Event(log=log, index=i, type=OddlyNamed.type_name, payload={"n": i})
        for i in range(PAGE + 5)
    )
    page_url = log_url(log.id)
    first = admin_client.get(page_url, {"type": OddlyNamed.type_name})
    assert indices(first) == list(range(PAGE))
    assert indices(follow(admin_client, page_url, pager_href(first, "next"))) == list(
        range(PAGE, PAGE + 5)
    )


def _timeline_queries(sql: list[str]) -> list[str]:
    """The page's query and the query for the previous page's start."""
    return [q for q in sql if q.startswith('SELECT "django_eventlog_event"."index"')]


def pages_by_keyset(admin_client: Client, length: int) -> None:
    """Page through a log of ``length`` events; assert that each page costs
    the same queries, without OFFSET."""
    last = length - 1
    log_id = long_log(length)
    page_url = log_url(log_id)

    first, first_sql = counted_get(admin_client, page_url)
    assert indices(first) == list(range(PAGE))
    assert pager_href(first, "previous") is None
    far_start = last - PAGE + 1
    far, far_sql = counted_get(admin_client, f"{page_url}?from={far_start}")
    assert indices(far) == list(range(far_start, length))
    assert pager_href(far, "next") is None
    assert len(far_sql) == len(first_sql)
    assert not [q for q in first_sql + far_sql if "OFFSET" in q.upper()]
    page_query, previous_query = _timeline_queries(far_sql)
    assert re.search(rf'"index" >= {far_start}\b', page_query)
    assert re.search(rf"LIMIT {PAGE + 1}\b", page_query)
    assert re.search(rf'"index" < {far_start}\b', previous_query)
    assert re.search(rf"LIMIT {PAGE}\b", previous_query)

    # Next twice, then previous, then first.
    second = follow(admin_client, page_url, pager_href(first, "next"))
    assert indices(second) == list(range(PAGE, 2 * PAGE))
    third = follow(admin_client, page_url, pager_href(second, "next"))
    assert indices(third) == list(range(2 * PAGE, 3 * PAGE))
    back = follow(admin_client, page_url, pager_href(third, "previous"))
    assert indices(back) == list(range(PAGE, 2 * PAGE))
    assert indices(follow(admin_client, page_url, pager_href(back, "first"))) == (
        list(range(PAGE))
    )
    before_far = follow(admin_client, page_url, pager_href(far, "previous"))
    assert indices(before_far) == list(range(far_start - PAGE, far_start))

    # Newest first: from the end of the log, paging backwards by "<=".
    newest, newest_sql = counted_get(admin_client, f"{page_url}?order=desc")
    assert indices(newest) == list(range(last, last - PAGE, -1))
    assert len(newest_sql) == len(first_sql)
    older, older_sql = counted_get(
        admin_client, page_url + (pager_href(newest, "next") or "").split("#")[0]
    )
    assert indices(older) == list(range(last - PAGE, last - 2 * PAGE, -1))
    page_query, _ = _timeline_queries(older_sql)
    assert re.search(rf'"index" <= {last - PAGE}\b', page_query)
    assert re.search(r"\bDESC\b", page_query)
    assert re.search(rf"LIMIT {PAGE + 1}\b", page_query)
    assert not [q for q in newest_sql + older_sql if "OFFSET" in q.upper()]
    assert indices(follow(admin_client, page_url, pager_href(older, "previous"))) == (
        indices(newest)
    )

    # The type filter narrows a long log at the same cost.
    opened, opened_sql = counted_get(admin_client, f"{page_url}?type=tests.opened")
    assert indices(opened) == [0]
    assert len(opened_sql) == len(first_sql)


def test_long_log_pages_by_keyset(admin_client: Client) -> None:
    pages_by_keyset(admin_client, LONG_LOG_LENGTH)


def test_a_start_past_the_end_shows_no_events(admin_client: Client) -> None:
    log_id = payment_log()
    for query in ("?from=4", "?from=99&order=desc", "?from=-3", "?from=x"):
        response = admin_client.get(log_url(log_id, query))
        assert response.status_code == 200
    assert indices(admin_client.get(log_url(log_id, "?from=4"))) == []
    assert indices(admin_client.get(log_url(log_id, "?from=99&order=desc"))) == [
        3,
        2,
        1,
        0,
    ]
    # Not a number, or negative: from the start.
    assert indices(admin_client.get(log_url(log_id, "?from=-3"))) == [0, 1, 2, 3]
    assert indices(admin_client.get(log_url(log_id, "?from=x"))) == [0, 1, 2, 3]


# 4. State after each event


# (field, value, changed) after each event of payment_log(): Requested,
# Authorized, Captured, Refunded.
_REQUEST = {"amount_requested": 10_000}
PAYMENT_STATES = [
    [
        ("request", _REQUEST, True),
        ("amount_approved", 0, False),
        ("amount_captured", 0, False),
        ("currency", None, False),
        ("amount_refunded", 0, False),
        ("declined_reason", None, False),
    ],
    [
        ("request", _REQUEST, False),
        ("amount_approved", 10_000, True),
        ("amount_captured", 0, False),
        ("currency", None, False),
        ("amount_refunded", 0, False),
        ("declined_reason", None, False),
    ],
    [
        ("request", _REQUEST, False),
        ("amount_approved", 10_000, False),
        ("amount_captured", 4_000, True),
        ("currency", "EUR", True),
        ("amount_refunded", 0, False),
        ("declined_reason", None, False),
    ],
    [
        ("request", _REQUEST, False),
        ("amount_approved", 10_000, False),
        ("amount_captured", 4_000, False),
        ("currency", "EUR", False),
        ("amount_refunded", 6_000, True),
        ("declined_reason", None, False),
    ],
]


def test_payment_state_after_each_event(admin_client: Client) -> None:
    log_id = payment_log()
    page_url = log_url(log_id)
    plain = admin_client.get(page_url)
    toggle = parse(plain).find("a", "eventlog-state-toggle")
    assert " ".join(toggle.text().split()) == "Show Payment state after each event"
    assert [e.state for e in timeline(plain)] == [[]] * 4
    assert b"State after" not in plain.content

    with_state = follow(admin_client, page_url, toggle.attrs["href"])
    assert [e.state for e in timeline(with_state)] == PAYMENT_STATES
    header = b'<th scope="col" class="eventlog-state-after">State after</th>'
    assert header in with_state.content
    changed_rows = parse(with_state).find_all("tr", "eventlog-changed")
    assert [row.find("th").text() for row in changed_rows] == [
        "request",
        "amount_approved",
        "amount_captured",
        "currency",
        "amount_refunded",
    ]
    hide = parse(with_state).find("a", "eventlog-state-toggle")
    assert " ".join(hide.text().split()) == "Hide Payment state after each event"
    assert (
        b"State after" not in follow(admin_client, page_url, hide.attrs["href"]).content
    )

    newest_first = admin_client.get(page_url + "?state=1&order=desc")
    assert [e.state for e in timeline(newest_first)] == PAYMENT_STATES[::-1]
    captured = admin_client.get(page_url + "?state=1&type=payment.captured")
    assert [e.state for e in timeline(captured)] == [PAYMENT_STATES[2]]


def test_kinds_without_an_aggregate_show_no_state(admin_client: Client) -> None:
    log_id = long_log(3)
    response = admin_client.get(log_url(log_id, "?state=1"))
    assert not parse(response).find_all("a", "eventlog-state-toggle")
    assert b"State after" not in response.content
    assert [e.state for e in timeline(response)] == [[], [], []]


@override_settings(EVENTLOG_ADMIN_AGGREGATES={"account": Exploding})
def test_an_aggregate_that_raises_shows_an_error_note(admin_client: Client) -> None:
    log_id = long_log(3)
    response = admin_client.get(log_url(log_id, "?state=1"))
    assert response.status_code == 200
    note = parse(response).find("p", "errornote")
    assert note.text() == (
        "The state could not be computed: RuntimeError: boom <b>bold</b>"
    )
    assert b"boom &lt;b&gt;bold&lt;/b&gt;" in response.content
    assert indices(response) == [0, 1, 2]


# Chunks of 64 rows: the fold streams the log in several.
@override_settings(
    EVENTLOG_ADMIN_AGGREGATES={"account": "tests.test_admin.Tally"},
    EVENTLOG_CHUNK_SIZE=64,
)
def test_state_folds_the_log_once_per_page(
    admin_client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    length = LONG_LOG_LENGTH
    log_id = long_log(length)
    page_url = log_url(log_id)

    def state_page(query: str) -> tuple[list[Entry], int, int]:
        """The entries, the queries and the apply() calls of one page."""
        monkeypatch.setattr(Tally, "calls", 0)
        response, sql = counted_get(admin_client, page_url + query)
        return timeline(response), len(sql), Tally.calls

    plain_queries = len(counted_get(admin_client, page_url)[1])
    entries, first_queries, first_calls = state_page("?state=1")
    assert [e.index for e in entries] == list(range(PAGE))
    assert first_calls == PAGE  # events 0 to 49, once each
    assert first_queries == plain_queries + 1  # one streamed fold
    assert entries[-1].state == [("events", PAGE, True), ("deposited", PAGE - 1, True)]

    far = length - PAGE
    entries, far_queries, far_calls = state_page(f"?state=1&from={far}")
    assert [e.index for e in entries] == list(range(far, length))
    assert far_calls == length
    assert far_queries == first_queries
    assert [e.state for e in entries[-2:]] == [
        [("events", length - 1, True), ("deposited", length - 2, True)],
        [("events", length, True), ("deposited", length - 1, True)],
    ]

    mid = length // 2
    entries, _, desc_calls = state_page(f"?state=1&order=desc&from={mid}")
    assert [e.index for e in entries] == list(range(mid, mid - PAGE, -1))
    assert desc_calls == mid + 1
    assert entries[0].state[0] == ("events", mid + 1, True)

    # A page four times as large: the same number of queries.
    monkeypatch.setattr(admin.site._registry[Log], "timeline_page_size", 4 * PAGE)
    entries, big_queries, big_calls = state_page(f"?state=1&from={far - 3 * PAGE}")
    assert len(entries) == 4 * PAGE
    assert big_calls == length
    assert big_queries == first_queries


# 5. Event list


def test_event_list_links_each_event_to_its_place_in_the_timeline(
    admin_client: Client,
) -> None:
    paid = payment_log()
    other = long_log(2)
    rows = result_rows(admin_client.get(EVENT_LIST))
    assert len(rows) == 6
    seen = set()
    for row in rows:
        link = row.find(None, "field-timeline_link").find("a")
        index = int(row.find(None, "field-index").text())
        log_id = uuid.UUID(link.text())
        assert link.attrs["href"] == log_url(log_id, f"?from={index}#event-{index}")
        event = Event.objects.get(pk=int(row.find(None, "field-id").text()))
        assert (event.log_id, event.index) == (log_id, index)
        assert row.find(None, "field-type").text() == event.type
        seen.add((log_id, index))
    assert seen == {(paid, i) for i in range(4)} | {(other, 0), (other, 1)}


def test_event_search_by_exact_type_or_key(admin_client: Client) -> None:
    paid = payment_log(key="pay-1")
    long_log(3)

    def search(term: str) -> list[tuple[str, str]]:
        return [
            (row.find(None, "field-type").text(), row.find(None, "field-index").text())
            for row in result_rows(admin_client.get(EVENT_LIST, {"q": term}))
        ]

    assert search("payment.captured") == [("payment.captured", "2")]
    assert sorted(search("tests.deposited")) == [
        ("tests.deposited", "1"),
        ("tests.deposited", "2"),
    ]
    assert search("cap-1") == [("payment.captured", "2")]
    assert search("pay-1") == [("payment.requested", "0")]
    assert search("payment") == []
    assert search("cap") == []
    key_cell = result_rows(admin_client.get(EVENT_LIST, {"q": "cap-1"}))[0]
    assert key_cell.find(None, "field-idempotency_key").text() == "cap-1"
    assert Event.objects.get(idempotency_key="cap-1").log_id == paid


def test_event_list_time_range(admin_client: Client) -> None:
    log = Log.objects.create(id=uuid7(), kind="account")
    months = [datetime(2026, month, 15, tzinfo=dt_timezone.utc) for month in (1, 2, 3)]
    Event.objects.bulk_create(
        Event(
            log=log,
            index=i,
            type=Deposited.type_name,
            payload={"amount": i},
            recorded_at=recorded_at,
        )
        for i, recorded_at in enumerate(months)
    )

    def in_range(since: datetime, until: datetime) -> list[str]:
        query = {
            "recorded_at__gte": since.isoformat(),
            "recorded_at__lt": until.isoformat(),
        }
        rows = result_rows(admin_client.get(EVENT_LIST, query))
        return [row.find(None, "field-index").text() for row in rows]

    def utc(year: int, month: int, day: int) -> datetime:
        return datetime(year, month, day, tzinfo=dt_timezone.utc)

    assert in_range(utc(2026, 2, 1), utc(2026, 3, 1)) == ["1"]
    assert in_range(utc(2026, 1, 15), utc(2026, 3, 15)) == ["1", "0"]
    assert in_range(utc(2025, 1, 1), utc(2026, 1, 1)) == []
    # Another time zone: 2026-02-15 00:00 UTC is 2026-02-14 19:00 at UTC-5.
    minus_5 = dt_timezone(timedelta(hours=-5))
    since = datetime(2026, 2, 14, 19, tzinfo=minus_5)
    assert in_range(since, since + timedelta(hours=1)) == ["1"]
    assert in_range(since + timedelta(seconds=1), since + timedelta(hours=1)) == []


def test_event_change_url_redirects_to_its_place_in_the_timeline(
    viewer_client: Client,
) -> None:
    log_id = long_log(PAGE * 2)
    event = Event.objects.get(log_id=log_id, index=PAGE + 7)
    response = viewer_client.get(f"{EVENT_LIST}{event.pk}/change/")
    assert response.status_code == 302
    target = log_url(log_id, f"?from={PAGE + 7}#event-{PAGE + 7}")
    assert response["Location"] == target
    landed = viewer_client.get(target)
    assert indices(landed)[0] == PAGE + 7
    assert f'<tr id="event-{PAGE + 7}"'.encode() in landed.content


# 6. Escaping


def test_html_in_payloads_and_keys_is_escaped(admin_client: Client) -> None:
    state = Log.objects.create_log(
        Note(XSS_PAYLOAD), kind="notes", idempotency_key=XSS_KEY
    )
    pages = {
        "log list": admin_client.get(LOG_LIST, {"q": XSS_KEY}),
        "timeline": admin_client.get(log_url(state.log_id)),
        "event list": admin_client.get(EVENT_LIST, {"q": XSS_KEY}),
        "event list by type": admin_client.get(EVENT_LIST, {"q": Note.type_name}),
    }
    assert _listed_ids(pages["log list"]) == [str(state.log_id)]
    [entry] = timeline(pages["timeline"])
    assert entry.key == XSS_KEY
    assert json.loads(entry.payload) == {"text": XSS_PAYLOAD}
    for name, page in pages.items():
        assert page.status_code == 200
        content = page.content.decode()
        assert XSS_PAYLOAD not in content, name
        assert XSS_KEY not in content, name
        assert "<img src=x" not in content, name
        assert escape(XSS_KEY) in content, name
    assert escape(XSS_PAYLOAD) in pages["timeline"].content.decode()
    for name in ("event list", "event list by type"):
        [row] = result_rows(pages[name])
        assert row.find(None, "field-idempotency_key").text() == XSS_KEY


# 7. Extensible


def test_admin_classes_are_importable_and_registered() -> None:
    import django_eventlog.admin as eventlog_admin

    assert set(eventlog_admin.__all__) == {
        "EstimatedCountPaginator",
        "EventAdmin",
        "LogAdmin",
        "ProjectionAdmin",
        "ProjectionSkipAdmin",
        "ReadOnlyAdmin",
    }
    for name in eventlog_admin.__all__:
        assert getattr(eventlog_admin, name).__name__ == name
    assert issubclass(LogAdmin, ReadOnlyAdmin)
    assert issubclass(EventAdmin, ReadOnlyAdmin)
    assert type(admin.site._registry[Log]) is LogAdmin
    assert type(admin.site._registry[Event]) is EventAdmin


@pytest.mark.urls("tests.admin_urls")
def test_a_subclass_on_a_custom_site_sets_the_timeline_page_size(
    admin_client: Client,
) -> None:
    log_id = long_log(PAGE + 1)
    custom_url = reverse("custom:django_eventlog_log_change", args=[log_id])
    assert custom_url == f"/custom-admin/django_eventlog/log/{log_id}/change/"
    response = admin_client.get(custom_url)
    size = CUSTOM_TIMELINE_PAGE_SIZE
    assert indices(response) == list(range(size))
    assert indices(follow(admin_client, custom_url, pager_href(response, "next"))) == (
        list(range(size, 2 * size))
    )
    names = [template.name for template in response.templates]
    assert "admin/django_eventlog/log/change_form.html" in names
    assert "admin/change_form.html" in names
    assert names.index("admin/django_eventlog/log/change_form.html") < names.index(
        "admin/change_form.html"
    )
    # The default site is untouched.
    assert len(indices(admin_client.get(log_url(log_id)))) == PAGE
    # The custom site's lists work.
    assert _listed_ids(admin_client.get("/custom-admin/django_eventlog/log/")) == [
        str(log_id)
    ]


@pytest.mark.urls("tests.admin_urls")
def test_event_links_on_a_custom_site_stay_on_that_site(admin_client: Client) -> None:
    log_id = long_log(2)
    event = Event.objects.get(log_id=log_id, index=1)
    target = f"/custom-admin/django_eventlog/log/{log_id}/change/?from=1#event-1"
    redirect = admin_client.get(
        f"/custom-admin/django_eventlog/event/{event.pk}/change/"
    )
    rows = result_rows(admin_client.get("/custom-admin/django_eventlog/event/"))
    hrefs = [
        row.find(None, "field-timeline_link").find("a").attrs["href"] for row in rows
    ]
    assert (redirect["Location"], target in hrefs) == (target, True)
