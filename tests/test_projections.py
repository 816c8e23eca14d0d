"""Projections and subscribers, run by ``catch_up`` (both databases).

The runner's processes, locks and the proof under concurrent writers are
in ``test_projection_runner.py`` and ``tests/reliability/``.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from typing import Any

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.db import connection

from django_eventlog import Event, InvalidArgument, Log, LogState
from django_eventlog.models import ProjectionCheckpoint, ProjectionSkip
from django_eventlog.projection_control import reset_for_rebuild, retry, skip
from django_eventlog.projections import catch_up, load_projections
from tests import projections
from tests.domain import Deposited, Opened
from tests.readmodels.models import Balance, Handled

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def configured(settings: Any) -> None:
    projections.configure(settings)


def accounts(*deposits: list[int], kind: str = "account") -> list[LogState]:
    states = []
    for i, amounts in enumerate(deposits):
        state = Log.objects.create_log(Opened(f"owner {i}"), kind=kind)
        for amount in amounts:
            state = Log.objects.append(state, Deposited(amount))
        states.append(state)
    return states


def balances_from_the_events() -> dict[uuid.UUID, tuple[int, int]]:
    """(balance, last index) of each account log, folded straight from the
    events table (not through the feed)."""
    found: dict[uuid.UUID, tuple[int, int]] = defaultdict(lambda: (0, -1))
    for event in Event.objects.filter(log__kind="account").order_by("log_id", "index"):
        balance, _ = found[event.log_id]
        amount = (
            event.payload.get("amount", 0) if event.type == "tests.deposited" else 0
        )
        found[event.log_id] = (balance + amount, event.index)
    return dict(found)


def read_model() -> dict[uuid.UUID, tuple[int, int]]:
    return {b.log_id: (b.balance, b.last_index) for b in Balance.objects.all()}


def handled_indices(name: str) -> list[int]:
    return sorted(
        Handled.objects.filter(projection=name).values_list("index", flat=True)
    )


def checkpoint(name: str) -> ProjectionCheckpoint:
    return ProjectionCheckpoint.objects.get(name=name)


def test_catch_up_builds_the_read_model_once_per_event() -> None:
    projections.Fragile.poison = None
    accounts([1, 2, 3], [], [40])
    accounts([99], kind="savings")  # not an account: Balances never sees it
    handled = catch_up()
    assert handled == {"tests.balances": 7, "tests.fragile": 5, "tests.mailer": 4}
    assert read_model() == balances_from_the_events()
    assert Handled.objects.filter(projection="tests.balances").count() == 7
    assert catch_up() == {"tests.balances": 0, "tests.fragile": 0, "tests.mailer": 0}
    [state] = accounts([5])
    assert catch_up(["tests.balances"]) == {"tests.balances": 2}
    assert read_model() == balances_from_the_events()
    assert read_model()[state.log_id] == (5, 1)
    done = checkpoint("tests.balances")
    assert (done.handled, done.state) == (9, "running")
    assert done.position == Log.objects.feed(kinds=["account"], limit=100)[-1].position


def test_filters_keep_what_the_projection_asked_for() -> None:
    projections.Fragile.poison = None
    accounts([1, 2], [3])
    accounts([4], kind="savings")
    catch_up(["tests.fragile", "tests.mailer"])
    assert handled_indices("tests.fragile") == [1, 1, 1, 2]  # every Deposited
    assert sorted(owner for _, owner in projections.Mailer.sent) == [
        "owner 0",
        "owner 0",
        "owner 1",
    ]


def test_batches_end_at_the_batch_size_and_continue() -> None:
    projections.Fragile.poison = None
    accounts(list(range(1, 11)))  # 10 deposits; Fragile's batches hold 4
    run = catch_up(["tests.fragile"])
    assert run == {"tests.fragile": 10}
    assert handled_indices("tests.fragile") == list(range(1, 11))


def test_a_failing_handler_stops_the_projection_right_before_the_event() -> None:
    [state] = accounts([1, 2, 13, 4])
    assert catch_up(["tests.fragile"]) == {"tests.fragile": 2}
    failed = checkpoint("tests.fragile")
    poisoned = Log.objects.feed(types=[Deposited])[2]
    assert (poisoned.log_id, poisoned.index) == (state.log_id, 3)
    assert failed.state == "failed"
    assert failed.error_position == poisoned.position
    assert (failed.error_log_id, failed.error_index, failed.error_type) == (
        state.log_id,
        3,
        "tests.deposited",
    )
    assert "ValueError: poisoned deposit at index 3" in failed.last_error
    assert "Traceback" in failed.last_error
    # Right before the poisoned event: the two before it handled once.
    assert failed.position == Log.objects.feed(types=[Deposited])[1].position
    assert handled_indices("tests.fragile") == [1, 2]
    # Stopped: it stays where it is, even once the cause is gone.
    projections.Fragile.poison = None
    assert catch_up(["tests.fragile"]) == {"tests.fragile": 0}
    assert checkpoint("tests.fragile").state == "failed"
    # retry resumes it from the event it failed on.
    assert retry("default", "tests.fragile") is True
    assert retry("default", "tests.fragile") is False
    assert catch_up(["tests.fragile"]) == {"tests.fragile": 2}
    assert handled_indices("tests.fragile") == [1, 2, 3, 4]
    resumed = checkpoint("tests.fragile")
    assert (resumed.state, resumed.error_position) == ("running", "")
    assert "poisoned" in resumed.last_error  # kept on record


def test_a_handler_that_recovers_within_its_retries_loses_nothing(
    settings: Any,
) -> None:
    projections.Fragile.poison = None
    accounts([1, 13, 3])
    calls = []

    def flaky(self: projections.Fragile, record: Any) -> None:
        calls.append(record.index)
        if record.event.amount == 13 and calls.count(record.index) < 3:
            raise ConnectionError("blip")
        original(self, record)

    original = projections.Fragile.handle
    settings.EVENTLOG_PROJECTION_RETRIES = 3
    projections.Fragile.handle = flaky  # type: ignore[method-assign]
    try:
        assert catch_up(["tests.fragile"]) == {"tests.fragile": 3}
    finally:
        projections.Fragile.handle = original  # type: ignore[method-assign]
    assert checkpoint("tests.fragile").state == "running"
    assert handled_indices("tests.fragile") == [1, 2, 3]
    # Event 1 was handled, rolled back with its batch, handled again alone.
    assert calls.count(2) == 3


def test_skip_moves_past_exactly_the_failed_event_and_records_it() -> None:
    accounts([1, 13, 3])
    catch_up(["tests.fragile"])
    failed = checkpoint("tests.fragile")
    with pytest.raises(InvalidArgument, match=r"not 0\.1"):
        skip("default", "tests.fragile", "0.1", by="ops:ada")
    with pytest.raises(InvalidArgument, match="position"):
        skip("default", "tests.fragile", "nope", by="ops:ada")
    record = skip(
        "default", "tests.fragile", failed.error_position, by="ops:ada", reason="bad"
    )
    assert ProjectionSkip.objects.get() == record
    assert (record.projection, record.position, record.index, record.type) == (
        "tests.fragile",
        failed.error_position,
        2,
        "tests.deposited",
    )
    assert (record.skipped_by, record.reason) == ("ops:ada", "bad")
    assert "poisoned" in record.error
    with pytest.raises(InvalidArgument, match="not failed"):
        skip("default", "tests.fragile", failed.error_position, by="ops:ada")
    assert catch_up(["tests.fragile"]) == {"tests.fragile": 1}
    assert handled_indices("tests.fragile") == [1, 3]


def test_rebuild_produces_the_same_read_model() -> None:
    accounts([1, 2], [3, 4, 5])
    catch_up(["tests.balances"])
    live = read_model()
    Balance.objects.filter(log_id__in=list(live)[:1]).update(balance=-1000)  # drift
    reset_for_rebuild("default", "tests.balances", projections.Balances().reset)
    rebuilding = checkpoint("tests.balances")
    assert (rebuilding.state, rebuilding.position, rebuilding.handled) == (
        "rebuilding",
        "",
        0,
    )
    assert Balance.objects.count() == 0
    assert catch_up(["tests.balances"]) == {"tests.balances": 7}
    assert read_model() == live == balances_from_the_events()
    assert checkpoint("tests.balances").state == "running"


def test_a_subscriber_keeps_what_it_did_before_a_failure() -> None:
    """At least once: the events handled before the failing one are saved,
    the failing one is retried and, failing on, stops the subscriber."""
    accounts([], [], [])
    projections.Mailer.fail_on = "owner 1"
    assert catch_up(["tests.mailer"]) == {"tests.mailer": 1}
    assert [owner for _, owner in projections.Mailer.sent] == ["owner 0"]
    mailer = checkpoint("tests.mailer")
    assert mailer.state == "failed"
    assert mailer.position == projections.Mailer.sent[0][0]
    projections.Mailer.fail_on = None
    retry("default", "tests.mailer")
    assert catch_up(["tests.mailer"]) == {"tests.mailer": 2}
    assert [owner for _, owner in projections.Mailer.sent] == [
        "owner 0",
        "owner 1",
        "owner 2",
    ]


def test_an_event_that_no_longer_decodes_stops_the_projection_by_name() -> None:
    projections.Fragile.poison = None
    [state] = accounts([1, 2])
    # An event its class no longer fits, as an older release might have
    # written it (raw SQL: the library would refuse it).
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO django_eventlog_event "
            '(log_id, "index", type, payload, recorded_at, txid) '
            "VALUES (%s, 3, 'tests.deposited', '{\"amount\": \"x\"}', %s, 0)",
            [
                state.log_id if connection.vendor == "postgresql" else state.log_id.hex,
                "2026-01-01 00:00:00+00:00",
            ],
        )
    assert catch_up(["tests.fragile"]) == {"tests.fragile": 2}
    failed = checkpoint("tests.fragile")
    assert (failed.state, failed.error_log_id, failed.error_index) == (
        "failed",
        state.log_id,
        3,
    )
    assert "EventDecodingError" in failed.last_error


@pytest.mark.parametrize(
    ("paths", "message"),
    [
        (["tests.nowhere.Thing"], "cannot import"),
        (["tests.domain.Account"], "not a subclass of Projection"),
        (
            ["tests.projections.Balances", "tests.projections.Balances"],
            "two projections",
        ),
    ],
)
def test_a_bad_setting_is_named(settings: Any, paths: list[str], message: str) -> None:
    settings.EVENTLOG_PROJECTIONS = paths
    with pytest.raises(ImproperlyConfigured, match=message):
        load_projections()


def test_an_unknown_name_is_refused_with_the_known_ones() -> None:
    with pytest.raises(InvalidArgument, match=r"'nope'.*tests\.balances"):
        catch_up(["nope"])
    assert [p.name for p in load_projections(["tests.mailer"])] == ["tests.mailer"]


def test_a_filtered_projection_moves_past_what_it_does_not_read() -> None:
    """Caught up, a filtered projection's checkpoint stands at the end of the
    feed, not at its last matching event: the next batch does not scan the
    other events again."""
    projections.Fragile.poison = None
    accounts([1])
    accounts([], [], [])  # only Opened events, which Fragile does not read
    assert catch_up(["tests.fragile"]) == {"tests.fragile": 1}
    last = Log.objects.feed(limit=100)[-1]
    assert last.type == "tests.opened"
    fragile = checkpoint("tests.fragile")
    assert fragile.position == last.position
    assert fragile.handled == 1
    accounts([7])
    assert catch_up(["tests.fragile"]) == {"tests.fragile": 1}
    assert handled_indices("tests.fragile") == [1, 1]
    end = Log.objects.feed(limit=100)[-1].position
    assert checkpoint("tests.fragile").position == end


def test_a_projection_that_fails_on_its_first_event_is_failed_on_record() -> None:
    [state] = accounts([13])
    assert catch_up(["tests.fragile"]) == {"tests.fragile": 0}
    failed = checkpoint("tests.fragile")
    assert (failed.state, failed.position) == ("failed", "")
    assert (failed.error_log_id, failed.error_index) == (state.log_id, 1)
