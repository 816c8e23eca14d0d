"""http.feed_view: the global feed followed over HTTP, on both databases."""

from __future__ import annotations

import json
import uuid
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urljoin, urlsplit

import pytest
from django.contrib.auth.models import Permission, User
from django.http import HttpResponse
from django.test import Client, RequestFactory

from django_eventlog import FeedRecord, InvalidArgument, Log, http
from tests.domain import Deposited, Opened

if TYPE_CHECKING:
    from django.test.client import _MonkeyPatchedWSGIResponse as Response

pytestmark = [pytest.mark.django_db, pytest.mark.urls("tests.feed_urls")]

PROBLEM = "application/problem+json"


def write_some() -> list[tuple[str, int]]:
    """Three logs of two kinds written in turns; (log id, index) in order."""
    written = []
    a = Log.objects.create_log(Opened("a"), kind="account")
    written.append((a.log_id, 0))
    b = Log.objects.create_log(Opened("b"), kind="savings")
    written.append((b.log_id, 0))
    a = Log.objects.append(a, Deposited(1))
    written.append((a.log_id, 1))
    c = Log.objects.create_log(Opened("c"), kind="loan")
    written.append((c.log_id, 0))
    c = Log.objects.append(c, [Deposited(2), Deposited(3)])
    written += [(c.log_id, 1), (c.log_id, 2)]
    b = Log.objects.append(b, Deposited(4))
    written.append((b.log_id, 1))
    return [(str(log_id), index) for log_id, index in written]


def user_with(*codenames: str) -> User:
    user = User.objects.create_user(f"user-{uuid.uuid4().hex[:8]}")
    user.user_permissions.set(
        Permission.objects.filter(
            content_type__app_label="django_eventlog", codename__in=codenames
        )
    )
    return user


@pytest.fixture
def reader(client: Client) -> Client:
    """A client logged in as a user with ``django_eventlog.view_event``."""
    client.force_login(user_with("view_event"))
    return client


def body_of(response: Response | HttpResponse) -> dict[str, Any]:
    body = json.loads(response.content)
    assert isinstance(body, dict)
    return body


def follow(client: Client, url: str) -> tuple[list[dict[str, Any]], str, int]:
    """Every event from ``url`` on, following ``next`` until an empty page:
    the events, the empty page's URL and how many pages held events."""
    events: list[dict[str, Any]] = []
    pages = 0
    while True:
        response = client.get(url)
        assert response.status_code == 200, response.content
        assert response["Content-Type"] == "application/json"
        body = body_of(response)
        assert set(body) == {"events", "next"}
        if not body["events"]:
            return events, url, pages
        pages += 1
        events += body["events"]
        url = urljoin(url, body["next"])


def query_of(url: str) -> dict[str, list[str]]:
    return parse_qs(urlsplit(url).query)


def as_json(records: list[FeedRecord]) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = json.loads(
        json.dumps([record.as_dict() for record in records])
    )
    return found


def assert_problem(response: Response | HttpResponse, status: int, *words: str) -> None:
    assert response.status_code == status
    assert response["Content-Type"] == PROBLEM
    body = body_of(response)
    assert body["status"] == status
    for word in words:
        assert word in body["detail"]


# Following the feed


@pytest.mark.parametrize("limit", [1, 2, 3, 100])
def test_following_next_gives_every_event_once_in_feed_order(
    reader: Client, limit: int
) -> None:
    written = write_some()
    events, last_url, pages = follow(reader, f"/feed/?limit={limit}")
    assert [(e["log_id"], e["index"]) for e in events] == written
    assert events == as_json(Log.objects.feed(limit=100))
    assert pages == -(-len(written) // limit)
    # The last (empty) page was asked for after the last event, at that limit.
    assert query_of(last_url) == {
        "after": [events[-1]["position"]],
        "limit": [str(limit)],
    }


def test_a_page_is_the_feed_after_the_position(reader: Client) -> None:
    write_some()
    records = Log.objects.feed()
    after = records[2].position
    body = body_of(reader.get(f"/feed/?after={after}&limit=3"))
    assert body["events"] == as_json(records[3:6])
    assert body["next"] == f"/feed/?after={records[5].position}&limit=3"


def test_each_event_says_its_log_kind_position_and_payload(reader: Client) -> None:
    log = Log.objects.create_log([Opened("ada"), Deposited(7)], kind="account")
    (first, second) = body_of(reader.get("/feed/"))["events"]
    assert first["log_id"] == second["log_id"] == str(log.log_id)
    assert (first["kind"], first["index"], first["type"]) == (
        "account",
        0,
        "tests.opened",
    )
    assert (second["type"], second["event"]) == ("tests.deposited", {"amount": 7})
    assert first["position"] != second["position"]


def test_an_empty_page_points_at_the_same_position_to_poll(reader: Client) -> None:
    body = body_of(reader.get("/feed/"))
    assert body == {"events": [], "next": "/feed/?limit=100"}
    written = write_some()
    events, poll_url, _ = follow(reader, "/feed/?limit=4")
    assert len(events) == len(written)
    polled = body_of(reader.get(poll_url))
    assert polled["events"] == []
    assert query_of(polled["next"]) == query_of(poll_url)
    # A follower polling that URL gets what is written next.
    later = Log.objects.create_log(Opened("later"), kind="account")
    fresh = body_of(reader.get(urljoin(poll_url, polled["next"])))["events"]
    assert [(e["log_id"], e["index"]) for e in fresh] == [(str(later.log_id), 0)]


def test_the_default_limit_is_the_views_page_size_or_the_setting(
    reader: Client, settings: Any
) -> None:
    settings.EVENTLOG_PAGE_SIZE = 3
    write_some()
    first = body_of(reader.get("/feed/"))
    assert len(first["events"]) == 3
    assert query_of(first["next"])["limit"] == ["3"]
    small = body_of(reader.get("/small/"))
    assert len(small["events"]) == 2
    assert query_of(small["next"])["limit"] == ["2"]
    # The client's limit wins, up to EVENTLOG_MAX_PAGE_SIZE.
    assert len(body_of(reader.get("/small/?limit=5"))["events"]) == 5
    settings.EVENTLOG_MAX_PAGE_SIZE = 4
    assert len(body_of(reader.get("/feed/?limit=4"))["events"]) == 4
    assert_problem(reader.get("/feed/?limit=5"), 400, "limit", "1 to 4")


# Filters


def test_the_views_kinds_and_types_filter_the_feed(reader: Client) -> None:
    write_some()
    accounts, _, _ = follow(reader, "/accounts/?limit=2")
    assert accounts == as_json(Log.objects.feed(kinds=["account", "savings"]))
    assert {e["kind"] for e in accounts} == {"account", "savings"}
    assert len(accounts) == 4
    deposits, _, _ = follow(reader, "/deposits/?limit=2")
    assert deposits == as_json(Log.objects.feed(types=[Deposited]))
    assert {e["type"] for e in deposits} == {"tests.deposited"}
    assert len(deposits) == 4


def test_kind_and_type_parameters_narrow_and_are_kept_in_next(reader: Client) -> None:
    write_some()
    events, last_url, _ = follow(reader, "/accounts/?kind=savings&limit=1")
    assert events == as_json(Log.objects.feed(kinds=["savings"]))
    assert len(events) == 2
    assert query_of(last_url)["kind"] == ["savings"]
    events, last_url, _ = follow(
        reader, "/feed/?kind=loan&kind=account&type=tests.deposited&limit=1"
    )
    expected = Log.objects.feed(kinds=["loan", "account"], types=["tests.deposited"])
    assert events == as_json(expected)
    assert len(events) == 3
    assert query_of(last_url)["kind"] == ["loan", "account"]
    assert query_of(last_url)["type"] == ["tests.deposited"]


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("/accounts/?kind=loan", ("kind", "'loan'", "account, savings")),
        ("/accounts/?kind=account&kind=loan", ("kind", "'loan'")),
        ("/deposits/?type=tests.opened", ("type", "'tests.opened'")),
        ("/feed/?kind=", ("kind", "1 to")),
        ("/feed/?type=" + "x" * 300, ("type", "1 to")),
    ],
)
def test_a_kind_or_type_the_view_does_not_serve_is_refused(
    reader: Client, url: str, words: tuple[str, ...]
) -> None:
    write_some()
    assert_problem(reader.get(url), 400, *words)


# Bad input


@pytest.mark.parametrize(
    "query",
    [
        "after=abc",
        "after=",
        "after=1.2.3",
        "after=-1.2",
        "after=1",
        "after=1.2&after=3.4",
    ],
)
def test_a_bad_after_is_400_naming_it(reader: Client, query: str) -> None:
    assert_problem(reader.get(f"/feed/?{query}"), 400, "after")


@pytest.mark.parametrize(
    "query",
    [
        "limit=0",
        "limit=x",
        "limit=",
        "limit=1001",
        "limit=+5",
        "limit=%205",
        "limit=-1",
        "limit=2.0",
        "limit=99999999999",
        "limit=1&limit=2",
    ],
)
def test_a_bad_limit_is_400_naming_it(reader: Client, query: str) -> None:
    assert_problem(reader.get(f"/feed/?{query}"), 400, "limit")


def test_a_bad_view_is_refused_when_it_is_made() -> None:
    with pytest.raises(InvalidArgument, match="kinds"):
        http.feed_view(kinds="payment")
    with pytest.raises(InvalidArgument, match="kinds"):
        http.feed_view(kinds=[])
    with pytest.raises(InvalidArgument, match="page_size"):
        http.feed_view(page_size=0)


# Who may read it


def test_an_anonymous_request_is_403(client: Client) -> None:
    write_some()
    response = client.get("/feed/")
    assert_problem(response, 403, "Authentication credentials")
    assert b"events" not in response.content


def test_a_user_without_the_permission_is_403(client: Client) -> None:
    write_some()
    client.force_login(user_with("view_log"))
    response = client.get("/feed/")
    assert_problem(response, 403, "permission")
    assert b"events" not in response.content
    # ...even with a bad parameter: nothing is told before the permission.
    assert_problem(client.get("/feed/?after=abc"), 403, "permission")
    # The permission a view names is the one it checks.
    assert len(body_of(client.get("/logs/"))["events"]) == 7


def test_an_inactive_user_is_403(client: Client) -> None:
    user = user_with("view_event")
    user.is_active = False
    user.save()
    client.force_login(user)
    assert client.get("/feed/").status_code == 403


def test_a_superuser_has_the_permission(client: Client) -> None:
    write_some()
    client.force_login(User.objects.create_superuser("root"))
    assert len(body_of(client.get("/feed/"))["events"]) == 7


def test_permission_none_opens_the_feed_to_anyone(client: Client) -> None:
    written = write_some()
    events, _, _ = follow(client, "/open/?limit=3")
    assert [(e["log_id"], e["index"]) for e in events] == written


@pytest.mark.parametrize("method", ["post", "put", "patch", "delete"])
def test_only_get_is_allowed(reader: Client, method: str) -> None:
    response = getattr(reader, method)("/feed/")
    assert_problem(response, 405)
    assert response["Allow"] == "GET"
    assert Log.objects.feed() == []


def test_a_request_without_a_user_is_refused(rf: RequestFactory) -> None:
    # A project without AuthenticationMiddleware: no user, no feed.
    view = http.feed_view()
    response = view(rf.get("/feed/"))
    assert_problem(response, 403, "Authentication credentials")
    assert body_of(http.feed_view(permission=None)(rf.get("/feed/"))) == {
        "events": [],
        "next": "/feed/?limit=100",
    }
