"""A local-memory cache that records each get and put, like the crate's fake cache."""

from __future__ import annotations

from typing import Any

from django.core.cache.backends.locmem import LocMemCache


class RecordingCache(LocMemCache):
    """Records ``(operation, key, timeout)`` of every get, set and delete."""

    calls: list[tuple[str, str, Any]] = []

    def get(self, key: str, default: Any = None, version: int | None = None) -> Any:
        self.calls.append(("get", key, None))
        return super().get(key, default, version)

    def set(
        self,
        key: str,
        value: Any,
        timeout: Any = None,
        version: int | None = None,
    ) -> None:
        self.calls.append(("set", key, timeout))
        super().set(key, value, timeout, version)

    def delete(self, key: str, version: int | None = None) -> bool:
        self.calls.append(("delete", key, None))
        return super().delete(key, version)
