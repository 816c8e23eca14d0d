"""The read side's proof: no skip, no duplicate, per-log order, under
concurrent writers and runners that get killed (issue 16).

Writers are processes (spawned: nothing inherited) that append to account
logs for ``EVENTLOG_PROOF_SECONDS`` seconds (20 by default; 8 writers,
``EVENTLOG_PROOF_WRITERS``), each transaction rolled back one time in five,
some holding an appended event open for 5 s (longer than Marten's gap
threshold) while the others commit, and some appending after another write
in the same transaction (T2 obtains its transaction id first, T1 appends
index n and commits, T2 appends index n+1). Two runner processes
(``manage.py eventlog_projections run``) compete for the projection; every
few seconds the one running it is SIGKILLed and started again.

At the end, the projection's read model (``tests.projections.Folding``)
equals a fold computed straight from the events table; it handled every
committed event once (the unique constraint of ``Handled``, and counts), in
the feed's order read from scratch (so the feed never delivered a position
after which an earlier one appeared), each log's indices in order (the
handler asserts it: a violation would leave the projection ``failed``).

On SQLite (an SQLite file of the test's own) a smaller run: one runner,
writers that take turns (SQLite has one writer at a time), short holds.

The figures of each run are printed (whatever pytest's capture).
"""

from __future__ import annotations

import os
import random
import statistics
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
from django.db import connection

from tests.projection_processes import (
    DjangoPool,
    checkpoint,
    child_env,
    feed_positions,
    fold_from_events,
    handled,
    manage,
    migrate,
    new_accounts,
    postgres_env,
    projection_fold,
    sqlite_env,
    wait_until,
)
from tests.projections import POISON_FILE
from tests.reliability.proof_run import (
    PROOF,
    Runners,
    check_final,
    figure_lines,
    final_state,
    report,
    run_proof,
)
from tests.reliability.proof_writers import WriterConfig

T = TypeVar("T")
HOLD_SECONDS = 5.0  # PostgreSQL; Marten's default gap threshold is 3 s


def proof_seconds() -> float:
    value = os.environ.get("EVENTLOG_PROOF_SECONDS", "20")
    try:
        seconds = float(value)
    except ValueError:
        pytest.fail(f"EVENTLOG_PROOF_SECONDS must be a number, got {value!r}")
    if seconds < 8:
        pytest.fail(f"EVENTLOG_PROOF_SECONDS must be at least 8, got {value!r}")
    return seconds


def writer_count() -> int:
    value = os.environ.get("EVENTLOG_PROOF_WRITERS", "8")
    if not value.isdigit() or int(value) < 2:
        pytest.fail(f"EVENTLOG_PROOF_WRITERS must be an integer >= 2, got {value!r}")
    return int(value)


@pytest.fixture
def runners_to_clean() -> Iterator[list[Runners]]:
    found: list[Runners] = []
    yield found
    for runners in found:
        runners.cleanup()


@pytest.mark.postgresql
@pytest.mark.django_db(transaction=True)
def test_no_skip_no_duplicate_per_log_order_on_postgresql(
    tmp_path: Path,
    runners_to_clean: list[Runners],
    capsys: pytest.CaptureFixture[str],
) -> None:
    seconds, count = proof_seconds(), writer_count()
    seed = random.SystemRandom().randrange(10**9)
    env = child_env(postgres_env(connection.settings_dict), ["FoldA"])
    shared = [str(log_id) for log_id in new_accounts(4, 0)]
    configs = [
        WriterConfig(
            worker=i,
            seconds=seconds,
            seed=seed + i,
            shared=shared,
            hold=HOLD_SECONDS,
            hold_every=(2.0, seconds / 2),
            interleave=True,
            pause=0.2,  # the runner keeps up: it waits at the horizon
        )
        for i in range(count)
    ]
    with DjangoPool(env, count) as pool:
        runners = Runners(env, tmp_path, 2)
        runners_to_clean.append(runners)
        figures = run_proof(
            lambda f, *a: f(*a), runners, pool, configs, on_postgresql=True
        )
    lines = figure_lines(figures, count, seconds)
    ran = sorted(figures.holders)
    lines.append(f"runners                2 competing; the slots that ran it: {ran}")
    lines.append(
        f"at the horizon         of {figures.samples} samples: {figures.at_head} "
        f"with the projection at the head of the feed, {figures.held} with "
        f"committed events held back, {figures.waited} both (up to "
        f"{figures.most_held} held); events the projection was behind: median "
        f"{statistics.median(figures.lags or [0]):g}, most {max(figures.lags or [0])}"
    )
    lines += check_final(final_state(PROOF))
    lines.append(f"seed                   {seed}")
    report(capsys, "read-side proof (PostgreSQL)", lines)
    # The case the horizon is for happened: the projection at the head of the
    # feed while a transaction older than committed events was still open.
    assert figures.waited >= 3

    w = figures.writes
    assert w["append rolled back"] >= 3
    assert w["create rolled back"] >= 1
    transactions = sum(w.values()) - w["shared ConcurrentAppend"]
    rolled_back = sum(n for kind, n in w.items() if kind.endswith("rolled back"))
    assert 0.1 < rolled_back / transactions < 0.3
    assert w["hold committed"] + w["hold rolled back"] >= 3
    assert w["hold committed"] >= 1
    assert w["interleave T2 committed"] >= 3
    assert figures.kills >= 2
    assert max(figures.takeovers) < 15
    # Which runner takes over is a race (the survivor, or the one restarted
    # in its place): each kill found a holder and a takeover (above).
    assert figures.holders <= {"proof-0", "proof-1"}
    # The T2-first interleavings really happened: T2's append of index n+1
    # got T1's transaction id (greater than its own), as docs/read-side.md
    # says, and the feed still gave n before n+1 (checked above).
    from django_eventlog import Event

    for log_id, index, t1, t2 in figures.interleaved:
        assert t2 < t1
        stored = dict(
            Event.objects.filter(
                log_id=log_id, index__in=[index - 1, index]
            ).values_list("index", "txid")
        )
        assert stored == {index - 1: t1, index: t1}


def sqlite_seconds() -> float:
    value = os.environ.get("EVENTLOG_PROOF_SQLITE_SECONDS", "8")
    try:
        return float(value)
    except ValueError:
        pytest.fail(f"EVENTLOG_PROOF_SQLITE_SECONDS must be a number, got {value!r}")


@pytest.mark.sqlite
def test_no_skip_no_duplicate_per_log_order_on_sqlite(
    tmp_path: Path,
    runners_to_clean: list[Runners],
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The smaller run: an SQLite file, 3 writers taking turns (one writer at
    a time: no T2-first interleaving, holds of 0.3 s), one runner SIGKILLed
    every few seconds and started again."""
    seconds, count = sqlite_seconds(), 3
    seed = random.SystemRandom().randrange(10**9)
    env = child_env(sqlite_env(tmp_path / "proof.sqlite3"), ["FoldA"])
    migrate(env)
    with DjangoPool(env, count) as pool:

        def call(function: Callable[..., T], *args: Any) -> T:
            return pool.pool.apply(function, args)

        shared = [str(log_id) for log_id in call(new_accounts, 2, 0)]
        configs = [
            WriterConfig(
                worker=i,
                seconds=seconds,
                seed=seed + i,
                shared=shared,
                hold=0.3,
                hold_every=(1.0, 3.0),
                interleave=False,
                pause=0.02,
            )
            for i in range(count)
        ]
        runners = Runners(env, tmp_path, 1)
        runners_to_clean.append(runners)
        figures = run_proof(call, runners, pool, configs, on_postgresql=False)
        state = call(final_state, PROOF)
    lines = figure_lines(figures, count, seconds)
    lines += check_final(state)
    lines.append(f"seed                   {seed}")
    report(capsys, "read-side proof (SQLite)", lines)
    w = figures.writes
    assert w["append rolled back"] >= 3
    assert w["hold committed"] + w["hold rolled back"] >= 2
    assert figures.kills >= 1


# A failing handler, and a rebuild, under a runner process (PostgreSQL)


def add_accounts(count: int, *deposits: int) -> list[Any]:
    """``count`` account logs, each opened, then one deposit per amount."""
    from django_eventlog import Log
    from tests.domain import Deposited, Opened

    states = []
    for i in range(count):
        state = Log.objects.create_log(Opened(f"owner {i}"), kind="account")
        for amount in deposits:
            state = Log.objects.append(state, Deposited(amount))
        states.append(state)
    return states


@pytest.mark.postgresql
@pytest.mark.django_db(transaction=True)
def test_a_failing_handler_stops_the_runner_in_failed_and_retry_resumes(
    tmp_path: Path, runners_to_clean: list[Runners]
) -> None:
    poison = tmp_path / "poison"
    poison.touch()
    env = {
        **child_env(postgres_env(connection.settings_dict), ["Gated"]),
        POISON_FILE: str(poison),
    }
    add_accounts(2, 1, 2)
    [bad] = add_accounts(1, 3, 13)  # the poison is its log's last event
    add_accounts(2, 4)
    from django_eventlog import Log

    records = Log.objects.feed(None, limit=100, kinds=["account"])
    positions = [record.position for record in records]
    poisoned = next(
        i for i, r in enumerate(records) if (r.log_id, r.index) == (bad.log_id, 2)
    )
    runners = Runners(env, tmp_path, 1)
    runners_to_clean.append(runners)

    def failed_checkpoint() -> dict[str, Any] | None:
        found = checkpoint("tests.gated")
        return found if found.get("state") == "failed" else None

    failed = wait_until(failed_checkpoint, 30, "the projection to fail")
    # Stopped right before the event, which is named; nothing after it.
    assert failed["position"] == positions[poisoned - 1]
    assert failed["error_position"] == positions[poisoned]
    assert (failed["error_log_id"], failed["error_index"]) == (bad.log_id, 2)
    assert "ValueError: poisoned deposit at index 2" in failed["last_error"]
    assert [p for _, _, p in handled("tests.gated")] == positions[:poisoned]
    time.sleep(2 * 1.0)  # two lock tries and more polls: it does not advance
    assert checkpoint("tests.gated") == failed
    assert runners.live[0].process.poll() is None  # the runner runs on

    poison.unlink()
    retried = manage(env, "eventlog_projections", "retry", "tests.gated")
    assert retried.stdout == "tests.gated: resumed from the event it failed on.\n"
    wait_until(
        lambda: checkpoint("tests.gated")["handled"] == len(positions),
        30,
        "the runner to resume",
    )
    assert [p for _, _, p in handled("tests.gated")] == positions
    assert projection_fold("tests.gated") == fold_from_events()
    assert checkpoint("tests.gated")["state"] == "running"
    runners.terminate()


@pytest.mark.postgresql
@pytest.mark.django_db(transaction=True)
def test_a_rebuild_under_a_runner_gives_the_live_read_model(
    tmp_path: Path, runners_to_clean: list[Runners]
) -> None:
    env = child_env(postgres_env(connection.settings_dict), ["FoldA"])
    runners = Runners(env, tmp_path, 1)
    runners_to_clean.append(runners)
    add_accounts(5, 10, 20, 30)
    add_accounts(3, 7)
    events = len(feed_positions())
    wait_until(
        lambda: checkpoint(PROOF).get("handled") == events, 30, "the live projection"
    )
    live = projection_fold(PROOF)
    assert live == fold_from_events()

    rebuilt = manage(env, "eventlog_projections", "rebuild", PROOF)
    assert rebuilt.returncode == 0, rebuilt.stderr
    lines = rebuilt.stdout.splitlines()
    assert lines[0] == f"{PROOF}: read model reset; replaying every event."
    # The runner holds the projection's lock: it replays, the command follows.
    assert lines[1] == f"{PROOF} is run by another process; following it."
    assert lines[-1] == f"{PROOF}: rebuilt, {events} events handled."
    assert projection_fold(PROOF) == live
    assert [p for _, _, p in handled(PROOF)] == feed_positions()
    assert checkpoint(PROOF)["state"] == "running"
    runners.terminate()
