"""The runner says what holds the feed back (PostgreSQL, real transactions)."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from django.db import connections

from django_eventlog import Log
from django_eventlog import runner as runner_module
from django_eventlog.projection_runs import ProjectionRun
from django_eventlog.runner import Runner
from tests import projections
from tests.domain import Deposited, Opened
from tests.sessions import Session

pytestmark = [pytest.mark.postgresql, pytest.mark.django_db(transaction=True)]


def run_in_thread(runner: Runner) -> threading.Thread:
    def run() -> None:
        try:
            runner.run()
        finally:
            connections.close_all()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def wait_for(condition: Callable[[], bool], seconds: float = 20.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return False


def test_a_held_horizon_is_logged_with_the_transaction_that_holds_it(
    sessions: Callable[[], Session],
    settings: Any,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings.EVENTLOG_PROJECTIONS = ["tests.projections.Balances"]
    settings.EVENTLOG_PROJECTION_POLL_INTERVAL = 0.01
    settings.EVENTLOG_PROJECTION_HORIZON_WARNING = 0.3
    monkeypatch.setattr(runner_module, "HORIZON_CHECK", 0.05)
    a = Log.objects.create_log(Opened("a"), kind="account")
    b = Log.objects.create_log(Opened("b"), kind="account")
    slow = sessions()
    slow.begin()
    slow.do(lambda: Log.objects.append(a, Deposited(1)))
    slow_pid = slow.pid()
    Log.objects.append(b, Deposited(2))  # committed, held back
    caplog.set_level(logging.WARNING, logger="django_eventlog.projections")
    runner = Runner()
    thread = run_in_thread(runner)
    try:
        assert wait_for(lambda: "horizon has not moved" in caplog.text)
        # The events before the open transaction were handled; b's waits.
        assert projections.Balances.name in runner.held
        warning = next(r for r in caplog.records if "horizon" in r.getMessage())
        assert f"of pid {slow_pid}" in warning.getMessage()
        assert "idle in transaction" in warning.getMessage()
        assert "1 committed events wait" in warning.getMessage()
    finally:
        slow.commit()
    # Once it ends, both come, and nothing was skipped.
    from tests.readmodels.models import Balance

    try:
        assert wait_for(
            lambda: (
                dict(Balance.objects.values_list("log_id", "balance"))
                == {a.log_id: 1, b.log_id: 2}
            )
        )
    finally:
        runner.stop()
        thread.join(10)
    assert not thread.is_alive()


def test_an_idle_runner_on_an_empty_feed_runs_no_batches(
    settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Idle, a runner looks at the end of the feed once a poll and runs a
    projection's batch only when that end moved (here: never, it is empty)."""
    settings.EVENTLOG_PROJECTIONS = ["tests.projections.Balances"]
    settings.EVENTLOG_PROJECTION_POLL_INTERVAL = 0.01
    steps = []
    original = ProjectionRun.step

    def counted(self: ProjectionRun, limit: int | None = None) -> Any:
        steps.append(time.monotonic())
        return original(self, limit)

    monkeypatch.setattr(ProjectionRun, "step", counted)
    runner = Runner()
    thread = run_in_thread(runner)
    try:
        time.sleep(1.0)  # about 100 polls
    finally:
        runner.stop()
        thread.join(10)
    assert len(steps) == 1  # the first look, then nothing new
    Log.objects.create_log(Opened("a"), kind="account")
    runner = Runner()
    thread = run_in_thread(runner)
    try:
        assert wait_for(lambda: len(steps) >= 2)
        time.sleep(0.5)
    finally:
        runner.stop()
        thread.join(10)
    assert len(steps) == 2
