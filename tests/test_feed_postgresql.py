"""The feed under concurrent writers, with real transactions (PostgreSQL).

Each :class:`~tests.sessions.Session` is a thread with its own database
connection, so a test can hold a transaction open in one while another
commits, and choose the order of every step.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from django.db import connection, transaction
from django.test import override_settings

from django_eventlog import Event, FeedPositionsAhead, Log, LogState
from django_eventlog.models import ProjectionCheckpoint
from django_eventlog.projections import catch_up
from django_eventlog.sql import feed_statements
from tests.domain import Deposited, Opened
from tests.sessions import Session

pytestmark = [pytest.mark.postgresql, pytest.mark.django_db(transaction=True)]


def feed_keys(after: str | None = None) -> list[tuple[uuid.UUID, int]]:
    return [(r.log_id, r.index) for r in Log.objects.feed(after, limit=1000)]


def test_an_open_transaction_holds_back_what_commits_after_it(
    sessions: Callable[[], Session],
) -> None:
    """The skip other stores make: the event of the transaction that took its
    id first but commits last must not be passed over by a reader."""
    a = Log.objects.create_log(Opened("a"), kind="account")
    b = Log.objects.create_log(Opened("b"), kind="account")
    [_, last_read] = Log.objects.feed()
    slow, fast = sessions(), sessions()
    slow.begin()
    slow.do(lambda: Log.objects.append(a, Deposited(1)))  # takes its id first
    fast.do(lambda: Log.objects.append(b, Deposited(2)))  # commits (autocommit)
    # b's event is committed but waits behind the open transaction.
    assert feed_keys(last_read.position) == []
    horizon = Log.objects.feed_horizon()
    assert horizon.held_back == 1
    assert horizon.holder is not None
    assert horizon.holder.pid == slow.pid()
    assert horizon.holder.state == "idle in transaction"
    assert horizon.holder.seconds >= 0
    slow.commit()
    # Both, the one that took its transaction id first first.
    assert feed_keys(last_read.position) == [(a.log_id, 1), (b.log_id, 1)]
    assert Log.objects.feed_horizon().held_back == 0


def test_a_rolled_back_transaction_leaves_nothing_and_holds_nothing(
    sessions: Callable[[], Session],
) -> None:
    a = Log.objects.create_log(Opened("a"), kind="account")
    b = Log.objects.create_log(Opened("b"), kind="account")
    [_, last_read] = Log.objects.feed()
    doomed, fast = sessions(), sessions()
    doomed.begin()
    doomed.do(lambda: Log.objects.append(a, Deposited(1)))
    fast.do(lambda: Log.objects.append(b, Deposited(2)))
    assert feed_keys(last_read.position) == []
    doomed.rollback()
    assert feed_keys(last_read.position) == [(b.log_id, 1)]


def test_per_log_order_when_the_later_index_took_its_transaction_id_first(
    sessions: Callable[[], Session],
) -> None:
    """Issue 16's interleaving: T2 obtains its transaction id first (it saved
    another model), T1 appends index 5 and commits, T2 appends index 6."""
    state = Log.objects.create_log(
        [Opened("a"), *map(Deposited, range(1, 5))], kind="account"
    )
    assert state.next_index == 5
    t1, t2 = sessions(), sessions()
    t2.begin()
    t2.do(lambda: Log.objects.create_log(Opened("other"), kind="other"))
    t1.do(lambda: Log.objects.append(state, Deposited(5)))
    t2.do(lambda: Log.objects.append(LogState(state.log_id, 6), Deposited(6)))
    t2.commit()
    mine = [r.index for r in Log.objects.feed(limit=1000) if r.log_id == state.log_id]
    assert mine == [0, 1, 2, 3, 4, 5, 6]
    txids = dict(Event.objects.filter(log_id=state.log_id).values_list("index", "txid"))
    # Event 6 sorts with event 5's transaction id, the later of the two.
    assert txids[6] == txids[5]
    assert txids[5] != 0


def test_a_writer_that_guessed_an_index_gets_an_id_after_the_event_before(
    sessions: Callable[[], Session],
) -> None:
    """The id breaks ties: an INSERT with an id taken before the event before
    it was written (here: given by hand) is given a new one by the trigger."""
    state = Log.objects.create_log(Opened("a"), kind="account")
    t1, t2 = sessions(), sessions()
    t2.begin()
    t2.do(lambda: Log.objects.create_log(Opened("other"), kind="other"))
    t1.do(lambda: Log.objects.append(state, Deposited(1)))
    before = Event.objects.get(log_id=state.log_id, index=1)

    def guess() -> int:
        with connection.cursor() as cursor:
            cursor.execute(
                "INSERT INTO django_eventlog_event "
                '(id, log_id, "index", type, payload, recorded_at) '
                "VALUES (1, %s, 2, 'tests.deposited', '{\"amount\": 2}', now()) "
                "RETURNING id",
                [state.log_id],
            )
            return int(cursor.fetchone()[0])

    new_id = t2.do(guess)
    t2.commit()
    assert new_id > before.pk
    assert [r.index for r in Log.objects.feed() if r.log_id == state.log_id] == [
        0,
        1,
        2,
    ]


def test_every_writer_gets_a_position_it_cannot_choose() -> None:
    state = Log.objects.create_log(Opened("a"), kind="account")
    Event.objects.create(
        log_id=state.log_id,
        index=1,
        type="tests.deposited",
        payload={"amount": 1},
        txid=1,
    )
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO django_eventlog_event "
            '(log_id, "index", type, payload, recorded_at, txid) '
            "VALUES (%s, 2, 'tests.deposited', '{\"amount\": 2}', now(), 0)",
            [state.log_id],
        )
    txids = list(
        Event.objects.filter(log_id=state.log_id)
        .order_by("index")
        .values_list("txid", flat=True)
    )
    assert None not in txids
    assert len(set(txids)) == 3
    assert txids == sorted(txids)  # type: ignore[type-var]
    assert txids[0] > 1  # type: ignore[operator]
    assert [r.index for r in Log.objects.feed()] == [0, 1, 2]


def test_inside_its_own_transaction_a_reader_sees_its_own_events() -> None:
    """A TestCase, or a handler that appends, reads what it wrote before it commits."""
    with transaction.atomic():
        state = Log.objects.create_log(Opened("a"), kind="account")
        Log.objects.append(state, Deposited(1))
        assert feed_keys() == [(state.log_id, 0), (state.log_id, 1)]


def test_positions_copied_from_another_cluster_stop_the_runners(settings: Any) -> None:
    """After a logical restore the stored txids can be ahead of the new
    cluster's transaction ids: new events would sort before positions
    already delivered. catch_up and the runner refuse, naming the repair."""
    settings.EVENTLOG_PROJECTIONS = ["tests.projections.Balances"]
    state = Log.objects.create_log(Opened("a"), kind="account")
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_snapshot_xmax(pg_current_snapshot())::text::bigint")
        current = int(cursor.fetchone()[0])
    copied = (7 << 32) + 5  # as a restore from an older, busier cluster
    with transaction.atomic(), connection.cursor() as cursor:
        # Past the triggers, as pg_restore's COPY writes rows.
        cursor.execute("SET LOCAL session_replication_role = replica")
        cursor.execute(
            "INSERT INTO django_eventlog_event "
            '(log_id, "index", type, payload, recorded_at, txid) '
            "VALUES (%s, 1, 'tests.deposited', '{\"amount\": 1}', now(), %s)",
            [state.log_id, copied],
        )
    with pytest.raises(FeedPositionsAhead) as raised:
        catch_up()
    assert raised.value.stored == copied
    assert raised.value.current >= current
    assert "pg_resetwal -e 7 -x 6" in str(raised.value)
    with pytest.raises(CommandError, match="pg_resetwal"):
        call_command("eventlog_projections", "run", "--once")
    assert not ProjectionCheckpoint.objects.exists()


def test_a_page_past_the_statistics_reads_the_feed_index_in_order() -> None:
    """Events newer than the last ANALYZE: the page is still a walk of the
    feed index that stops at the limit, not a join of everything after the
    position and a sort (the kind is read per row)."""
    state = Log.objects.create_log(Opened("a"), kind="account")
    for start in range(1, 2001, 100):
        state = Log.objects.append(
            state, [Deposited(n) for n in range(start, start + 100)]
        )
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE django_eventlog_event")
        cursor.execute("ANALYZE django_eventlog_log")
    state = Log.objects.append(state, [Deposited(n) for n in range(100)])
    last = Event.objects.get(log_id=state.log_id, index=2000)
    query = feed_statements(connection).page(0, 0)
    with connection.cursor() as cursor:
        cursor.execute("EXPLAIN (FORMAT JSON) " + query, [last.txid, last.pk, 500])
        plan = json.dumps(cursor.fetchone()[0])
    assert "django_eventlog_event_feed_idx" in plan
    assert '"Sort"' not in plan
    assert "Join" not in plan


def test_the_events_of_the_own_transaction_are_not_ahead() -> None:
    """Inside a transaction that wrote events (a TestCase, a handler), its
    own transaction id is the latest: not a sign of copied positions."""
    settings_paths = ["tests.projections.Balances"]
    with transaction.atomic(), override_settings(EVENTLOG_PROJECTIONS=settings_paths):
        Log.objects.create_log([Opened("a"), Deposited(1)], kind="account")
        assert catch_up() == {"tests.balances": 2}
