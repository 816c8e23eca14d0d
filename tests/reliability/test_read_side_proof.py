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

import dataclasses
import os
import queue
import random
import signal
import statistics
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from pathlib import Path
from typing import Any, TypeVar

import pytest
from django.db import connection

from tests.projection_processes import (
    DjangoPool,
    RunnerProcess,
    checkpoint,
    child_env,
    feed_positions,
    fold_from_events,
    handled,
    lock_holders,
    manage,
    migrate,
    new_accounts,
    out_of_order,
    postgres_env,
    projection_fold,
    sqlite_env,
    wait_until,
)
from tests.projections import POISON_FILE

# No model is imported at module level: spawned writers import this module
# before they call django.setup().

T = TypeVar("T")
PROOF = "tests.fold.a"  # the projection (tests.projections.FoldA)
KILL_EVERY = 3.0  # seconds between SIGKILLs of the runner that runs it
ROLLBACK_SHARE = 0.2
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


# Writers


@dataclasses.dataclass(frozen=True)
class WriterConfig:
    worker: int
    seconds: float
    seed: int
    shared: list[str]  # logs every writer appends to (ConcurrentAppend)
    hold: float  # seconds a held transaction stays open
    hold_every: tuple[float, float]  # seconds between holds, at random
    interleave: bool  # the T2-first interleaving (PostgreSQL)
    pause: float  # at most this many seconds between transactions, at random


class _Rollback(Exception):
    pass


class Session:
    """A thread with a database connection of its own, running steps on
    demand: the second transaction of the T2-first interleaving."""

    def __init__(self) -> None:
        self._steps: queue.Queue[tuple[Callable[[], Any], Future[Any]] | None] = (
            queue.Queue()
        )
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        from django.db import connections

        try:
            while (item := self._steps.get()) is not None:
                step, future = item
                try:
                    future.set_result(step())
                except BaseException as e:
                    future.set_exception(e)
        finally:
            connections.close_all()

    def do(self, step: Callable[[], T]) -> T:
        future: Future[T] = Future()
        self._steps.put((step, future))
        return future.result(timeout=60)

    def close(self) -> None:
        self._steps.put(None)
        self._thread.join(60)


class Writer:
    """One writer process's transactions, counted by what they did."""

    def __init__(self, config: WriterConfig) -> None:
        self.config = config
        self.rng = random.Random(config.seed)
        self.counts: Counter[str] = Counter()
        self.next: dict[uuid.UUID, int] = {}  # own logs: the next index
        self.shared = [uuid.UUID(x) for x in config.shared]
        # (log, index, T1's txid, T2's txid) of each committed T2-first append
        self.interleaved: list[tuple[str, int, int, int]] = []
        self.amount = config.worker * 10**6

    def deposit(self) -> Any:
        from tests.domain import Deposited

        self.amount += 1
        return Deposited(self.amount)

    def rollback(self) -> bool:
        return self.rng.random() < ROLLBACK_SHARE

    def run(self) -> dict[str, Any]:
        from django.db import OperationalError

        began = time.time()
        deadline = time.monotonic() + self.config.seconds
        next_hold = time.monotonic() + self.rng.uniform(*self.config.hold_every)
        session = Session() if self.config.interleave else None
        try:
            while (now := time.monotonic()) < deadline:
                try:
                    if len(self.next) < 2 or self.rng.random() < 0.05:
                        self.create()
                    elif now >= next_hold and now + self.config.hold < deadline:
                        self.hold()
                        next_hold = now + self.rng.uniform(*self.config.hold_every)
                    elif session is not None and self.rng.random() < 0.08:
                        self.interleave(session)
                    elif self.rng.random() < 0.1:
                        self.append_shared()
                    else:
                        self.append_own()
                except OperationalError:  # SQLite: "database is locked"
                    self.counts["locked"] += 1
                time.sleep(self.rng.uniform(0, self.config.pause))
        finally:
            if session is not None:
                session.close()
        return {
            "counts": dict(self.counts),
            "interleaved": self.interleaved,
            "began": began,
            "ended": time.time(),
        }

    def transaction(self, kind: str, work: Callable[[], None], hold: float = 0) -> bool:
        """Run ``work`` in a transaction, held open ``hold`` s, rolled back
        one time in five; whether it committed."""
        from django.db import transaction

        rolled_back = self.rollback()
        try:
            with transaction.atomic():
                work()
                if hold:
                    time.sleep(hold)
                if rolled_back:
                    raise _Rollback
        except _Rollback:
            self.counts[f"{kind} rolled back"] += 1
            return False
        self.counts[f"{kind} committed"] += 1
        return True

    def create(self) -> None:
        from django_eventlog import Log
        from tests.domain import Opened

        created: list[uuid.UUID] = []

        def work() -> None:
            state = Log.objects.create_log(
                Opened(f"writer {self.config.worker}"), kind="account"
            )
            created.append(state.log_id)

        if self.transaction("create", work):
            self.next[created[0]] = 1

    def append_own(self) -> None:
        from django_eventlog import Log, LogState

        logs = self.rng.sample(sorted(self.next), min(len(self.next), 2))
        pending = dict(self.next)

        def work() -> None:
            for log_id in logs:
                for _ in range(self.rng.randint(1, 2)):
                    state = LogState(log_id, pending[log_id])
                    pending[log_id] = Log.objects.append(
                        state, self.deposit()
                    ).next_index

        if self.transaction("append", work):
            self.next = pending

    def append_shared(self) -> None:
        from django_eventlog import ConcurrentAppend, Event, Log, LogState

        log_id = self.rng.choice(self.shared)

        def work() -> None:
            index = Event.objects.filter(log_id=log_id).count()
            Log.objects.append(LogState(log_id, index), self.deposit())

        try:
            self.transaction("shared", work)
        except ConcurrentAppend:
            self.counts["shared ConcurrentAppend"] += 1

    def hold(self) -> None:
        from django_eventlog import Log, LogState

        log_id = self.rng.choice(sorted(self.next))
        index = self.next[log_id]

        def work() -> None:
            Log.objects.append(LogState(log_id, index), self.deposit())

        if self.transaction("hold", work, hold=self.config.hold):
            self.next[log_id] = index + 1

    def interleave(self, session: Session) -> None:
        """T2 obtains its transaction id first (by another write), T1 appends
        index n and commits, T2 appends index n+1."""
        from django.db import transaction

        from django_eventlog import Log, LogState

        log_id, other = self.rng.sample(sorted(self.next), 2)
        n, m = self.next[log_id], self.next[other]
        atomic = transaction.atomic()
        session.do(atomic.__enter__)
        try:
            session.do(lambda: Log.objects.append(LogState(other, m), self.deposit()))
            t2 = session.do(txid)
            with transaction.atomic():  # T1
                Log.objects.append(LogState(log_id, n), self.deposit())
                t1 = txid()
            self.counts["interleave T1 committed"] += 1
            self.next[log_id] = n + 1
            session.do(
                lambda: Log.objects.append(LogState(log_id, n + 1), self.deposit())
            )
            if self.rollback():
                raise _Rollback
        except BaseException as e:
            failure = e
            session.do(
                lambda: atomic.__exit__(type(failure), failure, failure.__traceback__)
            )
            if not isinstance(failure, _Rollback):
                raise
            self.counts["interleave T2 rolled back"] += 1
            return
        session.do(lambda: atomic.__exit__(None, None, None))
        self.counts["interleave T2 committed"] += 1
        self.next[log_id], self.next[other] = n + 2, m + 1
        self.interleaved.append((str(log_id), n + 1, t1, t2))


def txid() -> int:
    """This transaction's id (PostgreSQL), which it already has."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_current_xact_id_if_assigned()::text::bigint")
        return int(cursor.fetchone()[0])


def write(config: WriterConfig) -> dict[str, Any]:
    """A writer process's work (run in a DjangoPool process), at a lower CPU
    priority than the runners: on a machine of few cores they keep up, and
    wait at the horizon while a transaction is held open."""
    os.nice(10)
    return Writer(config).run()


# The run: writers, runners, kills


@dataclasses.dataclass
class Figures:
    writes: Counter[str] = dataclasses.field(default_factory=Counter)
    interleaved: list[tuple[str, int, int, int]] = dataclasses.field(
        default_factory=list
    )
    kills: int = 0
    # Samples (every 0.1 s) in which the projection had handled all the feed
    # delivered while the horizon held committed events back: then a feed
    # without the horizon would have given those, and skipped the older
    # transaction's events when it committed.
    samples: int = 0
    at_head: int = 0  # the projection had handled all the feed delivered
    held: int = 0  # the horizon held committed events back
    waited: int = 0  # both
    most_held: int = 0
    lags: list[int] = dataclasses.field(default_factory=list)  # events behind
    takeovers: list[float] = dataclasses.field(default_factory=list)
    holders: set[str] = dataclasses.field(default_factory=set)
    began: float = 0.0  # seconds from the start to the first writer's start
    load: float = 0.0  # seconds from the first writer's start to the last's end
    catch_up: float = 0.0  # seconds from then to the projection's catching up


class Runners:
    """Runner processes; :meth:`kill` SIGKILLs one and starts it again."""

    def __init__(self, env: dict[str, str], directory: Path, count: int) -> None:
        self.env, self.directory = env, directory
        self.generation = 0
        self.all: list[RunnerProcess] = []
        self.live = [self.start(i) for i in range(count)]

    def start(self, slot: int) -> RunnerProcess:
        self.generation += 1
        runner = RunnerProcess(
            self.env, f"proof-{slot}-{self.generation}", self.directory
        )
        self.all.append(runner)
        return runner

    def kill(self, slot: int) -> None:
        self.live[slot].signal(signal.SIGKILL)
        assert self.live[slot].wait(30) == -signal.SIGKILL
        self.live[slot] = self.start(slot)

    def terminate(self) -> None:
        for runner in self.live:
            runner.signal(signal.SIGTERM)
        for runner in self.live:
            assert runner.wait(60) == 0, runner.stderr()

    def cleanup(self) -> None:
        for runner in self.all:
            runner.stop()


@pytest.fixture
def runners_to_clean() -> Iterator[list[Runners]]:
    found: list[Runners] = []
    yield found
    for runners in found:
        runners.cleanup()


def progress(name: str) -> tuple[int, int, str]:
    """(events the projection handled, committed account events, its state)."""
    from django_eventlog import Event

    found = checkpoint(name)
    total = Event.objects.filter(log__kind="account").count()
    return found.get("handled", 0), total, found.get("state", "")


def final_state(name: str) -> dict[str, Any]:
    """All the end of a run is checked against (read where Django is set up)."""
    return {
        "from events": fold_from_events(),
        "read model": projection_fold(name),
        "handled": handled(name),
        "feed": feed_positions(),
        "checkpoint": checkpoint(name),
    }


def run_proof(
    call: Callable[..., Any],
    runners: Runners,
    pool: DjangoPool,
    configs: list[WriterConfig],
    on_postgresql: bool,
) -> Figures:
    """Writers write while a runner is SIGKILLed every KILL_EVERY s; then
    wait until the projection caught up, and stop the runners (SIGTERM)."""
    figures = Figures()
    results = [pool.pool.apply_async(write, (config,)) for config in configs]
    started, wall = time.monotonic(), time.time()
    next_kill = started + KILL_EVERY
    while not all(result.ready() for result in results):
        time.sleep(0.1)
        if on_postgresql:
            sample(figures)
        if time.monotonic() < next_kill:
            continue
        slot = 0
        if on_postgresql:
            held = lock_holders([PROOF])[PROOF]
            if not held:
                continue  # between a kill and its takeover
            [holder] = held
            figures.holders.add(holder.rsplit("-", 1)[0])
            slot = [runner.label for runner in runners.live].index(holder)
        killed = time.monotonic()
        runners.kill(slot)
        figures.kills += 1
        if on_postgresql:
            wait_until(
                lambda: lock_holders([PROOF])[PROOF], 30, "a runner to take over"
            )
            figures.takeovers.append(time.monotonic() - killed)
        next_kill = time.monotonic() + KILL_EVERY
    outputs = [result.get(timeout=120) for result in results]
    for output in outputs:
        figures.writes.update(output["counts"])
        figures.interleaved.extend(output["interleaved"])
    figures.began = min(output["began"] for output in outputs) - wall
    figures.load = max(output["ended"] for output in outputs) - wall - figures.began
    load_ended = time.monotonic()

    def caught_up() -> bool:
        handled, total, state = call(progress, PROOF)
        assert state != "failed", call(checkpoint, PROOF)["last_error"]
        return bool(handled == total)

    wait_until(caught_up, 90, "the projection to catch up", interval=0.2)
    figures.catch_up = time.monotonic() - load_ended
    runners.terminate()
    return figures


def sample(figures: Figures) -> None:
    """Whether the projection waits at the head of the feed while the
    horizon holds committed events back (PostgreSQL)."""
    from django_eventlog import Log

    position = checkpoint(PROOF).get("position") or None
    held = Log.objects.feed_horizon().held_back
    behind = len(Log.objects.feed(position, limit=1000, kinds=["account"]))
    at_head = not behind
    figures.lags.append(behind)
    figures.samples += 1
    figures.at_head += at_head
    figures.held += bool(held)
    if at_head and held:
        figures.waited += 1
        figures.most_held = max(figures.most_held, held)


def check_final(state: dict[str, Any]) -> list[str]:
    """The proof's assertions (the lines to print with the figures)."""
    rows = state["handled"]
    events = sum(count for _, _, count in state["from events"].values())
    assert state["checkpoint"]["state"] == "running", state["checkpoint"]
    # The read model equals a fold straight from the events table.
    assert state["read model"] == state["from events"]
    # Every committed event once: the unique constraint of Handled, counts.
    assert len(rows) == events == state["checkpoint"]["handled"]
    assert len({(log, index) for log, index, _ in rows}) == events
    # In each log, indices were handled in order.
    assert out_of_order(rows) == []
    # Handled in the order of the feed read from scratch: no position was
    # delivered after which an earlier one appeared.
    assert [position for _, _, position in rows] == state["feed"]
    return [
        f"checked                {len(state['from events'])} logs, {events} committed "
        "events: read model == fold of the events table; each event handled once, "
        "each log in index order, in the order of the feed read from scratch"
    ]


def figure_lines(figures: Figures, writers: int, seconds: float) -> list[str]:
    w = figures.writes
    transactions = sum(w.values()) - w["locked"] - w["shared ConcurrentAppend"]
    rolled_back = sum(n for kind, n in w.items() if kind.endswith("rolled back"))
    takeovers = figures.takeovers
    return [
        f"writers                {writers} processes for {seconds:g} s, the first "
        f"{figures.began:.1f} s after the start (the pool's start), all done "
        f"{figures.load:.1f} s later; the projection caught up "
        f"{figures.catch_up:.1f} s after that",
        f"transactions           {transactions}, {rolled_back} rolled back "
        f"({rolled_back / max(transactions, 1):.0%})",
        *(f"  {n:>6} x {kind}" for kind, n in sorted(w.items())),
        f"runner SIGKILLs        {figures.kills}"
        + (
            f"; takeover {min(takeovers):.2f}..{max(takeovers):.2f} s"
            if takeovers
            else ""
        ),
    ]


def report(capsys: pytest.CaptureFixture[str], title: str, lines: list[str]) -> None:
    with capsys.disabled():
        print(f"\n{title}")
        for line in lines:
            print(f"  {line}")


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
    assert len(figures.holders) == 2  # both slots ran it, at some point
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
