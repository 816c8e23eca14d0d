"""The projection runner as operators run it: ``manage.py eventlog_projections``
in real processes against PostgreSQL (pytest-django's test database).

Runners scale out (each projection run by one runner at a time, taken over
within seconds when its runner is killed, every event handled once), stop
cleanly on SIGTERM, and ``run --once``, ``status``, ``retry`` and ``skip``
say what they did. The proof under concurrent writers is in
``tests/reliability/test_read_side_proof.py``.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from django.db import connection

from django_eventlog import Log, LogState
from django_eventlog.models import ProjectionSkip
from tests.domain import Deposited
from tests.projection_processes import (
    RunnerProcess,
    backend_pids,
    checkpoint,
    child_env,
    feed_positions,
    fold_from_events,
    handled,
    lock_holders,
    manage,
    new_accounts,
    out_of_order,
    postgres_env,
    projection_fold,
    wait_until,
)
from tests.projections import POISON_FILE

pytestmark = [pytest.mark.postgresql, pytest.mark.django_db(transaction=True)]

FOLDS = ["tests.fold.a", "tests.fold.b", "tests.fold.c"]
TAKEOVER_BOUND = 15.0  # seconds; the runner retries locks every second


@pytest.fixture
def runners() -> Iterator[list[RunnerProcess]]:
    """The runner processes a test starts: killed at its end if still alive."""
    started: list[RunnerProcess] = []
    yield started
    for runner in started:
        runner.stop()


def env_for(*projections: str, **extra: str) -> dict[str, str]:
    return {
        **child_env(postgres_env(connection.settings_dict), projections),
        **extra,
    }


def account_events() -> int:
    return sum(events for _, _, events in fold_from_events().values())


def converged(names: list[str]) -> bool:
    """Whether each projection's read model equals the fold of the events
    table, having handled every account event."""
    expected = fold_from_events()
    total = sum(events for _, _, events in expected.values())
    return all(
        checkpoint(name).get("handled") == total and projection_fold(name) == expected
        for name in names
    )


def assert_each_handled_once_in_feed_order(name: str) -> None:
    rows = handled(name)
    # The unique constraint refused any second time; no event is missing.
    assert len(rows) == account_events() == checkpoint(name)["handled"]
    assert [position for _, _, position in rows] == feed_positions()
    assert out_of_order(rows) == []


def test_one_runner_per_projection_and_a_killed_ones_taken_over(
    tmp_path: Path, runners: list[RunnerProcess], capsys: pytest.CaptureFixture[str]
) -> None:
    env = env_for("FoldA", "FoldB", "FoldC")
    new_accounts(4, 5)
    runners.extend(RunnerProcess(env, f"runner-{i}", tmp_path) for i in range(3))
    labels = {runner.label for runner in runners}

    def one_holder_each() -> dict[str, list[str]] | None:
        holders = lock_holders(FOLDS)
        for held in holders.values():
            assert len(held) <= 1, holders  # never two runners at once
            assert set(held) <= labels, holders
        return holders if all(holders.values()) else None

    holders = wait_until(one_holder_each, 60, "every projection to have a runner")
    status = manage(env, "eventlog_projections", "status")
    assert status.returncode == 0, status.stderr
    lines = {line.split(":")[0]: line for line in status.stdout.splitlines()}
    for name, [label] in holders.items():
        [pid] = backend_pids(label)
        assert lines[name].endswith(f", run by pid {pid}"), status.stdout

    new_accounts(3, 5)  # written while the runners run
    wait_until(
        lambda: one_holder_each() is not None and converged(FOLDS), 30, "convergence"
    )

    victim = next(r for r in runners if r.label == holders["tests.fold.a"][0])
    orphaned = [name for name, held in holders.items() if held == [victim.label]]
    survivors = labels - {victim.label}
    killed = time.monotonic()
    victim.signal(signal.SIGKILL)
    assert victim.wait(10) == -signal.SIGKILL
    new_accounts(2, 5)  # written while nobody runs the victim's projections

    def taken_over() -> bool:
        holders = one_holder_each()
        return holders is not None and all(
            set(holders[name]) <= survivors for name in orphaned
        )

    wait_until(taken_over, 30, "another runner to take the projections over")
    takeover = time.monotonic() - killed
    wait_until(lambda: converged(FOLDS), 30, "convergence after the takeover")
    for name in FOLDS:
        assert checkpoint(name)["state"] == "running"
        assert_each_handled_once_in_feed_order(name)
    with capsys.disabled():
        print(
            f"\nrunner takeover: {orphaned} of the SIGKILLed runner taken over "
            f"{takeover:.2f} s after the kill (bound {TAKEOVER_BOUND:g} s)"
        )
    assert takeover < TAKEOVER_BOUND
    for runner in runners:
        if runner is not victim:
            assert runner.terminate(30) == 0, runner.stderr()


def test_sigterm_finishes_the_batch_at_hand_and_exits_0(
    tmp_path: Path, runners: list[RunnerProcess]
) -> None:
    new_accounts(10, 29)  # 300 events: 15 batches of 20, 1 s each
    env = env_for("Slow", EVENTLOG_TEST_SLOW_DELAY="0.05")
    runner = RunnerProcess(env, "slow", tmp_path)
    runners.append(runner)

    def early_in_a_batch() -> bool:
        # The runner's transaction (one batch) is open, and began < 0.3 s ago.
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s "
                "AND state = 'idle in transaction' "
                "AND now() - xact_start < interval '0.3 seconds'",
                [runner.label],
            )
            in_batch = bool(cursor.fetchone()[0] == 1)
        return in_batch and int(checkpoint("tests.slow").get("handled", 0)) >= 40

    wait_until(early_in_a_batch, 60, "a batch after the first two", interval=0.01)
    before = checkpoint("tests.slow")["handled"]
    runner.signal(signal.SIGTERM)
    assert runner.wait(30) == 0, runner.stderr()

    after = checkpoint("tests.slow")
    rows = handled("tests.slow")
    positions = feed_positions()
    assert len(positions) == 300
    # The batch at hand was finished and committed, and no other begun.
    assert after["handled"] == before + 20
    assert len(rows) == after["handled"]
    assert [position for _, _, position in rows] == positions[: after["handled"]]
    assert after["position"] == positions[after["handled"] - 1]
    assert runner.stdout() == f"tests.slow: {after['handled']} events handled\n"


def append_to(log_id: Any, *events: Deposited) -> None:
    last = Log.objects.filter(id=log_id).values_list("events__index", flat=True)
    state = LogState(log_id, max(last) + 1)
    for event in events:
        state = Log.objects.append(state, event)


def test_run_once_status_retry_and_skip(
    tmp_path: Path, settings: Any, runners: list[RunnerProcess]
) -> None:
    settings.EVENTLOG_PROJECTIONS = ["tests.projections.Gated"]
    poison = tmp_path / "poison"
    poison.touch()
    env = env_for("Gated", "FoldA", **{POISON_FILE: str(poison)})
    first, second = new_accounts(2, 3)
    append_to(first, Deposited(13))  # the last event of its log
    append_to(second, Deposited(5))
    positions = feed_positions()
    poisoned = positions[8]  # after 4 + 4 events
    total = len(positions)

    once = RunnerProcess(env, "once", tmp_path, "--once")
    runners.append(once)
    assert once.wait(60) == 0, once.stderr()
    assert once.stdout().splitlines() == [
        "tests.gated: 8 events handled",
        f"tests.fold.a: {total} events handled",
    ]
    gated = checkpoint("tests.gated")
    assert (gated["state"], gated["position"]) == ("failed", positions[7])

    status = manage(env, "eventlog_projections", "status")
    assert status.returncode == 1, status.stderr
    lines = status.stdout.splitlines()
    assert lines[0].startswith(f"tests.gated: failed, at {positions[7]}, 8 handled, ")
    assert lines[1] == (
        f"  failed on the event at {poisoned} (log {first}, index 4): "
        "ValueError: poisoned deposit at index 4"
    )
    assert lines[2].startswith(f"tests.fold.a: running, at {positions[-1]}, ")

    out = StringIO()
    call_command("eventlog_projections", "retry", "tests.gated", stdout=out)
    assert out.getvalue() == "tests.gated: resumed from the event it failed on.\n"
    with pytest.raises(CommandError, match=r"tests\.gated is not failed"):
        call_command("eventlog_projections", "retry", "tests.gated")

    again = manage(env, "eventlog_projections", "run", "--once", "tests.gated")
    assert again.returncode == 0, again.stderr
    assert again.stdout == "tests.gated: 0 events handled\n"  # still poisoned
    assert checkpoint("tests.gated")["state"] == "failed"

    skip = manage(
        env,
        *("eventlog_projections", "skip", "tests.gated", "--position", poisoned),
        *("--reason", "bad import", "--by", "tester"),
    )
    assert skip.returncode == 0, skip.stderr
    assert skip.stdout == (
        f"tests.gated: skipped the event at {poisoned} (log {first}, index 4, "
        "tests.deposited), recorded as skipped by tester.\n"
    )
    [skipped] = ProjectionSkip.objects.all()
    assert (skipped.position, skipped.log_id, skipped.index) == (poisoned, first, 4)
    assert (skipped.skipped_by, skipped.reason) == ("tester", "bad import")
    assert "poisoned deposit" in skipped.error

    rest = manage(env, "eventlog_projections", "run", "--once", "tests.gated")
    assert rest.stdout == f"tests.gated: {total - 9} events handled\n"
    assert [p for _, _, p in handled("tests.gated")] == [
        p for p in positions if p != poisoned
    ]
    assert manage(env, "eventlog_projections", "status").returncode == 0
