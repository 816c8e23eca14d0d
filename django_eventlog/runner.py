"""The projection runner: ``eventlog_projections run``'s loop.

Any number of runners may run, on any number of machines. Each projection is
run by the one runner whose connection holds its advisory lock
(:mod:`~django_eventlog.projection_locks`); the others try to take it every
second, so when that runner dies another takes over within a few seconds.
On SQLite there is one runner.

An idle runner costs one query per poll interval
(``EVENTLOG_PROJECTION_POLL_INTERVAL``): the feed's last deliverable
position, compared with what each projection has already read. Nothing is
added to the write path. A retry or a rebuild is picked up within
``REFRESH`` seconds even when no event arrives.

Internal to the package: import the public API from ``django_eventlog``.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Iterable

from django.db import DatabaseError, connections

from . import feed_queries, projection_locks
from .conf import conf
from .positions import Position
from .projection_runs import ProjectionRun, check_positions
from .projections import load_projections, projections_database

__all__ = ["Runner"]

#: What a projection has seen of the feed before its first batch (the
#: feed's end may be None: an empty feed).
_UNSEEN = object()

logger = logging.getLogger("django_eventlog.projections")

#: Seconds between tries to take the locks of projections another runner has.
LOCK_RETRY = 1.0
#: Seconds after which every projection looks at its checkpoint again, even
#: with no new event (a retry or rebuild by an operator).
REFRESH = 5.0
#: Seconds between looks at the feed's horizon.
HORIZON_CHECK = 5.0


class Runner:
    """Run projections until :meth:`stop` (a signal handler calls it)."""

    def __init__(self, names: Iterable[str] | None = None) -> None:
        self.using = projections_database()
        self.runs = {
            projection.name: ProjectionRun(projection, self.using, sleep=self._sleep)
            for projection in load_projections(names)
        }
        self._stopping = threading.Event()
        self._held: set[str] = set()
        self._connection: object = None
        self._seen: dict[str, Position | None] = {}
        self._next_lock_try = 0.0
        self._next_refresh = 0.0
        self._next_horizon_check = 0.0
        self._horizon: tuple[int | None, float] = (None, time.monotonic())
        self._warned = False

    def stop(self) -> None:
        """Finish the batch at hand, commit, and return from :meth:`run`."""
        self._stopping.set()

    @property
    def held(self) -> frozenset[str]:
        """The projections this runner runs now."""
        return frozenset(self._held)

    def run(self, *, once: bool = False) -> dict[str, int]:
        """Run until stopped (``once``: until every projection it can run has
        caught up); the events each handled."""
        handled = dict.fromkeys(self.runs, 0)
        check_positions(self.using)
        try:
            while not self._stopping.is_set():
                try:
                    busy = self._round(handled, once)
                except DatabaseError as e:
                    logger.warning(
                        "Projection runner: database error %r; reconnecting.", e
                    )
                    self._reconnect()
                    busy = False
                if once and not busy:
                    break
                if not busy:
                    self._sleep(conf.EVENTLOG_PROJECTION_POLL_INTERVAL)
        finally:
            self._release()
        return handled

    def _round(self, handled: dict[str, int], once: bool) -> bool:
        """Take free locks, then one batch of each projection that has
        something new; whether any had."""
        self._check_connection()
        now = time.monotonic()
        if once or now >= self._next_lock_try:
            self._next_lock_try = now + LOCK_RETRY
            for name in self.runs:
                if name not in self._held and projection_locks.try_lock(
                    self.using, name
                ):
                    logger.info("Projection runner: running %s.", name)
                    self._held.add(name)
        if now >= self._next_refresh:
            self._next_refresh = now + REFRESH
            self._seen.clear()
        head = feed_queries.head(self.using)
        busy = False
        for name in self.runs:
            if self._stopping.is_set():
                break
            if name not in self._held or self._seen.get(name, _UNSEEN) == head:
                continue
            outcome = self.runs[name].step()
            handled[name] += outcome.handled
            if outcome.caught_up or outcome.failed:
                self._seen[name] = head
            else:
                busy = True
        if now >= self._next_horizon_check:
            self._next_horizon_check = now + HORIZON_CHECK
            self._watch_horizon(now)
        return busy

    def _watch_horizon(self, now: float) -> None:
        """Warn when the horizon has not moved for a while and events wait
        behind it; say what holds it."""
        horizon = feed_queries.horizon(self.using)
        if horizon is None:
            return
        if horizon != self._horizon[0]:
            self._horizon, self._warned = (horizon, now), False
            return
        waited = now - self._horizon[1]
        if self._warned or waited < conf.EVENTLOG_PROJECTION_HORIZON_WARNING:
            return
        held = feed_queries.held_back(self.using, 10_000)
        if not held:
            return
        holder = feed_queries.holder(self.using)
        self._warned = True
        logger.warning(
            "The feed's horizon has not moved for %.0f s: %d committed events wait "
            "behind transaction %s. Nothing is lost; they are delivered when it ends.",
            waited,
            held,
            "(none found)" if holder is None else _described(holder),
        )

    def _check_connection(self) -> None:
        """Forget the locks if the connection they were held on is gone."""
        connection = connections[self.using]
        connection.ensure_connection()
        if connection.connection is not self._connection:
            if self._held:
                logger.warning(
                    "Projection runner: new connection; taking the locks again."
                )
            self._held.clear()
            self._seen.clear()
            self._connection = connection.connection

    def _reconnect(self) -> None:
        self._held.clear()
        self._seen.clear()
        with contextlib.suppress(DatabaseError):
            connections[self.using].close()
        self._sleep(1.0)

    def _release(self) -> None:
        for name in self._held:
            try:
                projection_locks.unlock(self.using, name)
            except DatabaseError:
                break  # the connection is gone, and the locks with it
        self._held.clear()

    def _sleep(self, seconds: float) -> bool:
        """Wait, unless stopped; whether to go on."""
        return not self._stopping.wait(seconds)


def _described(holder: tuple[int, float, str, str]) -> str:
    pid, seconds, state, query = holder
    return f"of pid {pid}, open {seconds:.0f} s, {state}: {query!r}"
