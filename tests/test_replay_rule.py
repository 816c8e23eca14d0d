"""The replay rule, one test per cell of its table (issue 14, item 4).

docs/concepts.md ("Replay or conflict") states the rule: a used key answers
``IdempotentReplay`` only for the same request (an append to the same log of
an equal event; a create of the same kind with an equal event 0, and the
same log id when the caller passes one), ``IdempotencyConflict`` for any
other. Both name the original event; nothing is written. Runs on SQLite and
PostgreSQL alike.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass

import pytest
from asgiref.sync import async_to_sync
from django.db import connection
from django.test.utils import CaptureQueriesContext

from django_eventlog import (
    IdempotencyConflict,
    IdempotentReplay,
    InvalidArgument,
    LogState,
)
from django_eventlog.models import Event, Log
from tests.domain import Deposited, Opened

pytestmark = pytest.mark.django_db

CREATE_KEY = "rule:create"
APPEND_KEY = "rule:append"


@dataclass(frozen=True)
class World:
    """Log ``a`` (kind "account"): ``Opened("ada")`` at 0 under CREATE_KEY,
    ``Deposited(10)`` at 1 under APPEND_KEY. Log ``b``: another account, no
    keys. ``missing``: no log has this id."""

    a: uuid.UUID
    b: uuid.UUID
    missing: uuid.UUID


@pytest.fixture
def world() -> World:
    a = Log.objects.create_log(
        Opened("ada"), kind="account", idempotency_key=CREATE_KEY
    )
    Log.objects.append(a, Deposited(10), idempotency_key=APPEND_KEY)
    b = Log.objects.create_log(Opened("bob"), kind="account")
    return World(a.log_id, b.log_id, uuid.uuid4())


Write = Callable[[World], object]
Replay, Conflict = IdempotentReplay, IdempotencyConflict


def append(log: str, index: int, event: object, key: str) -> Write:
    def write(w: World) -> object:
        state = LogState(getattr(w, log), index)
        return Log.objects.append(state, event, idempotency_key=key)  # type: ignore[arg-type]

    return write


def create(
    event: object, key: str, *, kind: str = "account", log: str | None = None
) -> Write:
    def write(w: World) -> object:
        log_id = None if log is None else getattr(w, log)
        return Log.objects.create_log(
            event,  # type: ignore[arg-type]
            kind=kind,
            log_id=log_id,
            idempotency_key=key,
        )

    return write


def check(
    event: object, key: str, *, kind: str | None = None, log: str | None = None
) -> Write:
    def write(w: World) -> object:
        log_id = None if log is None else getattr(w, log)
        Log.objects.check_idempotency_key(
            key,
            event,  # type: ignore[arg-type]
            log_id=log_id,
            kind=kind,
        )
        return None

    return write


Cell = tuple[str, Write, type[Exception], int]


def cell(name: str, write: Write, answer: type[Exception], index: int) -> Cell:
    """One row of the table: the write, its answer, the original's index on a."""
    return name, write, answer, index


CELLS: list[Cell] = [
    # append(state, event)
    cell(
        "append: same log, equal event",
        append("a", 2, Deposited(10), APPEND_KEY),
        Replay,
        1,
    ),
    cell(
        "append: same log, stale state",
        append("a", 1, Deposited(10), APPEND_KEY),
        Replay,
        1,
    ),
    cell(
        "append: same log, state ahead",
        append("a", 9, Deposited(10), APPEND_KEY),
        Replay,
        1,
    ),
    cell(
        "append: same log, other payload",
        append("a", 2, Deposited(11), APPEND_KEY),
        Conflict,
        1,
    ),
    cell(
        "append: same log, other type",
        append("a", 2, Opened("ada"), APPEND_KEY),
        Conflict,
        1,
    ),
    cell(
        "append: other log, equal event",
        append("b", 1, Deposited(10), APPEND_KEY),
        Conflict,
        1,
    ),
    cell(
        "append: other log, state ahead",
        append("b", 7, Deposited(10), APPEND_KEY),
        Conflict,
        1,
    ),
    cell(
        "append: missing log, index 0",
        append("missing", 0, Deposited(10), APPEND_KEY),
        Conflict,
        1,
    ),
    cell(
        "append: missing log, index 3",
        append("missing", 3, Deposited(10), APPEND_KEY),
        Conflict,
        1,
    ),
    cell(
        "append: same log, a create's key, equal event",
        append("a", 2, Opened("ada"), CREATE_KEY),
        Replay,
        0,
    ),
    cell(
        "append: same log at 0, a create's key, equal event",
        append("a", 0, Opened("ada"), CREATE_KEY),
        Replay,
        0,
    ),
    cell(
        "append: same log, a create's key, other payload",
        append("a", 2, Opened("eve"), CREATE_KEY),
        Conflict,
        0,
    ),
    cell(
        "append: other log, a create's key, equal event",
        append("b", 1, Opened("ada"), CREATE_KEY),
        Conflict,
        0,
    ),
    # create_log(event, kind=..., log_id=...)
    cell(
        "create: same kind, equal event, generated id",
        create(Opened("ada"), CREATE_KEY),
        Replay,
        0,
    ),
    cell(
        "create: explicit id, the original's",
        create(Opened("ada"), CREATE_KEY, log="a"),
        Replay,
        0,
    ),
    cell(
        "create: other kind",
        create(Opened("ada"), CREATE_KEY, kind="ledger"),
        Conflict,
        0,
    ),
    cell(
        "create: other payload",
        create(Opened("eve"), CREATE_KEY),
        Conflict,
        0,
    ),
    cell(
        "create: other type",
        create(Deposited(10), CREATE_KEY),
        Conflict,
        0,
    ),
    cell(
        "create: explicit id, another existing log",
        create(Opened("ada"), CREATE_KEY, log="b"),
        Conflict,
        0,
    ),
    cell(
        "create: explicit id, a new log",
        create(Opened("ada"), CREATE_KEY, log="missing"),
        Conflict,
        0,
    ),
    cell(
        "create: an append's key, equal event",
        create(Deposited(10), APPEND_KEY),
        Conflict,
        1,
    ),
    cell(
        "create: an append's key, explicit id of its log",
        create(Deposited(10), APPEND_KEY, log="a"),
        Conflict,
        1,
    ),
    # check_idempotency_key(key, event, log_id=..., kind=...)
    cell(
        "check as append: same log, equal event",
        check(Deposited(10), APPEND_KEY, log="a"),
        Replay,
        1,
    ),
    cell(
        "check as append: other log, equal event",
        check(Deposited(10), APPEND_KEY, log="b"),
        Conflict,
        1,
    ),
    cell(
        "check as append: same log, other payload",
        check(Deposited(11), APPEND_KEY, log="a"),
        Conflict,
        1,
    ),
    cell(
        "check as append: same log, a create's key",
        check(Opened("ada"), CREATE_KEY, log="a"),
        Replay,
        0,
    ),
    cell(
        "check as create: same kind, equal event",
        check(Opened("ada"), CREATE_KEY, kind="account"),
        Replay,
        0,
    ),
    cell(
        "check as create: explicit id, the original's",
        check(Opened("ada"), CREATE_KEY, kind="account", log="a"),
        Replay,
        0,
    ),
    cell(
        "check as create: other kind",
        check(Opened("ada"), CREATE_KEY, kind="ledger"),
        Conflict,
        0,
    ),
    cell(
        "check as create: explicit id, another log",
        check(Opened("ada"), CREATE_KEY, kind="account", log="b"),
        Conflict,
        0,
    ),
    cell(
        "check as create: an append's key",
        check(Deposited(10), APPEND_KEY, kind="account"),
        Conflict,
        1,
    ),
]


def stored() -> list[tuple[uuid.UUID, int, str]]:
    return sorted(Event.objects.values_list("log_id", "index", "type"))


@pytest.mark.parametrize(
    ("write", "answer", "index"),
    [
        pytest.param(write, answer, index, id=cell)
        for cell, write, answer, index in CELLS
    ],
)
def test_each_cell_of_the_replay_table(
    world: World, write: Write, answer: type[Exception], index: int
) -> None:
    logs, events = set(Log.objects.values_list("id", flat=True)), stored()
    with pytest.raises((IdempotentReplay, IdempotencyConflict)) as info:
        write(world)
    error = info.value
    assert type(error) is answer, repr(error)
    key = APPEND_KEY if index else CREATE_KEY
    assert (error.idempotency_key, error.log_id, error.event_index) == (
        key,
        world.a,
        index,
    )
    assert set(Log.objects.values_list("id", flat=True)) == logs
    assert stored() == events


def test_the_table_covers_both_answers_for_every_write() -> None:
    for write in ("append:", "create:", "check as append:", "check as create:"):
        answers = {answer for name, _w, answer, _i in CELLS if name.startswith(write)}
        assert answers == {Replay, Conflict}, write


def test_check_needs_the_write_it_stands_for(world: World) -> None:
    with pytest.raises(InvalidArgument, match=r"log_id= .* or kind="):
        Log.objects.check_idempotency_key(APPEND_KEY, Deposited(10))


def test_a_free_key_is_free_for_every_write(world: World) -> None:
    # Each returns (None) rather than raise.
    Log.objects.check_idempotency_key("free", Opened("ada"), log_id=world.a)
    Log.objects.check_idempotency_key("free", Opened("ada"), kind="account")
    Log.objects.check_idempotency_key("free", Opened("ada"), kind="a", log_id=world.b)


def test_the_refusal_asks_the_key_and_kind_in_one_select(world: World) -> None:
    # The original's kind comes with the key's row (a join), not a query more.
    for state in (LogState(world.a, 1), LogState(world.a, 9), LogState(world.b, 1)):
        with (
            CaptureQueriesContext(connection) as queries,
            pytest.raises((IdempotentReplay, IdempotencyConflict)),
        ):
            Log.objects.append(state, Deposited(10), idempotency_key=APPEND_KEY)
        selects = [q["sql"] for q in queries if q["sql"].startswith("SELECT")]
        assert len(selects) == 1, selects


def test_async_twins_follow_the_rule(world: World) -> None:
    async def cross_log() -> None:
        await Log.objects.aappend(
            LogState(world.b, 1), Deposited(10), idempotency_key=APPEND_KEY
        )

    async def other_kind() -> None:
        await Log.objects.acreate_log(
            Opened("ada"), kind="ledger", idempotency_key=CREATE_KEY
        )

    async def same_log() -> None:
        await Log.objects.aappend(
            LogState(world.a, 2), Deposited(10), idempotency_key=APPEND_KEY
        )

    async def same_create() -> None:
        await Log.objects.acreate_log(
            Opened("ada"), kind="account", idempotency_key=CREATE_KEY
        )

    events = stored()
    cases = [
        (cross_log, IdempotencyConflict, 1),
        (other_kind, IdempotencyConflict, 0),
        (same_log, IdempotentReplay, 1),
        (same_create, IdempotentReplay, 0),
    ]
    for scenario, answer, index in cases:
        with pytest.raises(answer) as info:
            async_to_sync(scenario)()
        assert (info.value.log_id, info.value.event_index) == (world.a, index)
    assert stored() == events
