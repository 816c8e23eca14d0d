"""Settings of django_eventlog, read lazily so ``override_settings`` works."""

from __future__ import annotations

from typing import Any

from django.conf import settings

DEFAULTS: dict[str, Any] = {
    # Rows fetched per round trip when reduce() streams a log.
    "EVENTLOG_CHUNK_SIZE": 2000,
    # Page size of load() when the caller gives no limit.
    "EVENTLOG_PAGE_SIZE": 100,
    # Largest limit load() accepts.
    "EVENTLOG_MAX_PAGE_SIZE": 1000,
}


class Settings:
    """Typed access to the ``EVENTLOG_*`` settings and their defaults."""

    def _get(self, name: str) -> Any:
        return getattr(settings, name, DEFAULTS[name])

    @property
    def EVENTLOG_CHUNK_SIZE(self) -> int:
        return int(self._get("EVENTLOG_CHUNK_SIZE"))

    @property
    def EVENTLOG_PAGE_SIZE(self) -> int:
        return int(self._get("EVENTLOG_PAGE_SIZE"))

    @property
    def EVENTLOG_MAX_PAGE_SIZE(self) -> int:
        return int(self._get("EVENTLOG_MAX_PAGE_SIZE"))


conf = Settings()
