"""``eventlog_projections``, run through ``call_command`` (both databases).

The expected outputs follow the command's reference in docs/commands.md:
what each line must say, not how the command happens to word it.
"""

from __future__ import annotations

import gc
import getpass
import re
import threading
from io import StringIO
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connections

from django_eventlog import FeedRecord, Log, projection_locks
from django_eventlog.models import ProjectionCheckpoint, ProjectionSkip
from django_eventlog.projections import catch_up
from tests import projections
from tests.domain import Deposited, Opened
from tests.readmodels.models import Balance

pytestmark = pytest.mark.django_db

NAMES = ("tests.balances", "tests.fragile", "tests.mailer")


@pytest.fixture(autouse=True)
def configured(settings: Any) -> None:
    projections.configure(settings)


def command(*args: str) -> tuple[str, str]:
    """stdout and stderr of ``eventlog_projections ARGS``."""
    out, err = StringIO(), StringIO()
    call_command("eventlog_projections", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def failing_status(*names: str) -> str:
    """stdout of a ``status`` that must exit with status 1."""
    out = StringIO()
    with pytest.raises(SystemExit) as exited:
        call_command("eventlog_projections", "status", *names, stdout=out)
    assert exited.value.code == 1
    return out.getvalue()


def accounts(*deposits: list[int]) -> None:
    for i, amounts in enumerate(deposits):
        state = Log.objects.create_log(Opened(f"owner {i}"), kind="account")
        for amount in amounts:
            state = Log.objects.append(state, Deposited(amount))


def feed_of(name: str) -> list[FeedRecord]:
    """The events projection ``name`` asks the feed for."""
    filters: dict[str, dict[str, Any]] = {
        "tests.balances": {"kinds": ["account"]},
        "tests.fragile": {"types": [Deposited]},
        "tests.mailer": {"types": [Opened]},
    }
    return Log.objects.feed(limit=1000, **filters[name])


def line_of(out: str, name: str) -> str:
    """The status line of projection ``name``."""
    [line] = [line for line in out.splitlines() if line.startswith(name)]
    return line


def has_position(line: str, position: str) -> bool:
    return re.search(rf"(?<![\d.]){re.escape(position)}(?![\d.])", line) is not None


def handled_in(line: str) -> int:
    found = re.search(r"(\d+) (?:events )?handled", line)
    assert found, line
    return int(found[1])


def behind_in(line: str) -> int:
    found = re.search(r"(\d+)\+? (?:events )?behind", line)
    assert found, line
    return int(found[1])


def seconds_in(line: str) -> float | None:
    found = re.search(r"(\d+(?:\.\d+)?) ?s(?:econds?)? behind", line)
    return None if found is None else float(found[1])


def fail_fragile() -> FeedRecord:
    """Stop tests.fragile on a poisoned deposit; that deposit's record."""
    accounts([1, 13, 2])
    catch_up()
    [poisoned] = [r for r in feed_of("tests.fragile") if r.event == Deposited(13)]
    assert ProjectionCheckpoint.objects.get(name="tests.fragile").state == "failed"
    return poisoned


# status


def test_status_says_new_before_the_first_run() -> None:
    accounts([1, 2], [3])
    out, _ = command("status")
    for name in NAMES:
        line = line_of(out, name)
        assert "new" in line
        assert handled_in(line) == 0
        assert behind_in(line) == len(feed_of(name))
        assert seconds_in(line) is not None


def test_status_shows_position_handled_and_lag() -> None:
    projections.Fragile.poison = None
    accounts([1, 2], [3])
    catch_up()
    # Caught up, each stands at the end of the feed it has read, whatever
    # its filters (docs/read-side.md, Checkpoints).
    end = Log.objects.feed(limit=1000)[-1].position
    accounts([4, 5])  # 3 events: 3 for balances, 2 deposits, 1 opened

    out, _ = command("status")

    for name, new in [("tests.balances", 3), ("tests.fragile", 2), ("tests.mailer", 1)]:
        line = line_of(out, name)
        seen = feed_of(name)[:-new]
        assert "running" in line
        assert has_position(line, end)
        assert handled_in(line) == len(seen)
        assert behind_in(line) == new
        seconds = seconds_in(line)
        assert seconds is not None
        assert seconds >= 0


def test_status_of_a_failed_projection_names_the_event_and_exits_1() -> None:
    poisoned = fail_fragile()

    out = failing_status()

    line = line_of(out, "tests.fragile")
    assert "failed" in line
    following = out.splitlines()[out.splitlines().index(line) + 1]
    assert has_position(following, poisoned.position)
    assert str(poisoned.log_id) in following
    assert re.search(rf"\bindex {poisoned.index}\b", following)
    # The last line of the error: its class and message.
    assert following.endswith("ValueError: poisoned deposit at index 2")
    assert "running" in line_of(out, "tests.balances")


def test_status_of_other_projections_exits_0_while_one_is_failed() -> None:
    fail_fragile()
    out, _ = command("status", "tests.balances", "tests.mailer")
    assert [line.split(":")[0] for line in out.splitlines()] == [
        "tests.balances",
        "tests.mailer",
    ]


def test_status_lists_a_checkpoint_no_longer_configured(settings: Any) -> None:
    accounts([1])
    catch_up()
    settings.EVENTLOG_PROJECTIONS = projections.ALL[:2]

    out, _ = command("status")

    unconfigured = line_of(out, "tests.mailer")
    assert re.search(r"not (?:in EVENTLOG_PROJECTIONS|configured)", unconfigured)
    assert handled_in(unconfigured) == 1
    for name in NAMES[:2]:
        assert "EVENTLOG_PROJECTIONS" not in line_of(out, name)


@pytest.mark.postgresql
def test_status_names_the_pid_of_the_connection_that_runs_a_projection() -> None:
    held, done = threading.Event(), threading.Event()
    pid: list[int] = []

    def runner() -> None:
        # Another session holds the projection's lock, as a runner would.
        try:
            with projection_locks.locked("default", "tests.balances") as mine:
                assert mine
                with connections["default"].cursor() as cursor:
                    cursor.execute("SELECT pg_backend_pid()")
                    pid.append(cursor.fetchone()[0])
                held.set()
                done.wait(30)
        finally:
            connections.close_all()

    thread = threading.Thread(target=runner)
    thread.start()
    try:
        assert held.wait(30)
        out, _ = command("status")
    finally:
        done.set()
        thread.join()
    assert re.search(rf"\bpid {pid[0]}\b", line_of(out, "tests.balances"))
    assert "pid" not in line_of(out, "tests.fragile")


# run


def test_run_once_catches_up_and_prints_what_each_handled() -> None:
    projections.Fragile.poison = None
    accounts([1, 2], [3], [])

    out, _ = command("run", "--once")

    for name in NAMES:
        count = len(feed_of(name))
        assert re.search(rf"^{re.escape(name)}\b.*\b{count} events handled", out, re.M)
    assert {b.balance for b in Balance.objects.all()} == {3, 0}
    assert len(projections.Mailer.sent) == 3
    assert command("run", "--once")[0].count(" 0 events handled") == 3


def test_run_leaves_what_lives_at_its_start_out_of_full_collections() -> None:
    gc.unfreeze()
    try:
        command("run", "--once")
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()


def test_run_once_runs_only_the_named_projections() -> None:
    accounts([1])
    out, _ = command("run", "--once", "tests.mailer")
    assert [line.split(":")[0] for line in out.splitlines()] == ["tests.mailer"]
    assert set(ProjectionCheckpoint.objects.values_list("name", flat=True)) == {
        "tests.mailer"
    }


# retry


def test_retry_resumes_a_failed_projection_and_keeps_its_error() -> None:
    fail_fragile()
    out, _ = command("retry", "tests.fragile")
    assert "tests.fragile" in out
    resumed = ProjectionCheckpoint.objects.get(name="tests.fragile")
    assert resumed.state == "running"
    assert "poisoned deposit" in resumed.last_error
    projections.Fragile.poison = None
    assert catch_up(["tests.fragile"]) == {"tests.fragile": 2}


def test_retry_of_a_projection_that_is_not_failed_is_an_error() -> None:
    accounts([1])
    catch_up()
    with pytest.raises(CommandError, match=r"tests\.balances"):
        command("retry", "tests.balances")


# skip


def test_skip_refuses_another_position_than_the_failed_event() -> None:
    poisoned = fail_fragile()
    other = next(r for r in feed_of("tests.fragile") if r.event == Deposited(2))
    with pytest.raises(CommandError, match=re.escape(poisoned.position)):
        command("skip", "tests.fragile", "--position", other.position)
    assert ProjectionCheckpoint.objects.get(name="tests.fragile").state == "failed"
    assert not ProjectionSkip.objects.exists()


def test_skip_moves_past_the_failed_event_on_record() -> None:
    poisoned = fail_fragile()

    out, _ = command(
        "skip", "tests.fragile", "--position", poisoned.position, "--reason", "test"
    )

    assert poisoned.position in out
    skipped = ProjectionSkip.objects.get()
    assert skipped.projection == "tests.fragile"
    assert skipped.position == poisoned.position
    assert (skipped.log_id, skipped.index) == (poisoned.log_id, poisoned.index)
    assert skipped.type == "tests.deposited"
    assert "ValueError: poisoned deposit" in skipped.error
    assert skipped.skipped_by == f"user:{getpass.getuser()}"
    assert skipped.reason == "test"
    assert skipped.skipped_at is not None
    checkpoint = ProjectionCheckpoint.objects.get(name="tests.fragile")
    assert (checkpoint.state, checkpoint.position) == ("running", poisoned.position)
    assert catch_up(["tests.fragile"]) == {"tests.fragile": 1}  # the deposit of 2


def test_skip_records_who_skipped_given_by() -> None:
    poisoned = fail_fragile()
    command("skip", "tests.fragile", "--position", poisoned.position, "--by", "ops:ada")
    assert ProjectionSkip.objects.get().skipped_by == "ops:ada"


def test_skip_of_a_projection_that_is_not_failed_is_an_error() -> None:
    accounts([1])
    catch_up()
    position = feed_of("tests.fragile")[0].position
    with pytest.raises(CommandError, match=r"tests\.fragile"):
        command("skip", "tests.fragile", "--position", position)
    assert not ProjectionSkip.objects.exists()


@pytest.mark.parametrize("position", ["7125-42", "x", "", "1.2.3", "-1.5"])
def test_skip_of_a_malformed_position_is_an_error(position: str) -> None:
    fail_fragile()
    with pytest.raises(CommandError, match="position"):
        command("skip", "tests.fragile", "--position", position)
    assert ProjectionCheckpoint.objects.get(name="tests.fragile").state == "failed"


# rebuild


def test_rebuild_replays_into_the_same_read_model_with_progress(
    settings: Any,
) -> None:
    settings.EVENTLOG_PROJECTION_BATCH_SIZE = 3
    accounts([1, 2, 3, 4, 5], [6, 7], [], [8] * 20)
    catch_up(["tests.balances"])
    before = {(b.log_id, b.balance, b.last_index) for b in Balance.objects.all()}
    total = len(feed_of("tests.balances"))

    out, err = command("rebuild", "tests.balances")

    after = {(b.log_id, b.balance, b.last_index) for b in Balance.objects.all()}
    assert after == before
    assert "tests.balances" in out
    checkpoint = ProjectionCheckpoint.objects.get(name="tests.balances")
    assert (checkpoint.state, checkpoint.handled) == ("running", total)
    lines = err.splitlines()
    progress = [
        re.fullmatch(r"Replayed (\d+)/(\d+) events \((\d+)%\)", x) for x in lines
    ]
    assert all(progress), lines
    done = [int(m[1]) for m in progress if m]
    assert len(done) > 1
    assert done == sorted(done)
    assert lines[-1] == f"Replayed {total}/{total} events (100%)"
    for m in progress:
        assert m
        assert int(m[2]) == total
        assert int(m[3]) in (100 * int(m[1]) // total, -(-100 * int(m[1]) // total))


def test_a_rebuild_that_fails_is_an_error() -> None:
    fail_fragile()
    with pytest.raises(CommandError, match=r"tests\.fragile"):
        command("rebuild", "tests.fragile")
    assert ProjectionCheckpoint.objects.get(name="tests.fragile").state == "failed"


def test_rebuild_of_a_projection_without_reset_is_an_error() -> None:
    accounts([1])
    catch_up()
    with pytest.raises(CommandError, match=r"tests\.mailer"):
        command("rebuild", "tests.mailer")


# names


SKIP_UNKNOWN = pytest.param(["skip", "nope", "--position", "0.1"], id="skip")


@pytest.mark.parametrize(
    "args",
    [
        pytest.param(["status", "nope"], id="status"),
        pytest.param(["run", "--once", "nope"], id="run"),
        pytest.param(["rebuild", "nope"], id="rebuild"),
        pytest.param(["retry", "nope"], id="retry"),
        SKIP_UNKNOWN,
    ],
)
def test_an_unknown_name_is_an_error_naming_the_configured_ones(
    args: list[str],
) -> None:
    with pytest.raises(CommandError) as raised:
        command(*args)
    message = str(raised.value)
    assert "nope" in message
    for name in NAMES:
        assert name in message
    assert not ProjectionCheckpoint.objects.exists()
