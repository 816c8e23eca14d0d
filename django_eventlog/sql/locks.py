"""The SQL of the projections' advisory locks (PostgreSQL).

A runner holds one session-level advisory lock per projection it runs, on
its own connection: two keys, the library's namespace and a number derived
from the projection's name. The lock goes with the connection, so when a
runner dies, another can take the projection over.

Internal to the package: import the public API from ``django_eventlog``.
"""

from __future__ import annotations

__all__ = ["LOCK_HOLDERS", "LOCK_NAMESPACE", "TRY_LOCK", "UNLOCK"]

#: The first key of every projection lock: "ev" in ASCII.
LOCK_NAMESPACE = 0x6576

#: Parameters: the namespace, the projection's key. One row: whether it was
#: taken (or is already held by this session: session locks stack).
TRY_LOCK = "SELECT pg_try_advisory_lock(%s, %s)"
#: Parameters as TRY_LOCK. Releases one level of it.
UNLOCK = "SELECT pg_advisory_unlock(%s, %s)"
#: Parameter: the namespace. Rows: (projection key, pid of the holder).
LOCK_HOLDERS = (
    "SELECT objid::bigint, pid FROM pg_locks WHERE locktype = 'advisory' "
    "AND classid = %s::bigint::oid AND objsubid = 2 AND granted"
)
