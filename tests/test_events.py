"""DomainEvent: dataclass semantics, stored type names, JSON round trips."""

from __future__ import annotations

import dataclasses
import enum
import json
import tracemalloc
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal

import pytest
from asgiref.sync import async_to_sync
from django.db import connection
from django.test.utils import CaptureQueriesContext, override_settings

from django_eventlog import (
    DomainEvent,
    DuplicateEventType,
    EventEncodingError,
    LogState,
    UnknownEventType,
)
from django_eventlog.events import encode_event, event_class
from django_eventlog.models import Event, Log
from django_eventlog.upcasting import decode_stored


class Color(enum.Enum):
    RED = "red"
    BLUE = "blue"


@dataclass(frozen=True)
class Line:
    sku: str
    quantity: int


class Everything(DomainEvent):
    type_name = "tests.everything"
    number: int
    text: str
    flag: bool
    ratio: float
    money: Decimal
    at: datetime
    day: date
    ref: uuid.UUID
    color: Color
    line: Line
    lines: list[Line]
    counts: dict[str, int]
    maybe: int | None = None


class DefaultName(DomainEvent):
    value: int


def everything() -> Everything:
    return Everything(
        number=2**53 + 1,
        text='héllo "quoted" <b>',
        flag=True,
        ratio=0.1,
        money=Decimal("1234.5600"),
        at=datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=timezone(timedelta(hours=2))),
        day=date(2026, 2, 28),
        ref=uuid.UUID("12345678-1234-5678-1234-567812345678"),
        color=Color.BLUE,
        line=Line("a", 1),
        lines=[Line("b", 2), Line("c", 3)],
        counts={"x": 1, "y": 2},
    )


def test_subclasses_are_frozen_dataclasses() -> None:
    event = DefaultName(1)
    assert dataclasses.is_dataclass(event)
    assert [f.name for f in dataclasses.fields(event)] == ["value"]
    assert event == DefaultName(value=1)
    assert event != DefaultName(2)
    with pytest.raises(dataclasses.FrozenInstanceError):
        event.value = 2  # type: ignore[misc]


def test_type_checkers_are_told_it_is_a_dataclass_transform() -> None:
    # PEP 681 records the decorator's arguments on the class.
    recorded = DomainEvent.__dataclass_transform__  # type: ignore[attr-defined]
    # Python 3.12+ has frozen_default; earlier versions keep it among kwargs.
    assert recorded.get("frozen_default", recorded["kwargs"].get("frozen_default"))


def test_type_name_defaults_to_class_name_and_is_overridable() -> None:
    assert DefaultName.type_name == "DefaultName"
    assert Everything.type_name == "tests.everything"
    assert event_class("tests.everything") is Everything
    assert "type_name" not in {f.name for f in dataclasses.fields(Everything)}


def test_two_classes_claiming_one_name_fail_at_definition() -> None:
    with pytest.raises(DuplicateEventType, match=r"tests\.everything"):

        class Impostor(DomainEvent):
            type_name = "tests.everything"
            other: str

    assert event_class("tests.everything") is Everything


@pytest.mark.parametrize("bad", ["", "x" * 201, "a\x00b"])
def test_invalid_type_names_are_refused(bad: str) -> None:
    with pytest.raises(DuplicateEventType, match="type_name"):

        class Bad(DomainEvent):
            type_name = bad


def test_every_supported_type_round_trips_exactly() -> None:
    original = everything()
    decoded = decode_stored("tests.everything", None, encode_event(original))
    assert decoded == original
    assert type(decoded.money) is Decimal
    assert str(decoded.money) == "1234.5600"
    assert decoded.at.utcoffset() == timedelta(hours=2)
    assert type(decoded.line) is Line
    assert type(decoded.color) is Color


def test_encoded_form_is_plain_json() -> None:
    data = json.loads(encode_event(everything()))
    assert data["money"] == "1234.5600"
    assert data["ref"] == "12345678-1234-5678-1234-567812345678"
    assert data["color"] == "blue"
    assert data["lines"] == [{"sku": "b", "quantity": 2}, {"sku": "c", "quantity": 3}]
    assert data["maybe"] is None


class Loose(DomainEvent):
    type_name = "tests.loose"
    value: object


class Numbers(DomainEvent):
    type_name = "tests.numbers"
    amount: int
    ratio: float = 0.0


@pytest.mark.parametrize(
    "event",
    [
        Loose(object()),  # not JSON at all
        Loose(complex(1, 2)),
        Numbers("12"),  # type: ignore[arg-type]  # a str where an int is declared
        Numbers(1, float("nan")),
        Numbers(1, float("inf")),
    ],
    ids=["object", "complex", "wrong-type", "nan", "inf"],
)
def test_events_that_cannot_round_trip_raise_encoding_error(event: DomainEvent) -> None:
    with pytest.raises(EventEncodingError, match=type(event).__qualname__):
        encode_event(event)


class Text(DomainEvent):
    type_name = "tests.text"
    value: str


def test_nul_and_lone_surrogates_are_refused_but_backslashes_are_kept() -> None:
    with pytest.raises(EventEncodingError, match="NUL"):
        encode_event(Text("a\x00b"))
    with pytest.raises(EventEncodingError):
        encode_event(Text("\ud800"))
    tricky = Text("C:\\u0000 is not a NUL")
    assert decode_stored("tests.text", None, encode_event(tricky)) == tricky


def test_non_events_are_refused() -> None:
    with pytest.raises(EventEncodingError, match="dict"):
        encode_event({"amount": 1})  # type: ignore[arg-type]


def test_unknown_stored_type_names_the_type() -> None:
    with pytest.raises(UnknownEventType, match=r"no\.such\.type") as info:
        decode_stored("no.such.type", None, "{}")
    assert info.value.type_name == "no.such.type"
    # The fix that holds for every process, not only the one that failed.
    assert "in your AppConfig.ready() so every process" in str(info.value)


# EVENTLOG_MAX_EVENT_SIZE (issue 13): hostile sizes are refused before any I/O

MiB = 1024 * 1024


class Blob(DomainEvent):
    type_name = "tests.blob"
    note: str
    data: bytes = b""
    numbers: list[int] = dataclasses.field(default_factory=list)


def json_size(**fields: object) -> int:
    """Bytes of compact JSON of ``fields``, computed without the library."""
    return len(json.dumps(fields, separators=(",", ":"), ensure_ascii=False).encode())


def test_an_event_of_exactly_the_maximum_size_is_accepted() -> None:
    size = json_size(note="x" * 100, data="", numbers=[])
    assert encode_event(Blob("x" * 100), size) == encode_event(Blob("x" * 100))
    with pytest.raises(EventEncodingError) as info:
        encode_event(Blob("x" * 100), size - 1)
    assert str(info.value) == (
        f"Blob event is {size} bytes of JSON, more than the {size - 1} bytes "
        "EVENTLOG_MAX_EVENT_SIZE allows."
    )


def test_the_size_is_counted_in_bytes_not_characters() -> None:
    note = "é" * 600  # 600 characters, 1200 bytes of UTF-8
    size = json_size(note=note, data="", numbers=[])
    assert size > 1200
    assert encode_event(Blob(note), size)
    with pytest.raises(EventEncodingError, match=f"is {size} bytes of JSON"):
        encode_event(Blob(note), 1000)


def test_a_large_value_that_is_not_a_string_is_refused_once_encoded() -> None:
    numbers = list(range(100_000, 200_000))
    size = json_size(note="", data="", numbers=numbers)
    with pytest.raises(EventEncodingError, match=f"is {size} bytes of JSON"):
        encode_event(Blob("", numbers=numbers), MiB // 2)


@pytest.mark.parametrize("field", ["note", "data"])
def test_a_huge_string_or_bytes_field_is_refused_before_it_is_encoded(
    field: str,
) -> None:
    huge = 64 * MiB
    event = Blob("y" * huge) if field == "note" else Blob("", data=b"y" * huge)
    tracemalloc.start()
    try:
        with pytest.raises(EventEncodingError, match=f"at least {huge} bytes"):
            encode_event(event, MiB)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    # Encoding would have copied the 64 MiB at least once.
    assert peak < MiB


def _writes(log: LogState) -> list[tuple[str, Callable[[DomainEvent], object]]]:
    return [
        ("create_log", lambda e: Log.objects.create_log(e, kind="blob")),
        (
            "create_log with a key",
            lambda e: Log.objects.create_log(e, kind="blob", idempotency_key="big-1"),
        ),
        ("append", lambda e: Log.objects.append(log, e)),
        (
            "append with a key",
            lambda e: Log.objects.append(log, e, idempotency_key="k"),
        ),
        ("aappend", lambda e: async_to_sync(Log.objects.aappend)(log, e)),
        (
            "check_idempotency_key",
            lambda e: Log.objects.check_idempotency_key("k", e, log_id=log.log_id),
        ),
    ]


@pytest.mark.django_db
def test_an_event_over_the_default_maximum_is_refused_before_any_query() -> None:
    log = Log.objects.create_log(Blob("small"), kind="blob")
    too_big = Blob("z" * (2 * MiB))
    logs, events = Log.objects.count(), Event.objects.count()
    for name, write in _writes(log):
        with (
            CaptureQueriesContext(connection) as queries,
            pytest.raises(EventEncodingError) as info,
        ):
            write(too_big)
        assert str(info.value) == (
            f"Blob event is at least {2 * MiB} bytes of JSON, more than the "
            f"{MiB} bytes EVENTLOG_MAX_EVENT_SIZE allows."
        ), name
        assert [q["sql"] for q in queries] == [], name
    assert (Log.objects.count(), Event.objects.count()) == (logs, events)
    # Just under the limit is stored, and read back whole.
    under = Blob("z" * (MiB - json_size(note="", data="", numbers=[])))
    state = Log.objects.append(log, under)
    assert Log.objects.load(state.log_id, start=1)[0].event == under


@pytest.mark.django_db
def test_the_maximum_follows_the_setting() -> None:
    log = Log.objects.create_log(Blob("small"), kind="blob")
    event = Blob("w" * 200)
    with override_settings(EVENTLOG_MAX_EVENT_SIZE=100):
        for name, write in _writes(log):
            with pytest.raises(EventEncodingError, match="more than the 100 bytes"):
                write(event)
            assert Event.objects.filter(log_id=log.log_id).count() == 1, name
        Log.objects.append(log, Blob("fits"))
    # The setting restored, the same event fits again.
    state = Log.objects.append(LogState(log.log_id, 2), event, idempotency_key="k")
    assert state.next_index == 3
