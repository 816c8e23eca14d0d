"""Event classes that stand for one version of a type, as one release defines it.

Every class :func:`release` builds for a type name has the same module and
qualified name, so defining the next version replaces the one before in the
registry, as deploying the next release does; the events already stored
stay as the earlier version wrote them.
"""

from __future__ import annotations

import uuid
from typing import Any

from django_eventlog import DomainEvent
from django_eventlog.models import Event


def release(
    type_name: str,
    version: int,
    fields: dict[str, Any],
    *,
    defaults: dict[str, Any] | None = None,
    aliases: tuple[str, ...] = (),
    name: str | None = None,
) -> Any:
    """The event class of ``type_name`` at ``version``, with ``fields`` (name:
    type) and their ``defaults``; ``name`` identifies the class across
    releases (default: the type name), so a renamed type keeps it."""
    namespace: dict[str, Any] = {
        "__annotations__": dict(fields),
        "__module__": __name__,
        "__qualname__": f"Release[{name or type_name}]",
        "type_name": type_name,
        "schema_version": version,
        "aliases": aliases,
        **(defaults or {}),
    }
    return type("Release", (DomainEvent,), namespace)


def stored_versions(log_id: uuid.UUID) -> list[int | None]:
    """The schema version column of the log's events, by index (None: 1)."""
    return list(
        Event.objects.filter(log_id=log_id)
        .order_by("index")
        .values_list("schema_version", flat=True)
    )
