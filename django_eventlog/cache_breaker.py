"""The circuit breaker around the library's cache calls.

A cache server that accepts connections but never answers costs every call
its socket timeout. After ``EVENTLOG_CACHE_BREAKER_FAILURES`` outages in a
row (connection errors and timeouts, see :func:`is_outage`) the breaker
opens: :mod:`django_eventlog.caching` skips the cache for
``EVENTLOG_CACHE_BREAKER_COOLOFF`` seconds, then lets one call through as a
probe. The probe's answer closes the breaker; another outage keeps it open
for one more cool-off. Opening and closing are logged once each.

One breaker per process, shared by its threads; a forked child starts with
a closed one. Internal to the package: :data:`breaker`, :class:`Breaker`,
:func:`is_outage` and the passes :data:`CALL`, :data:`PROBE`, :data:`SKIP`.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from typing import Any

from django.core.signals import setting_changed

from .conf import conf

__all__ = ["CALL", "PROBE", "SKIP", "Breaker", "breaker", "is_outage"]

logger = logging.getLogger("django_eventlog")

#: What :meth:`Breaker.ask` answers: skip the cache, call it, or call it as
#: the one probe of an open breaker.
SKIP, CALL, PROBE = 0, 1, 2

# Exception classes that say "the cache did not answer", by name so that no
# client library must be installed: redis-py's ConnectionError (and its
# subclasses) and TimeoutError, the builtin ones, and pymemcache's.
_OUTAGE_NAMES = frozenset(
    {"ConnectionError", "TimeoutError", "MemcacheUnexpectedCloseError"}
)


def is_outage(error: BaseException) -> bool:
    """Tell whether ``error`` (or what it wraps) means the cache did not answer.

    Connection errors and timeouts count (``OSError``, ``socket.timeout``,
    redis-py's ``ConnectionError`` and ``TimeoutError``, also when
    django-redis wraps them in ``ConnectionInterrupted``). An error the
    server answered with, or an entry that does not decode, does not.
    """
    seen: set[int] = set()
    current: BaseException | None = error
    # Only explicit causes (raise ... from e): an exception that was merely
    # being handled when the cache was called says nothing about the cache.
    while current is not None and id(current) not in seen:  # chains can loop
        seen.add(id(current))
        if isinstance(current, OSError) or any(
            cls.__name__ in _OUTAGE_NAMES for cls in type(current).__mro__
        ):
            return True
        current = current.__cause__
    return False


class Breaker:
    """Consecutive cache outages, and whether the cache is being skipped."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._reset()

    def _reset(self) -> None:
        self._pid = os.getpid()
        self._failures = 0
        # None while closed; else when the next probe may go.
        self._open_until: float | None = None
        self._probe_started: float | None = None

    def after_fork(self) -> None:
        """Start closed in a forked child (its parent's lock may be held)."""
        self._lock = threading.Lock()
        self._reset()

    def reset(self) -> None:
        """Close the breaker and forget the failures counted so far."""
        with self._lock:
            self._reset()

    @property
    def is_open(self) -> bool:
        return self._open_until is not None and self._pid == os.getpid()

    def ask(self) -> int:
        """Return :data:`CALL`, :data:`PROBE` or :data:`SKIP` for one cache call."""
        if self._open_until is None:
            return CALL  # closed: no lock on the healthy path
        with self._lock:
            if self._pid != os.getpid():
                self._reset()
            if self._open_until is None:
                return CALL
            now = self._clock()
            if now < self._open_until:
                return SKIP
            cooloff = conf.EVENTLOG_CACHE_BREAKER_COOLOFF
            # A probe that never reported (a cancelled task) blocks no longer
            # than a cool-off.
            if self._probe_started is not None and now < self._probe_started + cooloff:
                return SKIP
            self._probe_started = now
            return PROBE

    def answered(self, permit: int) -> None:
        """Record that a call admitted by :meth:`ask` got an answer."""
        if permit == CALL and self._failures == 0:
            return  # closed and healthy: no lock
        with self._lock:
            if permit == PROBE and self._probe_started is not None:
                self._reset()
                logger.warning(
                    "The cache %r answers again: calling it again.",
                    conf.EVENTLOG_CACHE_ALIAS,
                )
            elif self._open_until is None:
                self._failures = 0

    def failed(self, permit: int, error: BaseException) -> None:
        """Record that a call admitted by :meth:`ask` raised ``error``."""
        if not is_outage(error):
            self.answered(permit)
            return
        with self._lock:
            if self._pid != os.getpid():
                self._reset()
            cooloff = conf.EVENTLOG_CACHE_BREAKER_COOLOFF
            if permit == PROBE and self._probe_started is not None:
                # Still down: one more cool-off, without logging again.
                self._probe_started = None
                self._open_until = self._clock() + cooloff
                return
            if self._open_until is not None:
                return  # a call that started before the breaker opened
            self._failures += 1
            if self._failures < conf.EVENTLOG_CACHE_BREAKER_FAILURES:
                return
            self._open_until = self._clock() + cooloff
            logger.warning(
                "The cache %r failed %d times in a row: not calling it for %s s, "
                "then trying one call. Reductions come from the database meanwhile.",
                conf.EVENTLOG_CACHE_ALIAS,
                self._failures,
                f"{cooloff:g}",
            )


breaker = Breaker()
os.register_at_fork(after_in_child=breaker.after_fork)


def _settings_changed(*, setting: str, **kwargs: Any) -> None:
    # Another cache or other thresholds (tests' override_settings) start closed.
    if setting == "CACHES" or setting.startswith("EVENTLOG_CACHE_"):
        breaker.reset()


setting_changed.connect(_settings_changed, dispatch_uid="django_eventlog.breaker")
