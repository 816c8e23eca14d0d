"""System checks of the ``EVENTLOG_*`` settings. Ids are stable, never reused."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.checks import CheckMessage, Error

from .conf import DEFAULTS


def _positive_int(name: str) -> bool:
    value = getattr(settings, name, DEFAULTS[name])
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def check_settings(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """Reject invalid ``EVENTLOG_*`` settings."""
    errors: list[CheckMessage] = []
    for check_id, name in (
        ("django_eventlog.E001", "EVENTLOG_CHUNK_SIZE"),
        ("django_eventlog.E002", "EVENTLOG_PAGE_SIZE"),
        ("django_eventlog.E003", "EVENTLOG_MAX_PAGE_SIZE"),
    ):
        if not _positive_int(name):
            errors.append(
                Error(
                    f"{name} must be a positive integer.",
                    hint=f"Remove it to use the default, {DEFAULTS[name]}.",
                    id=check_id,
                )
            )
    if not errors:
        page = getattr(settings, "EVENTLOG_PAGE_SIZE", DEFAULTS["EVENTLOG_PAGE_SIZE"])
        maximum = getattr(
            settings, "EVENTLOG_MAX_PAGE_SIZE", DEFAULTS["EVENTLOG_MAX_PAGE_SIZE"]
        )
        if page > maximum:
            errors.append(
                Error(
                    "EVENTLOG_PAGE_SIZE may not exceed EVENTLOG_MAX_PAGE_SIZE.",
                    id="django_eventlog.E004",
                )
            )
    return errors
