"""Cached reductions in Django's cache framework.

``reduce()`` looks up the reduction cached for (aggregate name, version, log
id), folds only the events recorded after it, and writes the result back once
the database transaction that read those events commits. The cache only saves
work: every failure to read, decode or write an entry is logged on the
``django_eventlog`` logger and treated as a miss, never raised to the caller.
Every call to the cache asks :mod:`django_eventlog.cache_breaker` first, and
is skipped (counted, not logged) while a cache outage keeps it open.

Public: :class:`CacheStats`, :func:`cache_stats`, :func:`reset_cache_stats`,
:func:`wait_for_cache_writes`, and :func:`key_prefix` and :func:`cache_key`
for tools that handle entries themselves. Internal to the package (the
manager in :mod:`django_eventlog.store` is their only user): :func:`read`
and :func:`aread` look an entry up into a :class:`Lookup`, which
:func:`write` and :func:`awrite` then take with the finished reduction.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import logging
import re
import threading
import uuid
from typing import Any, TypeVar

from asgiref.sync import sync_to_async
from django.core.cache import BaseCache, caches
from django.db import connections, transaction

from . import cache_entries, cache_writer
from .aggregates import Aggregate, Reduction
from .cache_breaker import SKIP, breaker
from .cache_writer import wait_for_cache_writes
from .conf import conf
from .signals import reduced

__all__ = [
    "CacheStats",
    "cache_key",
    "cache_stats",
    "key_prefix",
    "reset_cache_stats",
    "wait_for_cache_writes",
]

logger = logging.getLogger("django_eventlog")

A = TypeVar("A", bound=Aggregate)

# Cache keys stay short and free of characters memcached or Redis patterns
# treat specially; longer or odd aggregate names are cut and hashed.
NAME_MAX_LENGTH = 100
_SAFE_NAME = re.compile(r"[A-Za-z0-9_.-]+")


def key_prefix(aggregate_class: type[Aggregate] | None = None) -> str:
    """Return the start of the keys of one aggregate class, or of all."""
    prefix = f"{conf.EVENTLOG_CACHE_KEY_PREFIX}:"
    if aggregate_class is None:
        return prefix
    return f"{prefix}{_safe_name(aggregate_class.aggregate_name)}:"


def cache_key(aggregate_class: type[Aggregate], log_id: uuid.UUID) -> str:
    """Return the key of a log's cached reduction into ``aggregate_class``."""
    return f"{key_prefix(aggregate_class)}v{aggregate_class.version}:{log_id.hex}"


@functools.lru_cache(maxsize=256)
def _safe_name(name: str) -> str:
    if _SAFE_NAME.fullmatch(name) and len(name) <= NAME_MAX_LENGTH:
        return name
    digest = hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest()[:16]
    readable = re.sub(r"[^A-Za-z0-9_.-]", "_", name)[: NAME_MAX_LENGTH - 17]
    return f"{readable}-{digest}"


# Statistics


@dataclasses.dataclass(frozen=True)
class CacheStats:
    """Counts of cache activity in this process since start or ``reset``."""

    hits: int = 0
    misses: int = 0
    #: reads and writes that failed, and entries that did not decode
    errors: int = 0
    writes: int = 0
    #: entries deleted because they no longer decode or their policy said no
    deletes: int = 0
    #: events folded onto cached reductions (the work a hit still does)
    events_applied_after_hit: int = 0
    #: reads and writes not tried because the cache breaker was open
    skipped: int = 0


class _Counters:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts = {field.name: 0 for field in dataclasses.fields(CacheStats)}

    def add(self, name: str, amount: int = 1) -> None:
        with self._lock:
            self._counts[name] += amount

    def snapshot(self) -> CacheStats:
        with self._lock:
            return CacheStats(**self._counts)

    def reset(self) -> None:
        with self._lock:
            self._counts = dict.fromkeys(self._counts, 0)


_counters = _Counters()


def cache_stats() -> CacheStats:
    """Return the cache activity counts of this process."""
    return _counters.snapshot()


def reset_cache_stats() -> None:
    """Set every cache activity count back to zero."""
    _counters.reset()


# Reading


@dataclasses.dataclass
class Lookup:
    """What a cache read found, for the write that follows the reduce."""

    aggregate_class: type[Aggregate]
    log_id: uuid.UUID
    key: str
    reduction: Reduction[Any] | None = None
    outcome: str = "miss"  # "hit", "miss", "error" or "skipped"
    bad_entry: bool = False


def _cache() -> BaseCache:
    return caches[conf.EVENTLOG_CACHE_ALIAS]


def read(aggregate_class: type[A], log_id: uuid.UUID) -> Lookup:
    """Look up a cached reduction; any failure is a miss."""
    lookup = Lookup(aggregate_class, log_id, cache_key(aggregate_class, log_id))
    permit = breaker.ask()
    if permit == SKIP:
        _skipped(lookup)
        return lookup
    try:
        data = _cache().get(lookup.key)
    except Exception as e:
        _read_failed(lookup, e)
        breaker.failed(permit, e)
        return lookup
    breaker.answered(permit)
    _found(lookup, data)
    return lookup


async def aread(aggregate_class: type[A], log_id: uuid.UUID) -> Lookup:
    """Async :func:`read`, with the cache's async API."""
    lookup = Lookup(aggregate_class, log_id, cache_key(aggregate_class, log_id))
    permit = breaker.ask()
    if permit == SKIP:
        _skipped(lookup)
        return lookup
    try:
        data = await _cache().aget(lookup.key)
    except Exception as e:
        _read_failed(lookup, e)
        breaker.failed(permit, e)
        return lookup
    breaker.answered(permit)
    _found(lookup, data)
    return lookup


def _skipped(lookup: Lookup) -> None:
    lookup.outcome = "skipped"
    _counters.add("skipped")


def _read_failed(lookup: Lookup, error: Exception) -> None:
    lookup.outcome = "error"
    _counters.add("errors")
    logger.warning(
        "Reading cached reduction %s failed; reducing from the database: %r",
        lookup.key,
        error,
    )


def _found(lookup: Lookup, data: object) -> None:
    if data is None:
        _counters.add("misses")
        return
    try:
        lookup.reduction = cache_entries.decode(
            data, lookup.aggregate_class, lookup.log_id
        )
    except cache_entries.BadEntry as e:
        lookup.outcome = "error"
        lookup.bad_entry = True
        _counters.add("errors")
        logger.warning(
            "Cached reduction %s does not decode (%s); reducing from the database "
            "and replacing it.",
            lookup.key,
            e,
        )
        return
    lookup.outcome = "hit"
    _counters.add("hits")


# Writing


def _notify(lookup: Lookup, reduction: Reduction[Any], events_applied: int) -> None:
    """Send the ``reduced`` signal. A receiver that fails is logged: metrics
    must not break reduce()."""
    responses = reduced.send_robust(
        sender=lookup.aggregate_class,
        log_id=lookup.log_id,
        cache=lookup.outcome,
        events_applied=events_applied,
        through_index=reduction.through_index,
    )
    for receiver, response in responses:
        if isinstance(response, Exception):
            logger.error(
                "A receiver of django_eventlog.signals.reduced failed: %r",
                receiver,
                exc_info=response,
            )


def _planned_write(
    lookup: Lookup, reduction: Reduction[Any], events_applied: int
) -> tuple[str, bytes | None] | None:
    """Return (key, data to set or None to delete), or None for no write."""
    aggregate_class = lookup.aggregate_class
    if lookup.outcome == "hit":
        _counters.add("events_applied_after_hit", events_applied)
    stored = lookup.outcome == "hit" or lookup.bad_entry
    if not _wanted(aggregate_class, reduction):
        # Delete what is there, so that a policy that stops caching a log
        # (LogAgePolicy.until, say) is not outlived by the entry.
        return (lookup.key, None) if stored else None
    if lookup.outcome == "hit" and events_applied == 0:
        return None  # the entry already says all this
    data = cache_entries.encode(reduction, aggregate_class)
    if data is None:
        return (lookup.key, None) if stored else None
    return lookup.key, data


def _wanted(aggregate_class: type[Aggregate], reduction: Reduction[Any]) -> bool:
    try:
        policy = aggregate_class.cache_policy or conf.EVENTLOG_CACHE_POLICY
        return bool(policy.should_cache(reduction))
    except Exception:
        logger.exception(
            "The caching policy of %s failed; not caching.",
            aggregate_class.__qualname__,
        )
        return False


def _timeout(aggregate_class: type[Aggregate]) -> int | None:
    if aggregate_class.cache_timeout is not None:
        return aggregate_class.cache_timeout
    return conf.EVENTLOG_CACHE_TIMEOUT


def write(
    using: str, lookup: Lookup, reduction: Reduction[Any], events_applied: int
) -> None:
    """Store the reduction, if it adds something, when ``using`` commits."""
    _notify(lookup, reduction, events_applied)
    plan = _planned_write(lookup, reduction, events_applied)
    if plan is not None:
        key, data = plan
        store = functools.partial(_store, key, data, _timeout(lookup.aggregate_class))
        if conf.EVENTLOG_CACHE_WRITE_BEHIND:
            store = functools.partial(cache_writer.submit, store)
        transaction.on_commit(store, using=using, robust=True)


async def awrite(
    using: str, lookup: Lookup, reduction: Reduction[Any], events_applied: int
) -> None:
    """Async :func:`write`: at once with ``aset`` outside a transaction."""
    # Receivers may be sync and query the database: not in the event loop.
    await sync_to_async(_notify)(lookup, reduction, events_applied)
    plan = _planned_write(lookup, reduction, events_applied)
    if plan is None:
        return
    key, data = plan
    timeout = _timeout(lookup.aggregate_class)
    # Events were read in the thread sync_to_async uses; if that thread is in
    # a transaction, the entry waits for its commit like a sync reduce's.
    in_transaction = await sync_to_async(lambda: connections[using].in_atomic_block)()
    if in_transaction:
        await sync_to_async(transaction.on_commit)(
            functools.partial(_store, key, data, timeout), using=using, robust=True
        )
        return
    permit = breaker.ask()
    if permit == SKIP:
        _counters.add("skipped")
        return
    try:
        if data is None:
            await _cache().adelete(key)
        else:
            await _cache().aset(key, data, timeout)
    except Exception as e:
        _write_failed(key, e)
        breaker.failed(permit, e)
    else:
        breaker.answered(permit)
        _counters.add("writes" if data is not None else "deletes")


def _store(key: str, data: bytes | None, timeout: int | None) -> None:
    # Asked here, when the write runs (at the commit, or on the write-behind
    # thread), not when it was planned.
    permit = breaker.ask()
    if permit == SKIP:
        _counters.add("skipped")
        return
    try:
        if data is None:
            _cache().delete(key)
        else:
            _cache().set(key, data, timeout)
    except Exception as e:
        _write_failed(key, e)
        breaker.failed(permit, e)
    else:
        breaker.answered(permit)
        _counters.add("writes" if data is not None else "deletes")


def _write_failed(key: str, error: Exception) -> None:
    _counters.add("errors")
    logger.warning("Writing cached reduction %s failed: %r", key, error)
