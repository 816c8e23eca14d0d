"""Which process runs a projection: PostgreSQL advisory locks.

Each projection is run by at most one process at a time: the one whose
connection holds the projection's session-level advisory lock. The lock
needs no table and no heartbeat, and PostgreSQL releases it when the
holder's connection ends (a runner killed, a machine gone), so another
runner takes the projection over at its next look.

On SQLite there are no such locks: :func:`try_lock` always succeeds, and
the checkpoint's compare-and-set (:mod:`django_eventlog.projection_runs`)
keeps each event handled once even if two processes run one projection.

Internal to the package: import the public API from ``django_eventlog``.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from contextlib import contextmanager

from django.db import connections

from .sql import LOCK_HOLDERS, LOCK_NAMESPACE, TRY_LOCK, UNLOCK

__all__ = ["holders", "lock_key", "locked", "try_lock", "unlock"]


def lock_key(name: str) -> int:
    """The second key of ``name``'s lock: a non-negative 31-bit number.

    Two names may share one (then one runner runs both): that costs
    parallelism, never correctness.
    """
    return zlib.crc32(name.encode()) & 0x7FFFFFFF


def _postgresql(using: str) -> bool:
    return connections[using].vendor == "postgresql"


def try_lock(using: str, name: str) -> bool:
    """Take ``name``'s lock on ``using``'s connection if no other session
    holds it; whether this session holds it now."""
    if not _postgresql(using):
        return True
    with connections[using].cursor() as cursor:
        cursor.execute(TRY_LOCK, [LOCK_NAMESPACE, lock_key(name)])
        return bool(cursor.fetchone()[0])


def unlock(using: str, name: str) -> None:
    """Release one hold of ``name``'s lock on ``using``'s connection."""
    if not _postgresql(using):
        return
    connection = connections[using]
    if connection.connection is None:
        return  # closed: the lock went with it
    with connection.cursor() as cursor:
        cursor.execute(UNLOCK, [LOCK_NAMESPACE, lock_key(name)])


@contextmanager
def locked(using: str, name: str) -> Iterator[bool]:
    """Hold ``name``'s lock within the block if it can be had; yields
    whether it was."""
    taken = try_lock(using, name)
    try:
        yield taken
    finally:
        if taken:
            unlock(using, name)


def holders(using: str, names: list[str]) -> dict[str, int]:
    """The pid of the session that holds each of ``names``' locks, for those
    held (nothing on SQLite)."""
    if not _postgresql(using):
        return {}
    with connections[using].cursor() as cursor:
        cursor.execute(LOCK_HOLDERS, [LOCK_NAMESPACE])
        by_key = {int(key): int(pid) for key, pid in cursor.fetchall()}
    return {name: by_key[lock_key(name)] for name in names if lock_key(name) in by_key}
