"""Run the checkpoint's SQL (:mod:`django_eventlog.sql.checkpoints`) on a
plain cursor.

Internal to the package: import the public API from ``django_eventlog``.
"""

from __future__ import annotations

from typing import Any

from django.db import connections
from django.utils import timezone

from .sql import checkpoint_statements

__all__ = ["advance", "read_locked"]


def read_locked(using: str, name: str) -> tuple[str, str] | None:
    """Position and state of the checkpoint ``name``, its row locked until
    the transaction ends (PostgreSQL); None if there is no row."""
    connection = connections[using]
    with connection.cursor() as cursor:
        cursor.execute(checkpoint_statements(connection).read, [name])
        row = cursor.fetchone()
    return None if row is None else (row[0], row[1])


def advance(
    using: str,
    name: str,
    begun_at: str,
    position: str,
    handled: int,
    state_change: tuple[str, str] | None = None,
) -> bool:
    """Move the checkpoint ``name`` to ``position`` and add ``handled`` to
    its count (and change its state from ``state_change[0]`` to
    ``state_change[1]``, if it is in the first), if it is still at
    ``begun_at``; whether it was."""
    connection = connections[using]
    now = connection.ops.adapt_datetimefield_value(timezone.now())
    was, becomes = state_change or (None, None)
    params: list[Any] = [position, handled, was, becomes, now, name, begun_at]
    with connection.cursor() as cursor:
        cursor.execute(checkpoint_statements(connection).advance, params)
        return bool(cursor.rowcount == 1)
