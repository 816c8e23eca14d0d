"""The admin in a real browser: Playwright driving Debian's Chromium.

Logs in through the login form, finds a payment log by its idempotency key,
then pages, reorders and expands its timeline, asserting on what is shown.
A full-page screenshot of each step goes to artifacts/screenshots/. A second
test opens a timeline whose state nests dicts and lists, and checks that its
column is wide enough to show each JSON line as one line.

Needs ``playwright`` (the dev extra) and ``/usr/bin/chromium`` (Debian:
``apt-get install -y chromium``); Playwright's own browser download is not
used. Without either the test fails: deselect it with ``-m "not browser"``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from django.contrib.auth import get_user_model
from django.db import connections

from django_eventlog import Aggregate, DomainEvent, EventRecord, Log
from testproject.payments.events import (
    Authorized,
    Captured,
    PaymentRequest,
    Refunded,
    Requested,
)

if TYPE_CHECKING:
    from playwright.sync_api import Page
    from pytest_django.live_server_helper import LiveServer

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",  # Chromium refuses to run as root with its sandbox
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    # Without these Chromium calls Google's servers, which are out of reach here.
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SCREENSHOTS = Path(__file__).resolve().parent.parent / "artifacts" / "screenshots"

USERNAME = "browser-admin"
PASSWORD = "correct horse battery staple"
KEY = "browser-test-payment-0001"
EVENTS = 120
PAGE_SIZE = 50
APPROVED = 12_000
CAPTURE = 100


@pytest.fixture
def _async_unsafe_orm(monkeypatch: pytest.MonkeyPatch) -> None:
    # Playwright's sync API runs an event loop in this thread, and Django's
    # ORM refuses to run beside one unless told it is safe.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")


@pytest.fixture
def page(_async_unsafe_orm: None) -> Iterator[Page]:
    """A page of a fresh headless Chromium (Debian's, not Playwright's)."""
    if not CHROMIUM.exists():
        pytest.fail(
            f"{CHROMIUM} is missing: the browser test needs Debian's Chromium "
            '(apt-get install -y chromium), or deselect it with -m "not browser".'
        )
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail(
            "playwright is not installed: make install (requirements/dev.txt), "
            'or deselect the browser test with -m "not browser".'
        )
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        try:
            context = browser.new_context(viewport={"width": 1400, "height": 900})
            new_page = context.new_page()
            new_page.set_default_timeout(10_000)
            yield new_page
        finally:
            browser.close()
            # While Playwright's loop runs, asgiref gives this thread other
            # database connections than outside it (context-local, not
            # thread-local); close them here or they outlive the loop and
            # block DROP DATABASE of the test database.
            connections.close_all()


@pytest.fixture
def fast_passwords(settings: Any) -> None:
    # PBKDF2's default work factor costs a second per login for nothing here.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def shoot(page: Page, step: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=SCREENSHOTS / f"{step}.png", full_page=True)


class LineAdded(DomainEvent):
    """An order line with nested options: a state worth a wide column."""

    type_name = "order.line_added"
    sku: str
    quantity: int
    options: dict[str, list[str]]


@dataclass
class Order(Aggregate):
    customer: dict[str, Any] = field(default_factory=dict)
    lines: list[dict[str, Any]] = field(default_factory=list)
    quantity: int = 0

    def apply(self, record: EventRecord) -> None:
        match record.event:
            case LineAdded(sku=sku, quantity=quantity, options=options):
                if not self.customer:
                    self.customer = {
                        "name": "Ada Lovelace",
                        "address": {"street": "12 St James's Square", "city": "London"},
                    }
                self.lines.append(
                    {"sku": sku, "quantity": quantity, "options": options}
                )
                self.quantity += quantity


def create_order() -> str:
    """An order log whose state nests dicts and lists a few levels deep."""
    state = Log.objects.create_log(
        LineAdded("WIDGET-BLUE-XL", 2, {"gift_wrap": ["red paper", "bow"]}),
        kind="order",
    )
    state = Log.objects.append(
        state, LineAdded("GADGET-9000", 1, {"engraving": ["For Charles, 1843"]})
    )
    return str(state.log_id)


def log_in(page: Page, live_server: LiveServer) -> None:
    """Log in through the real form as a new superuser."""
    from playwright.sync_api import expect

    get_user_model().objects.create_superuser(USERNAME, "admin@example.com", PASSWORD)
    page.goto(f"{live_server.url}/admin/")
    expect(page.locator("#login-form")).to_be_visible()
    page.fill("#id_username", USERNAME)
    page.fill("#id_password", PASSWORD)
    page.click("#login-form input[type=submit]")
    expect(page.locator("#user-tools")).to_contain_text(USERNAME)


def create_logs() -> str:
    """Create the payment log of EVENTS events and a few others; return its id."""
    state = Log.objects.create_log(
        Requested(PaymentRequest(amount_requested=APPROVED)),
        kind="payment",
        idempotency_key=KEY,
    )
    state = Log.objects.append(state, Authorized(APPROVED, "APPROVAL-1"))
    for _ in range(EVENTS - 2):
        state = Log.objects.append(state, Captured(CAPTURE, "Widgets", "EUR"))
    # Neighbours the search has to leave out.
    for amount in (500, 700):
        other = Log.objects.create_log(
            Requested(PaymentRequest(amount_requested=amount)),
            kind="payment",
            idempotency_key=f"other-payment-{amount}",
        )
        Log.objects.append(other, Authorized(amount))
    Log.objects.create_log(
        Refunded(250, "REF-9"), kind="refund", idempotency_key="other-refund"
    )
    return str(state.log_id)


def test_admin_log_list_search_and_timeline(
    live_server: LiveServer, page: Page, fast_passwords: None
) -> None:
    from playwright.sync_api import expect

    log_id = create_logs()
    log_in(page, live_server)
    expect(page.locator("h1")).to_have_text("Site administration")
    shoot(page, "01-logged-in")

    # The log list: columns and the payment log's event count.
    page.goto(f"{live_server.url}/admin/django_eventlog/log/")
    expect(page.locator("#result_list thead th .text")).to_have_text(
        ["Id", "Kind", "Created at", "Events", "Last event"]
    )
    rows = page.locator("#result_list tbody tr")
    expect(rows).to_have_count(4)
    payment_row = rows.filter(has=page.locator("th.field-id", has_text=log_id))
    expect(payment_row).to_have_count(1)
    expect(payment_row.locator("td.field-kind")).to_have_text("payment")
    expect(payment_row.locator("td.field-event_count")).to_have_text(str(EVENTS))
    shoot(page, "02-log-list")

    # Search by the first event's idempotency key.
    page.fill("#searchbar", KEY)
    page.press("#searchbar", "Enter")
    expect(page).to_have_url(re.compile(rf"[?&]q={KEY}"))
    expect(rows).to_have_count(1)
    expect(rows.locator("th.field-id")).to_have_text(log_id)
    expect(rows.locator("td.field-event_count")).to_have_text(str(EVENTS))
    shoot(page, "03-search-by-key")

    # The timeline, oldest first: events 0 to 49.
    rows.locator("th.field-id a").click()
    timeline = page.locator("#timeline")
    expect(timeline.locator("h2")).to_have_text("Timeline")
    events = timeline.locator("tr.eventlog-event")
    indexes = events.locator("td.eventlog-index")
    expect(indexes.first).to_have_text("0")
    expect(events).to_have_count(PAGE_SIZE)
    expect(indexes.last).to_have_text(str(PAGE_SIZE - 1))
    expect(page.locator("#event-0 td.eventlog-type")).to_have_text("payment.requested")
    expect(page.locator("#event-0 td.eventlog-key")).to_have_text(KEY)
    expect(page.locator("#event-1 td.eventlog-type")).to_have_text("payment.authorized")
    expect(timeline.locator("a.eventlog-previous")).to_have_count(0)
    expect(timeline.locator("a.eventlog-first")).to_have_text("First page")
    shoot(page, "04-timeline-first-page")

    # Next page: events 50 to 99.
    timeline.locator("a.eventlog-next").click()
    expect(indexes.first).to_have_text(str(PAGE_SIZE))
    expect(events).to_have_count(PAGE_SIZE)
    expect(indexes.last).to_have_text(str(2 * PAGE_SIZE - 1))
    expect(timeline.locator("a.eventlog-previous")).to_have_text("Previous page")
    expect(timeline.locator("a.eventlog-next")).to_have_text("Next page")
    shoot(page, "05-timeline-next-page")

    # Newest first, from the start again: events 119 down to 70.
    toggle = timeline.locator("a.eventlog-order-toggle")
    expect(toggle).to_have_text("Show newest first")
    toggle.click()
    expect(page).to_have_url(re.compile(r"[?&]order=desc"))
    expect(indexes.first).to_have_text(str(EVENTS - 1))
    expect(events).to_have_count(PAGE_SIZE)
    expect(indexes.last).to_have_text(str(EVENTS - PAGE_SIZE))
    expect(toggle).to_have_text("Show oldest first")
    shoot(page, "06-timeline-newest-first")

    # The payment's state after each event, the changed field highlighted.
    state_toggle = timeline.locator("a.eventlog-state-toggle")
    expect(state_toggle).to_have_text("Show Payment state after each event")
    state_toggle.click()
    expect(state_toggle).to_have_text("Hide Payment state after each event")
    expect(timeline.locator("thead th").last).to_have_text("State after")
    expect(indexes.first).to_have_text(str(EVENTS - 1))
    expect(events.locator("table.eventlog-state")).to_have_count(PAGE_SIZE)
    newest = page.locator(f"#event-{EVENTS - 1} table.eventlog-state")
    expect(newest).to_be_visible()
    expect(newest.locator("th")).to_have_text(
        [
            "request",
            "amount_approved",
            "amount_captured",
            "currency",
            "amount_refunded",
            "declined_reason",
        ]
    )
    changed = newest.locator("tr.eventlog-changed")
    expect(changed).to_have_count(1)
    expect(changed.locator("th")).to_have_text("amount_captured")
    expect(changed.locator("td")).to_have_text(str((EVENTS - 2) * CAPTURE))
    expect(changed).to_have_css("font-weight", "700")  # highlighted: bold
    expect(events.locator("tr.eventlog-changed")).to_have_count(PAGE_SIZE)
    shoot(page, "07-timeline-state-newest-first")

    # Back to oldest first, state kept: Requested and Authorized.
    toggle.click()
    expect(indexes.first).to_have_text("0")
    expect(state_toggle).to_have_text("Hide Payment state after each event")
    requested = page.locator("#event-0 tr.eventlog-changed")
    expect(requested).to_have_count(1)
    expect(requested.locator("th")).to_have_text("request")
    authorized = page.locator("#event-1 tr.eventlog-changed")
    expect(authorized).to_be_visible()
    expect(authorized).to_have_count(1)
    expect(authorized.locator("th")).to_have_text("amount_approved")
    expect(authorized.locator("td")).to_have_text(str(APPROVED))
    expect(authorized).to_have_css("font-weight", "700")
    unchanged = page.locator("#event-1 table.eventlog-state tr:not(.eventlog-changed)")
    expect(unchanged).to_have_count(5)  # Payment has six fields
    expect(unchanged.first).to_have_css("font-weight", "400")
    shoot(page, "08-timeline-state-authorized")


#: Rendered line boxes of an element's text, one per distinct top edge.
LINE_BOXES = """el => {
    const range = document.createRange();
    range.selectNodeContents(el);
    const tops = [...range.getClientRects()].map(r => Math.round(r.top));
    return new Set(tops).size;
}"""


def test_timeline_state_column_shows_nested_values_readably(
    live_server: LiveServer, page: Page, fast_passwords: None, settings: Any
) -> None:
    """Nested state values get a column wide enough to read: each line of
    their indented JSON is one line on screen, not a word or a character."""
    from playwright.sync_api import expect

    settings.EVENTLOG_ADMIN_AGGREGATES = {"order": Order}
    log_in(page, live_server)
    log_id = create_order()
    page.goto(f"{live_server.url}/admin/django_eventlog/log/{log_id}/change/?state=1")
    row = page.locator("#event-1")
    state = row.locator("table.eventlog-state")
    expect(state.locator("th")).to_have_text(["customer", "lines", "quantity"])
    shoot(page, "09-timeline-nested-state")
    row.screenshot(path=SCREENSHOTS / "10-timeline-nested-state-row.png")

    cell = row.locator("td.eventlog-state-after")
    table = page.locator("#timeline table").first
    cell_box, table_box = cell.bounding_box(), table.bounding_box()
    assert cell_box is not None
    assert table_box is not None
    # The state gets its share of the page, not what the other columns leave.
    assert cell_box["width"] >= 0.35 * table_box["width"], (cell_box, table_box)
    assert_json_lines_unwrapped(state)
    assert page.evaluate("document.documentElement.scrollWidth") <= 1400

    # A narrow window: the timeline scrolls sideways, the JSON stays unwrapped.
    page.set_viewport_size({"width": 800, "height": 900})
    scroll = page.locator("#timeline .eventlog-scroll")
    assert scroll.evaluate("el => el.scrollWidth > el.clientWidth")
    assert page.evaluate("document.documentElement.scrollWidth") <= 800
    assert_json_lines_unwrapped(state)
    scroll.evaluate("el => { el.scrollLeft = el.scrollWidth; }")
    shoot(page, "11-timeline-nested-state-narrow-scrolled")


def assert_json_lines_unwrapped(state: Any) -> None:
    """Each line of each field's indented JSON is one line on screen."""
    for value in state.locator("td pre").all():
        text = value.inner_text()
        assert value.evaluate(LINE_BOXES) == len(text.splitlines()), text
