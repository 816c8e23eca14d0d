"""Events outlive their classes: schema versions, upcasters and aliases.

Each test stores events with one release of a class (tests.versions), then
deploys the next and reads them back through every read path: ``load``,
``reduce``, the feed, and the idempotent-replay comparison.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import pytest

from django_eventlog import (
    Aggregate,
    DuplicateEventType,
    DuplicateUpcaster,
    EventDecodingError,
    EventRecord,
    IdempotencyConflict,
    IdempotentReplay,
    InvalidArgument,
    Log,
    MissingUpcaster,
    UnknownEventType,
    cache_stats,
    upcaster,
    wait_for_cache_writes,
)
from django_eventlog.models import Event
from django_eventlog.testing import make_log
from tests.conftest import stats_delta
from tests.versions import release, stored_versions

pytestmark = pytest.mark.django_db


@dataclass
class Seen(Aggregate):
    """Every event's type name and fields, as the aggregate was given them."""

    events: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    def apply(self, record: EventRecord) -> None:
        self.events.append((record.type, dict(vars(record.event))))


def read(log_id: uuid.UUID) -> list[tuple[str, dict[str, Any]]]:
    """What load, reduce and the feed each read of the log: asserted equal."""
    loaded = [(r.type, dict(vars(r.event))) for r in Log.objects.load(log_id)]
    reduced = Log.objects.reduce(log_id, Seen).aggregate.events
    fed = [
        (r.type, dict(vars(r.event)))
        for r in Log.objects.feed(limit=1000)
        if r.log_id == log_id
    ]
    assert loaded == reduced == fed
    return loaded


# What a write stores


def test_version_1_is_stored_as_null_and_later_versions_as_themselves() -> None:
    v1 = release("tests.up.stored", 1, {"n": int})
    state = make_log(v1(n=1), kind="parcel")
    v2 = release("tests.up.stored", 2, {"n": int})
    upcaster(v2, 1)(lambda data: data)
    Log.objects.append(state, [v2(n=2), v2(n=3)])
    assert stored_versions(state.log_id) == [None, 2, 2]


# The kinds of change


def test_a_field_added_is_filled_by_the_upcaster() -> None:
    v1 = release("tests.up.added", 1, {"carrier": str})
    state = make_log(v1(carrier="dhl"), kind="parcel")
    v2 = release("tests.up.added", 2, {"carrier": str, "tracking": str})

    @upcaster("tests.up.added", from_version=1)
    def add_tracking(data: dict[str, Any]) -> dict[str, Any]:
        return {**data, "tracking": "unknown"}

    Log.objects.append(state, v2(carrier="ups", tracking="1Z"))
    assert read(state.log_id) == [
        ("tests.up.added", {"carrier": "dhl", "tracking": "unknown"}),
        ("tests.up.added", {"carrier": "ups", "tracking": "1Z"}),
    ]
    assert all(isinstance(r.event, v2) for r in Log.objects.load(state.log_id))


def test_a_field_removed_is_dropped_by_the_upcaster_which_sees_it() -> None:
    v1 = release("tests.up.removed", 1, {"carrier": str, "weight": int})
    state = make_log(v1(carrier="dhl", weight=3), kind="parcel")
    release("tests.up.removed", 2, {"carrier": str})
    given = []

    @upcaster("tests.up.removed", from_version=1)
    def drop_weight(data: dict[str, Any]) -> dict[str, Any]:
        given.append(dict(data))
        del data["weight"]
        return data

    assert read(state.log_id) == [("tests.up.removed", {"carrier": "dhl"})]
    # The stored JSON object, as written by release 1.
    assert given[0] == {"carrier": "dhl", "weight": 3}


def test_a_field_renamed_keeps_its_value() -> None:
    v1 = release("tests.up.renamed", 1, {"name": str})
    state = make_log(v1(name="ada"), kind="parcel")
    # A default would hide the rename from msgspec: the upcaster keeps the value.
    release("tests.up.renamed", 2, {"full_name": str}, defaults={"full_name": ""})

    @upcaster("tests.up.renamed", from_version=1)
    def rename(data: dict[str, Any]) -> dict[str, Any]:
        return {"full_name": data.pop("name"), **data}

    assert read(state.log_id) == [("tests.up.renamed", {"full_name": "ada"})]


def test_a_field_whose_type_changed_is_converted() -> None:
    v1 = release("tests.up.retyped", 1, {"cents": int})
    state = make_log(v1(cents=1234), kind="parcel")
    release("tests.up.retyped", 2, {"cents": Decimal})

    @upcaster("tests.up.retyped", from_version=1)
    def to_decimal(data: dict[str, Any]) -> dict[str, Any]:
        return {"cents": str(Decimal(data["cents"]) / 100)}

    assert read(state.log_id) == [("tests.up.retyped", {"cents": Decimal("12.34")})]


def test_a_renamed_type_reads_its_old_events_through_its_alias() -> None:
    old = release("tests.up.old_name", 1, {"n": int}, name="renamed")
    state = make_log(old(n=1), kind="parcel")
    new = release(
        "tests.up.new_name",
        1,
        {"n": int},
        aliases=("tests.up.old_name",),
        name="renamed",
    )
    Log.objects.append(state, new(n=2))
    # Read as the class, under its name now, wherever it was stored.
    assert read(state.log_id) == [
        ("tests.up.new_name", {"n": 1}),
        ("tests.up.new_name", {"n": 2}),
    ]
    stored = Event.objects.filter(log_id=state.log_id).order_by("index")
    assert list(stored.values_list("type", flat=True)) == [
        "tests.up.old_name",
        "tests.up.new_name",
    ]
    # The feed's type filter: the class, its name or its alias, all of it.
    for types in ([new], ["tests.up.new_name"], ["tests.up.old_name"]):
        records = Log.objects.feed(types=types)
        assert [vars(r.event) for r in records] == [{"n": 1}, {"n": 2}], types


def test_a_three_step_chain_runs_each_step_in_order() -> None:
    v1 = release("tests.up.chain", 1, {"a": int})
    state = make_log(v1(a=1), kind="parcel")
    v2 = release("tests.up.chain", 2, {"a": int, "b": int})
    state = Log.objects.append(state, v2(a=2, b=20))
    v3 = release("tests.up.chain", 3, {"a": int, "b": int, "c": int})
    Log.objects.append(state, v3(a=3, b=30, c=300))
    steps = []

    @upcaster(v3, from_version=1)
    def one_to_two(data: dict[str, Any]) -> dict[str, Any]:
        steps.append((1, data["a"]))
        return {**data, "b": data["a"] * 10}

    @upcaster(v3, from_version=2)
    def two_to_three(data: dict[str, Any]) -> dict[str, Any]:
        steps.append((2, data["a"]))
        return {**data, "c": data["b"] * 10}

    assert [event for _, event in read(state.log_id)] == [
        {"a": 1, "b": 10, "c": 100},
        {"a": 2, "b": 20, "c": 200},
        {"a": 3, "b": 30, "c": 300},
    ]
    # Per read of the three paths: the v1 event through both steps, in
    # order; the v2 event through the second; the v3 event through none.
    assert steps == [(1, 1), (2, 1), (2, 2)] * 3


# What cannot be read


def test_a_missing_upcaster_names_the_type_version_log_index_and_step() -> None:
    v1 = release("tests.up.missing", 1, {"a": int})
    state = make_log(v1(a=1), kind="parcel")
    v2 = release("tests.up.missing", 2, {"a": int})
    state = Log.objects.append(state, v2(a=2))
    release("tests.up.missing", 3, {"a": int})
    upcaster("tests.up.missing", 2)(lambda data: data)  # 1 -> 2 is missing
    for read_path in (
        lambda: Log.objects.load(state.log_id),
        lambda: Log.objects.reduce(state.log_id, Seen),
        lambda: Log.objects.feed(types=["tests.up.missing"]),
    ):
        with pytest.raises(MissingUpcaster) as raised:
            read_path()
        error = raised.value
        assert isinstance(error, EventDecodingError)
        assert (error.type_name, error.version, error.current) == (
            "tests.up.missing",
            1,
            3,
        )
        assert (error.log_id, error.index, error.missing) == (state.log_id, 0, 1)
        assert "no upcaster from version 1 to 2" in str(error)
        assert f"log {state.log_id}, index 0" in str(error)
    # From index 1 on, the v2 event is read through the step that exists.
    assert [vars(r.event) for r in Log.objects.load(state.log_id, start=1)] == [
        {"a": 2}
    ]


def test_an_event_newer_than_its_class_is_refused_by_name() -> None:
    v2 = release("tests.up.newer", 2, {"a": int})
    upcaster(v2, 1)(lambda data: data)
    state = make_log(v2(a=1), kind="parcel")
    release("tests.up.newer", 1, {"a": int})  # a rollback to release 1
    with pytest.raises(MissingUpcaster) as raised:
        Log.objects.load(state.log_id)
    assert (raised.value.version, raised.value.current) == (2, 1)
    assert raised.value.missing is None
    assert "newer than the class's schema_version 1" in str(raised.value)


def test_an_upcaster_that_fails_is_named() -> None:
    v1 = release("tests.up.failing", 1, {"a": int})
    state = make_log(v1(a=1), kind="parcel")
    release("tests.up.failing", 2, {"a": int, "b": int})

    def broken(data: dict[str, Any]) -> dict[str, Any]:
        return {**data, "b": data["missing"]}

    upcaster("tests.up.failing", 1)(broken)
    with pytest.raises(EventDecodingError) as raised:
        Log.objects.load(state.log_id)
    assert "broken from version 1 raised KeyError('missing')" in str(raised.value)
    assert isinstance(raised.value.__cause__, KeyError)
    # Redefined (the same qualified name: a fix deployed), twice more.
    fixes: list[tuple[Any, str]] = [
        (lambda data: {**data, "b": "not an int"}, r"upcast from version 1 to 2"),
        (lambda data: [data], r"broken from version 1 returned list, not a dict"),
    ]
    for broken_again, error in fixes:
        broken_again.__qualname__ = broken.__qualname__
        upcaster("tests.up.failing", 1)(broken_again)
        with pytest.raises(EventDecodingError, match=error):
            Log.objects.load(state.log_id)


# Idempotency across a deploy


def test_a_retry_after_an_upcaster_deploy_is_still_a_replay() -> None:
    v1 = release("tests.up.retry", 1, {"carrier": str})
    state = make_log(v1(carrier="dhl"), kind="parcel")
    Log.objects.append(state, v1(carrier="ups"), idempotency_key="ship-1")
    v2 = release("tests.up.retry", 2, {"carrier": str, "tracking": str})
    upcaster(v2, 1)(lambda data: {**data, "tracking": "unknown"})
    # The retry, sent by the new release: the stored event read as v2.
    with pytest.raises(IdempotentReplay) as replay:
        Log.objects.append(
            state, v2(carrier="ups", tracking="unknown"), idempotency_key="ship-1"
        )
    assert replay.value.event_index == 1
    with pytest.raises(IdempotencyConflict):
        Log.objects.append(
            state, v2(carrier="ups", tracking="1Z"), idempotency_key="ship-1"
        )


def test_a_retry_of_a_renamed_type_is_still_a_replay() -> None:
    old = release("tests.up.retry_old", 1, {"n": int}, name="retry_renamed")
    state = make_log(old(n=1), kind="parcel", idempotency_key="create-1")
    new = release(
        "tests.up.retry_new",
        1,
        {"n": int},
        aliases=("tests.up.retry_old",),
        name="retry_renamed",
    )
    with pytest.raises(IdempotentReplay) as replay:
        Log.objects.create_log(new(n=1), kind="parcel", idempotency_key="create-1")
    assert replay.value.log_id == state.log_id


# Bad definitions


@pytest.mark.parametrize("version", [0, -1, 32768, True, "2", 1.0, None])
def test_a_bad_schema_version_is_refused_when_the_class_is_defined(
    version: object,
) -> None:
    with pytest.raises(InvalidArgument, match="schema_version must be an int"):
        release("tests.up.bad_version", version, {"a": int})  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "aliases",
    ["tests.up.a_string", ("tests.up.bad_aliases",), ("x", "x"), ("",), 7],
)
def test_bad_aliases_are_refused_when_the_class_is_defined(aliases: object) -> None:
    with pytest.raises((InvalidArgument, DuplicateEventType)):
        release("tests.up.bad_aliases", 1, {"a": int}, aliases=aliases)  # type: ignore[arg-type]


def test_an_alias_another_class_claims_is_refused() -> None:
    release("tests.up.claimed", 1, {"a": int})
    with pytest.raises(DuplicateEventType, match=r"tests\.up\.claimed"):
        release("tests.up.claimer", 1, {"a": int}, aliases=("tests.up.claimed",))


def test_a_class_that_gives_up_an_alias_no_longer_claims_it() -> None:
    old = release("tests.up.given_up", 1, {"a": int}, name="gives_up")
    state = make_log(old(a=1), kind="parcel")
    release(
        "tests.up.gives_up",
        1,
        {"a": int},
        aliases=("tests.up.given_up",),
        name="gives_up",
    )
    assert [vars(r.event) for r in Log.objects.load(state.log_id)] == [{"a": 1}]
    release("tests.up.gives_up", 1, {"a": int}, name="gives_up")
    with pytest.raises(UnknownEventType):
        Log.objects.load(state.log_id)
    # Free for another class now.
    other = release("tests.up.given_up", 1, {"a": int})
    assert [type(r.event) for r in Log.objects.load(state.log_id)] == [other]


@pytest.mark.parametrize("from_version", [0, -1, 32767, True, "1"])
def test_a_bad_upcaster_step_is_refused(from_version: object) -> None:
    with pytest.raises(InvalidArgument, match="from_version"):
        upcaster("tests.up.bad_step", from_version)  # type: ignore[arg-type]


@pytest.mark.parametrize("event_type", ["", 7, int, "x" * 201])
def test_a_bad_upcaster_type_is_refused(event_type: object) -> None:
    with pytest.raises(InvalidArgument, match="event type"):
        upcaster(event_type, 1)  # type: ignore[arg-type]


def test_two_upcasters_for_one_step_are_refused_and_a_redefinition_replaces() -> None:
    def first(data: dict[str, Any]) -> dict[str, Any]:
        return data

    def second(data: dict[str, Any]) -> dict[str, Any]:
        return data

    upcaster("tests.up.twice", 1)(first)
    upcaster("tests.up.twice", 1)(first)  # a reloaded module: the same definition
    with pytest.raises(DuplicateUpcaster, match=r"first and .*second"):
        upcaster("tests.up.twice", 1)(second)
    with pytest.raises(InvalidArgument, match="callable"):
        upcaster("tests.up.twice", 2)("not a function")  # type: ignore[type-var]


# Cached reductions across a deploy


@dataclass
class Total(Aggregate):
    total: int = 0

    def apply(self, record: EventRecord) -> None:
        self.total += vars(record.event)["amount"]


@dataclass
class TotalInCurrency(Aggregate):
    """Total's successor: its apply reads the field the upcaster fills."""

    version = 2
    totals: dict[str, int] = field(default_factory=dict)

    def apply(self, record: EventRecord) -> None:
        fields = vars(record.event)
        currency = fields.get("currency", "EUR")
        self.totals[currency] = self.totals.get(currency, 0) + fields["amount"]


@pytest.mark.django_db(transaction=True)
def test_a_cached_reduction_stays_right_across_a_deploy_that_adds_an_upcaster(
    eventlog_cache: Any,
) -> None:
    v1 = release("tests.up.cached", 1, {"amount": int})
    state = make_log(v1(amount=10), v1(amount=20), kind="parcel")
    assert Log.objects.reduce(state.log_id, Total).aggregate.total == 30
    wait_for_cache_writes()
    # The next release: a currency, which release 1's events were all in.
    v2 = release("tests.up.cached", 2, {"amount": int, "currency": str})
    upcaster(v2, 1)(lambda data: {**data, "currency": "EUR"})
    Log.objects.append(state, v2(amount=5, currency="USD"))
    before = cache_stats()
    warm = Log.objects.reduce(state.log_id, Total)
    # From the cache, the new event applied: the facts are the same.
    assert stats_delta(before)["hits"] == 1
    assert warm.aggregate.total == 35
    # An aggregate whose apply changed bumps its version: folded cold.
    before = cache_stats()
    by_currency = Log.objects.reduce(state.log_id, TotalInCurrency).aggregate
    assert stats_delta(before)["misses"] == 1
    assert by_currency.totals == {"EUR": 30, "USD": 5}


def test_a_missing_step_of_an_aliased_event_names_the_class_s_type_name() -> None:
    old = release("tests.up.alias_old", 1, {"a": int}, name="alias_missing")
    state = make_log(old(a=1), kind="parcel")
    release(
        "tests.up.alias_new",
        2,
        {"a": int},
        aliases=("tests.up.alias_old",),
        name="alias_missing",
    )
    with pytest.raises(MissingUpcaster) as raised:
        Log.objects.load(state.log_id)
    # Stored under the old name; the upcaster is registered under the new.
    assert raised.value.type_name == "tests.up.alias_old"
    assert "registered for 'tests.up.alias_new'" in str(raised.value)
    upcaster("tests.up.alias_new", 1)(lambda data: data)
    assert [vars(r.event) for r in Log.objects.load(state.log_id)] == [{"a": 1}]
