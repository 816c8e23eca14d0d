"""Statements built once per database alias.

Internal to the package: import the public API from ``django_eventlog``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, TypeVar

from django.db.backends.base.base import BaseDatabaseWrapper

__all__ = ["PerAlias"]

T = TypeVar("T")


class PerAlias(Generic[T]):
    """``build(connection)`` once per alias, kept for good; built again if
    the alias now names another kind of database (a test's settings)."""

    def __init__(self, build: Callable[[BaseDatabaseWrapper], T]) -> None:
        self._build = build
        self._built: dict[str, tuple[str, T]] = {}

    def __call__(self, connection: BaseDatabaseWrapper) -> T:
        found = self._built.get(connection.alias)
        if found is None or found[0] != connection.vendor:
            found = self._built[connection.alias] = (
                connection.vendor,
                self._build(connection),
            )
        return found[1]
