"""The read-only admin of projections and skipped events, on either database.

Failures come from the test projections of ``tests/projections.py`` run by
``catch_up``; pages are read back with the HTML tree of ``test_admin``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest
from django.contrib import admin
from django.contrib.auth.models import Permission, User
from django.contrib.contenttypes.models import ContentType
from django.db import connection
from django.test import Client, RequestFactory
from django.test.utils import CaptureQueriesContext
from pytest_django import DjangoAssertNumQueries

from django_eventlog import FeedRecord, Log, LogState
from django_eventlog.admin import ProjectionAdmin, ProjectionSkipAdmin
from django_eventlog.models import ProjectionCheckpoint, ProjectionSkip
from django_eventlog.projection_control import skip
from django_eventlog.projection_status import statuses
from django_eventlog.projections import Projection, catch_up
from tests import projections
from tests.domain import Deposited, Opened
from tests.test_admin import Node, parse, result_rows, timeline

if TYPE_CHECKING:
    from django.test.client import _MonkeyPatchedWSGIResponse as Response

pytestmark = pytest.mark.django_db

PROJECTIONS = "/admin/django_eventlog/projectioncheckpoint/"
SKIPS = "/admin/django_eventlog/projectionskip/"
XSS = "<script>alert(1)</script>"
# Session, user, COUNT and page of checkpoints; statuses(): the checkpoints,
# the runners' locks (PostgreSQL), then per projection at most three (the
# lag, the first deliverable event, the horizon's holder).
MAX_QUERIES_3_PROJECTIONS = 4 + 2 + 3 * 3


class Shouting(Projection):
    """Fails on a deposit of 13 with HTML in its error."""

    name = "tests.shouting"
    event_types = (Deposited,)

    def handle(self, record: FeedRecord) -> None:
        assert isinstance(record.event, Deposited)
        if record.event.amount == 13:
            raise ValueError(f"{XSS} at index {record.index}")


@pytest.fixture(autouse=True)
def configured(settings: Any) -> None:
    projections.configure(settings)


def account(*amounts: int) -> LogState:
    state = Log.objects.create_log(Opened("owner"), kind="account")
    for amount in amounts:
        state = Log.objects.append(state, Deposited(amount))
    return state


def rows_by_name(response: Response) -> dict[str, Node]:
    return {row.find(None, "field-name").text(): row for row in result_rows(response)}


def cell(row: Node, column: str) -> Node:
    return row.find(None, f"field-{column}")


def get_path(client: Client, href: str) -> Response:
    """GET a link of a page, without its fragment."""
    response = client.get(href.split("#")[0])
    assert response.status_code == 200, href
    return response


def test_a_failed_projection_shows_its_error_and_links_to_the_event(
    admin_client: Client,
) -> None:
    account(1, 2)
    poisoned = account(5, 13, 7)
    catch_up()
    row = rows_by_name(admin_client.get(PROJECTIONS))["tests.fragile"]
    state = cell(row, "state_display")
    assert "failed" in state.text()
    assert state.find_all(None, "eventlog-failed")
    assert cell(row, "error").text() == "ValueError: poisoned deposit at index 2"
    link = cell(row, "failed_on").find("a")
    assert link.text() == f"{poisoned.log_id} [2]"
    page = get_path(admin_client, link.attrs["href"])
    assert link.attrs["href"].endswith("#event-2")
    assert f"/log/{poisoned.log_id}/change/" in link.attrs["href"]
    entries = timeline(page)
    assert entries[0].index == 2
    assert entries[0].type == Deposited.type_name
    assert '"amount": 13' in entries[0].payload
    # The others run on: no error, no failed event.
    for name in ("tests.balances", "tests.mailer"):
        other = rows_by_name(admin_client.get(PROJECTIONS))[name]
        assert cell(other, "state_display").text() == "running"
        assert cell(other, "error").text() == "-"
        assert cell(other, "failed_on").text() == "-"


def test_the_detail_page_shows_the_traceback_and_the_failed_event(
    admin_client: Client,
) -> None:
    poisoned = account(1, 13)
    catch_up()
    href = cell(
        rows_by_name(admin_client.get(PROJECTIONS))["tests.fragile"], "name"
    ).find("a")
    page = parse(get_path(admin_client, href.attrs["href"]))
    traceback = page.find("pre", "eventlog-traceback").text()
    assert traceback.startswith("Traceback (most recent call last):")
    assert "in handle" in traceback
    assert traceback.rstrip().endswith("ValueError: poisoned deposit at index 2")
    checkpoint = ProjectionCheckpoint.objects.get(name="tests.fragile")
    failed = page.find(None, "field-failed_event").text()
    assert Deposited.type_name in failed
    assert checkpoint.error_position in failed
    assert checkpoint.error_position == Log.objects.feed(types=[Deposited])[1].position
    link = page.find("a", "eventlog-event-link")
    entries = timeline(get_path(admin_client, link.attrs["href"]))
    assert (entries[0].index, entries[0].type) == (2, Deposited.type_name)
    assert link.attrs["href"].startswith(
        f"/admin/django_eventlog/log/{poisoned.log_id}/"
    )


def test_lag_is_what_statuses_says_and_falls_after_catch_up(
    admin_client: Client,
) -> None:
    projections.Fragile.poison = None
    account(1, 2)

    # Never run: no checkpoints, the note lists each configured projection.
    response = admin_client.get(PROJECTIONS)
    assert "0 projections" in parse(response).find(None, "paginator").text()
    note = [
        [td.text() for td in tr.cells()]
        for tr in parse(response)
        .by_id("not-run")
        .find_all("tr", "eventlog-not-run-row")
    ]
    # Balances: the opening and two deposits; Fragile: the deposits; Mailer:
    # the opening.
    assert [(name, behind) for name, behind, _ in note] == [
        ("tests.balances", "3"),
        ("tests.fragile", "2"),
        ("tests.mailer", "1"),
    ]
    assert all(seconds != "-" for _, _, seconds in note)
    assert [(s.name, s.behind) for s in statuses("default")] == [
        (name, int(behind)) for name, behind, _ in note
    ]

    catch_up()
    account(3)
    response = admin_client.get(PROJECTIONS)
    assert not parse(response).find_all(None, "eventlog-not-run")
    rows = rows_by_name(response)
    expected = {s.name: s for s in statuses("default")}
    assert {name: cell(row, "events_behind").text() for name, row in rows.items()} == {
        name: str(status.behind) for name, status in expected.items()
    }
    assert {
        name: int(cell(row, "events_behind").text()) for name, row in rows.items()
    } == {
        "tests.balances": 2,
        "tests.fragile": 1,
        "tests.mailer": 1,
    }
    assert all(cell(row, "seconds_behind").text() != "-" for row in rows.values())
    assert cell(rows["tests.balances"], "handled").text() == "3"

    catch_up()
    rows = rows_by_name(admin_client.get(PROJECTIONS))
    assert {name: cell(row, "events_behind").text() for name, row in rows.items()} == {
        "tests.balances": "0",
        "tests.fragile": "0",
        "tests.mailer": "0",
    }
    assert {cell(row, "seconds_behind").text() for row in rows.values()} == {"-"}
    assert cell(rows["tests.balances"], "handled").text() == "5"
    assert cell(rows["tests.balances"], "position").text() == (
        Log.objects.feed(kinds=["account"])[-1].position
    )


def test_a_checkpoint_no_projection_is_configured_for_any_more(
    admin_client: Client, settings: Any
) -> None:
    account(1)
    catch_up()
    settings.EVENTLOG_PROJECTIONS = ["tests.projections.Balances"]
    rows = rows_by_name(admin_client.get(PROJECTIONS))
    assert cell(rows["tests.mailer"], "state_display").text() == (
        "running (not configured)"
    )
    assert cell(rows["tests.mailer"], "events_behind").text() == "-"
    assert cell(rows["tests.balances"], "state_display").text() == "running"


def test_html_in_an_error_is_escaped(admin_client: Client, settings: Any) -> None:
    settings.EVENTLOG_PROJECTIONS = [f"{__name__}.Shouting"]
    account(1, 13)
    catch_up()
    response = admin_client.get(PROJECTIONS)
    assert XSS.encode() not in response.content
    row = rows_by_name(response)["tests.shouting"]
    assert cell(row, "error").text() == f"ValueError: {XSS} at index 2"
    detail = get_path(admin_client, cell(row, "name").find("a").attrs["href"])
    assert XSS.encode() not in detail.content
    page = parse(detail)
    assert not page.find_all("script", None) or all(
        XSS not in node.text() for node in page.find_all("script")
    )
    assert (
        f"ValueError: {XSS} at index 2" in page.find("pre", "eventlog-traceback").text()
    )


def test_skipped_events_show_who_when_why_and_link_to_the_event(
    admin_client: Client,
) -> None:
    poisoned = account(1, 13)
    catch_up()
    checkpoint = ProjectionCheckpoint.objects.get(name="tests.fragile")
    skip(
        "default",
        "tests.fragile",
        checkpoint.error_position,
        by="alice",
        reason=f"bad data {XSS}",
    )
    response = admin_client.get(SKIPS)
    assert XSS.encode() not in response.content
    [row] = result_rows(response)
    assert cell(row, "projection").text() == "tests.fragile"
    assert cell(row, "skipped_by").text() == "alice"
    assert cell(row, "reason").text() == f"bad data {XSS}"
    assert cell(row, "type").text() == Deposited.type_name
    link = cell(row, "event").find("a")
    assert link.text() == f"{poisoned.log_id} [2]"
    entries = timeline(get_path(admin_client, link.attrs["href"]))
    assert (entries[0].index, entries[0].type) == (2, Deposited.type_name)
    detail = parse(
        get_path(admin_client, cell(row, "skipped_at").find("a").attrs["href"])
    )
    assert (
        "poisoned deposit at index 2" in detail.find("pre", "eventlog-traceback").text()
    )
    # The projection, skipped past the event, runs again.
    rows = rows_by_name(admin_client.get(PROJECTIONS))
    assert cell(rows["tests.fragile"], "state_display").text() == "running"


@pytest.mark.parametrize("model", [ProjectionCheckpoint, ProjectionSkip])
def test_no_add_change_or_delete_even_for_superusers(
    model: type[ProjectionCheckpoint | ProjectionSkip],
    admin_user: User,
    rf: RequestFactory,
) -> None:
    model_admin = admin.site._registry[model]
    assert type(model_admin) is (
        ProjectionAdmin if model is ProjectionCheckpoint else ProjectionSkipAdmin
    )
    request = rf.get("/")
    request.user = admin_user
    assert model_admin.has_view_permission(request)
    assert not model_admin.has_add_permission(request)
    assert not model_admin.has_change_permission(request)
    assert not model_admin.has_delete_permission(request)


def snapshot() -> list[list[tuple[Any, ...]]]:
    return [
        list(ProjectionCheckpoint.objects.order_by("name").values_list()),
        list(ProjectionSkip.objects.order_by("id").values_list()),
    ]


def test_writes_are_refused_and_no_button_offers_one(admin_client: Client) -> None:
    account(1, 13)
    catch_up()
    checkpoint = ProjectionCheckpoint.objects.get(name="tests.fragile")
    skipped = skip("default", "tests.fragile", checkpoint.error_position, by="bob")
    account(1, 13)
    catch_up()  # fails again, on the new log's poison
    before = snapshot()
    fields = {"name": "tests.fragile", "state": "running", "position": "", "handled": 0}
    attempts = [
        ("get", f"{PROJECTIONS}add/", {}),
        ("post", f"{PROJECTIONS}add/", {**fields, "name": "new"}),
        ("post", f"{PROJECTIONS}tests.fragile/change/", fields),
        ("get", f"{PROJECTIONS}tests.fragile/delete/", {}),
        ("post", f"{PROJECTIONS}tests.fragile/delete/", {"post": "yes"}),
        ("get", f"{SKIPS}add/", {}),
        ("post", f"{SKIPS}add/", {"projection": "x", "reason": "y"}),
        ("post", f"{SKIPS}{skipped.pk}/change/", {"reason": "changed"}),
        ("get", f"{SKIPS}{skipped.pk}/delete/", {}),
        ("post", f"{SKIPS}{skipped.pk}/delete/", {"post": "yes"}),
    ]
    refused = {
        (method, url): getattr(admin_client, method)(url, data).status_code
        for method, url, data in attempts
    }
    assert {k: v for k, v in refused.items() if v != 403} == {}
    for url, selected in ((PROJECTIONS, ["tests.fragile"]), (SKIPS, [skipped.pk])):
        response = admin_client.post(
            url,
            {"action": "delete_selected", "_selected_action": selected, "post": "yes"},
        )
        assert response.status_code == 200
        assert b"Are you sure" not in response.content
    assert snapshot() == before

    pages = [
        PROJECTIONS,
        f"{PROJECTIONS}tests.fragile/change/",
        SKIPS,
        f"{SKIPS}{skipped.pk}/change/",
    ]
    for url in pages:
        content = get_path(admin_client, url).content.decode()
        assert f"{PROJECTIONS}add/" not in content, url
        assert f"{SKIPS}add/" not in content, url
        assert 'name="action"' not in content, url  # no actions, no checkboxes
        assert 'name="_save"' not in content, url
        assert 'class="deletelink"' not in content, url
    for url in pages[1::2]:  # the detail pages: no editable field
        assert not parse(get_path(admin_client, url)).find_all("input", "vTextField")


def staff_client(username: str, codenames: list[str]) -> Client:
    user = User.objects.create_user(username, password="unused", is_staff=True)
    user.user_permissions.set(
        Permission.objects.filter(
            content_type__app_label="django_eventlog", codename__in=codenames
        )
    )
    client = Client()
    client.force_login(user)
    return client


def test_viewing_needs_the_view_permission(db: None) -> None:
    account(1)
    catch_up()
    blind = staff_client("blind", ["view_log", "view_event"])
    assert blind.get(PROJECTIONS).status_code == 403
    assert blind.get(SKIPS).status_code == 403
    viewer = staff_client("viewer", ["view_projectioncheckpoint"])
    assert set(rows_by_name(viewer.get(PROJECTIONS))) == set(
        ProjectionCheckpoint.objects.values_list("name", flat=True)
    )
    assert viewer.get(SKIPS).status_code == 403


def counted(client: Client, url: str) -> int:
    ContentType.objects.clear_cache()
    with CaptureQueriesContext(connection) as queries:
        response = client.get(url)
    assert response.status_code == 200
    return len(queries.captured_queries)


def test_the_list_costs_a_bounded_number_of_queries(
    admin_client: Client, django_assert_max_num_queries: DjangoAssertNumQueries
) -> None:
    account(1, 13)  # Fragile fails: its error and event are shown too
    catch_up()
    account(1)
    few = counted(admin_client, PROJECTIONS)
    for _ in range(20):
        account(*range(20, 30))
    many = counted(admin_client, PROJECTIONS)
    assert many == few
    ContentType.objects.clear_cache()
    with django_assert_max_num_queries(MAX_QUERIES_3_PROJECTIONS):
        response = admin_client.get(PROJECTIONS)
    assert len(rows_by_name(response)) == 3
    assert cell(rows_by_name(response)["tests.balances"], "events_behind").text() == (
        str(2 + 20 * 11)
    )
