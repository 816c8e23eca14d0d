"""The run of the read side's proof (tests/reliability/test_read_side_proof.py):
writers write while the runner that runs the projection is SIGKILLed and
started again every few seconds; then what the end is checked against, and
the figures.
"""

from __future__ import annotations

import dataclasses
import signal
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest

from tests.projection_processes import (
    DjangoPool,
    RunnerProcess,
    checkpoint,
    feed_positions,
    fold_from_events,
    handled,
    lock_holders,
    out_of_order,
    projection_fold,
    wait_until,
)
from tests.reliability.proof_writers import WriterConfig, write

T = TypeVar("T")
PROOF = "tests.fold.a"  # the projection (tests.projections.FoldA)
KILL_EVERY = 3.0  # seconds between SIGKILLs of the runner that runs it


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
            assert runner.terminate() == 0, runner.stderr()

    def cleanup(self) -> None:
        for runner in self.all:
            runner.stop()


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
        f"{figures.began:.1f} s after the start, all done "
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
