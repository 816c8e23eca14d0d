"""The admin timeline and schema versions, on either database: an event
stored at an older version than its class says so next to its type and
shows the stored JSON, then the event as it is read now (through its
upcasters); a page of such events costs the queries a page of current ones
costs.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import pytest
from django.test import Client
from django.utils import timezone
from django.utils.html import escape

from django_eventlog import Log, LogState, upcaster
from django_eventlog.admin import LogAdmin
from django_eventlog.models import Event, uuid7
from testproject.payments.events import (
    Authorized,
    Captured,
    PaymentRequest,
    Requested,
)
from tests.test_admin import PAGE, Node, counted_get, log_url, parse, timeline
from tests.versions import release

if TYPE_CHECKING:
    from django.test.client import _MonkeyPatchedWSGIResponse as Response

pytestmark = pytest.mark.django_db

CAPTURED = Captured.type_name


@dataclass
class Row:
    """What one timeline row shows of how its event is stored and read."""

    index: int
    note: str | None
    captions: list[str]
    stored: str
    read_now: str | None
    unread: str | None


def rows(response: Response) -> list[Row]:
    shown = []
    for row in parse(response).find_all("tr", "eventlog-event"):
        type_cell = row.find("td", "eventlog-type")
        payload = row.find("td", "eventlog-payload")

        def text(cell: Node, tag: str, cls: str) -> str | None:
            found = cell.find_all(tag, cls)
            assert len(found) <= 1
            return found[0].text() if found else None

        shown.append(
            Row(
                int(row.find("td", "eventlog-index").text()),
                text(type_cell, "div", "eventlog-version"),
                [c.text() for c in payload.find_all("div", "eventlog-payload-caption")],
                payload.find("pre").text(),
                text(payload, "pre", "eventlog-read-now"),
                text(payload, "div", "eventlog-unread"),
            )
        )
    return shown


def authorized_payment(amount: int = 10_000) -> LogState:
    state = Log.objects.create_log(Requested(PaymentRequest(amount)), kind="payment")
    return Log.objects.append(state, Authorized(amount, "V"))


def store(
    state: LogState, type_name: str, payload: Any, version: int | None = None
) -> LogState:
    """Write the row an older (or newer) release would have, as it stood."""
    Event.objects.create(
        log_id=state.log_id,
        index=state.next_index,
        type=type_name,
        payload=payload,
        schema_version=version,
    )
    return LogState(state.log_id, state.next_index + 1)


def test_a_v1_capture_shows_what_was_stored_and_how_it_reads_now(
    admin_client: Client,
) -> None:
    state = authorized_payment()
    v1 = {"amount": 4_000, "statement_descriptor": "OLD SHOP"}
    state = store(state, CAPTURED, v1)
    Log.objects.append(state, Captured(1_000, "NEW SHOP", "USD"))

    shown = rows(admin_client.get(log_url(state.log_id)))
    assert [row.index for row in shown] == [0, 1, 2, 3]
    old = shown[2]
    assert old.note == "stored at v1, read as v2"
    assert old.captions == ["Stored", "Read now"]
    assert json.loads(old.stored) == v1
    assert old.read_now is not None
    assert json.loads(old.read_now) == {**v1, "currency": "EUR"}
    assert old.unread is None
    # Events stored at their class's version: the stored JSON alone.
    for row in (shown[0], shown[1], shown[3]):
        assert (row.note, row.captions, row.read_now, row.unread) == (
            None,
            [],
            None,
            None,
        )
    assert json.loads(shown[3].stored) == {
        "amount": 1_000,
        "statement_descriptor": "NEW SHOP",
        "currency": "USD",
    }
    # The type column still names the stored type first.
    assert timeline(admin_client.get(log_url(state.log_id)))[2].type.startswith(
        f"{CAPTURED}stored at v1"
    )


def test_the_state_after_a_v1_capture_has_the_upcasters_currency(
    admin_client: Client,
) -> None:
    state = authorized_payment()
    store(state, CAPTURED, {"amount": 4_000, "statement_descriptor": "OLD"})
    entries = timeline(admin_client.get(log_url(state.log_id, "?state=1")))
    assert ("currency", "EUR", True) in entries[2].state
    assert ("amount_captured", 4_000, True) in entries[2].state


def test_version_1_stored_as_1_reads_as_stored_as_null(admin_client: Client) -> None:
    # Another writer may store 1 where ours stores NULL: the same version.
    state = Log.objects.create_log(Requested(PaymentRequest(10)), kind="payment")
    state = store(state, Authorized.type_name, {"amount": 10}, version=1)
    store(state, CAPTURED, {"amount": 5, "statement_descriptor": "S"}, version=1)
    shown = rows(admin_client.get(log_url(state.log_id)))
    assert [row.note for row in shown] == [None, None, "stored at v1, read as v2"]
    assert shown[2].read_now is not None
    assert json.loads(shown[2].read_now)["currency"] == "EUR"


def test_an_event_that_cannot_be_read_now_says_why(admin_client: Client) -> None:
    state = authorized_payment()
    state = store(state, CAPTURED, {"amount": "4000", "statement_descriptor": "S"})
    state = store(state, CAPTURED, ["not", "an", "object"])
    store(state, CAPTURED, {"amount": 1}, version=3)
    response = admin_client.get(log_url(state.log_id))
    assert response.status_code == 200
    mistyped, not_an_object, newer = rows(response)[2:]
    assert mistyped.note == "stored at v1, read as v2"
    assert mistyped.read_now is None
    assert mistyped.captions == ["Stored", "Read now"]
    assert mistyped.unread is not None
    assert mistyped.unread.startswith("Cannot be read now: ")
    assert "$.amount" in mistyped.unread
    assert json.loads(mistyped.stored)["amount"] == "4000"
    assert not_an_object.unread is not None
    assert "not a JSON object" in not_an_object.unread
    assert newer.note == "stored at v3, newer than the class's v2"
    assert newer.unread is not None
    assert newer.unread.startswith("Cannot be read now: ")
    assert "version 3" in newer.unread


def test_a_payload_read_in_part_is_not_read_now(
    admin_client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(LogAdmin, "timeline_payload_limit", 50)
    state = authorized_payment()
    # Stored as such by a release without the descriptor's limit: longer
    # than the 10 x 50 characters the page reads of a payload.
    state = store(state, CAPTURED, {"amount": 1, "statement_descriptor": "x" * 600})
    # Longer than shown, short enough to read: read now, and cut alike.
    store(state, CAPTURED, {"amount": 2, "statement_descriptor": "y" * 20})
    cut, short = rows(admin_client.get(log_url(state.log_id)))[2:]
    assert cut.note == "stored at v1, read as v2"
    assert cut.read_now is None
    assert cut.unread == "Too long to read here: the stored JSON is cut."
    assert "truncated: more than 500 characters, the first 50 shown." in cut.stored
    assert short.unread is None
    assert short.read_now is not None
    assert "truncated" in short.read_now
    assert short.read_now.startswith('{\n  "amount": 2,')


def test_what_an_old_event_holds_is_escaped_where_it_is_read_now(
    admin_client: Client,
) -> None:
    state = authorized_payment()
    script = "<img src=x>"  # within the 22 characters of a descriptor
    store(state, CAPTURED, {"amount": 1, "statement_descriptor": script})
    response = admin_client.get(log_url(state.log_id))
    assert script.encode() not in response.content
    (row,) = rows(response)[2:]
    assert row.read_now is not None
    assert json.loads(row.read_now)["statement_descriptor"] == script
    assert json.loads(row.stored)["statement_descriptor"] == script
    assert response.content.decode().count(escape(script)) == 2


def test_a_renamed_type_says_what_it_is_read_as(admin_client: Client) -> None:
    old_name, new_name = "tests.admin_versions.parcel", "tests.admin_versions.box"
    state = Log.objects.create_log(
        release(new_name, 1, {"n": int}, name="av-box")(n=0), kind="parcel"
    )
    state = store(state, old_name, {"n": 1})
    renamed = release(new_name, 1, {"n": int}, aliases=(old_name,), name="av-box")
    shown = rows(admin_client.get(log_url(state.log_id)))
    assert [row.note for row in shown] == [
        None,
        f"stored as {old_name}, read as {new_name}",
    ]
    # Renamed only: the stored JSON is what the class reads.
    assert (shown[1].captions, shown[1].read_now) == ([], None)

    # Renamed and one version on: the read JSON too.
    two = release(new_name, 2, {"n": int, "m": int}, aliases=(old_name,), name="av-box")
    upcaster(two, from_version=1)(lambda data: {**data, "m": -data["n"]})
    state = Log.objects.append(state, two(n=2, m=2))
    shown = rows(admin_client.get(log_url(state.log_id)))
    assert [row.note for row in shown] == [
        "stored at v1, read as v2",
        f"stored as {old_name} v1, read as {new_name} v2",
        None,
    ]
    assert shown[1].read_now is not None
    assert json.loads(shown[1].read_now) == {"n": 1, "m": -1}
    assert renamed.type_name == new_name


def test_an_unknown_type_shows_what_is_stored(admin_client: Client) -> None:
    state = authorized_payment()
    store(state, "payment.disputed", {"reason": "fraud"}, version=4)
    response = admin_client.get(log_url(state.log_id))
    row = rows(response)[2]
    assert (row.note, row.captions, row.read_now) == (None, [], None)
    assert json.loads(row.stored) == {"reason": "fraud"}


def _captures(length: int, *, version: int | None) -> uuid.UUID:
    """A payment log: requested, authorized, then captures of 1 stored at
    ``version`` (without a currency at version 1)."""
    log = Log.objects.create(id=uuid7(), kind="payment")
    start = timezone.now()

    def payload(index: int) -> dict[str, Any]:
        if index == 0:
            return {"request": {"amount_requested": 10**9}}
        if index == 1:
            return {"amount": 10**9, "approval_code": None}
        capture = {"amount": 1, "statement_descriptor": f"C{index}"}
        return capture if version is None else {**capture, "currency": "EUR"}

    Event.objects.bulk_create(
        Event(
            log_id=log.id,
            index=index,
            type=(Requested, Authorized, Captured)[min(index, 2)].type_name,
            payload=payload(index),
            recorded_at=start + timedelta(microseconds=index),
            schema_version=version if index >= 2 else None,
        )
        for index in range(length)
    )
    return log.id


def test_a_page_of_older_versions_costs_what_a_page_of_current_ones_costs(
    admin_client: Client,
) -> None:
    old = _captures(3 * PAGE, version=None)
    current = _captures(3 * PAGE, version=2)
    for query in ("", f"?from={PAGE}", "?order=desc", f"?type={CAPTURED}", "?state=1"):
        response, sql = counted_get(admin_client, log_url(old, query))
        _, baseline = counted_get(admin_client, log_url(current, query))
        assert len(sql) == len(baseline), (query, sql, baseline)
        shown = rows(response)
        assert len(shown) == PAGE
        notes = {row.note for row in shown if row.index >= 2}
        assert notes == {"stored at v1, read as v2"}, query
        assert all(
            json.loads(row.read_now)["currency"] == "EUR"
            for row in shown
            if row.read_now is not None
        )
    assert {row.note for row in rows(admin_client.get(log_url(current)))} == {None}
