"""How each projection is doing: position, lag, state, error, who runs it.

``eventlog_projections status`` prints it and the admin's Projections page
shows it.

Internal to the package: import the public API from ``django_eventlog``.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Iterable
from datetime import datetime

from django.utils import timezone

from . import feed_queries, projection_locks
from .feed import HorizonHolder, feed_filters
from .models import ProjectionCheckpoint
from .positions import parse_position
from .projections import load_projections

__all__ = ["BEHIND_CAP", "ProjectionStatus", "statuses"]

#: The most events ``behind`` counts.
BEHIND_CAP = 1_000_000


@dataclasses.dataclass(frozen=True)
class ProjectionStatus:
    """One projection as ``status`` shows it."""

    name: str
    #: Listed in EVENTLOG_PROJECTIONS (else only its checkpoint is left).
    configured: bool
    state: str
    position: str
    handled: int
    #: Committed events of its kinds and types after its position (up to
    #: BEHIND_CAP), and how long ago the first of them was recorded.
    behind: int
    seconds_behind: float | None
    updated_at: datetime | None
    last_error: str
    error_position: str
    error_log_id: uuid.UUID | None
    error_index: int | None
    #: The pid of the connection that runs it now (PostgreSQL), if any.
    runner_pid: int | None
    #: When its lag is only events the horizon holds back: what holds it.
    held_by: HorizonHolder | None


def statuses(using: str, names: Iterable[str] | None = None) -> list[ProjectionStatus]:
    """The status of each configured projection (of ``names``, if given),
    then of each checkpoint no configured projection has any more."""
    projections = load_projections(names)
    checkpoints = {c.name: c for c in ProjectionCheckpoint.objects.using(using)}
    pids = projection_locks.holders(
        using, [p.name for p in projections] + list(checkpoints)
    )
    found = []
    for projection in projections:
        kinds, types = feed_filters(projection.kinds, projection.event_types)
        found.append(
            _status(
                using,
                projection.name,
                True,
                checkpoints.pop(projection.name, None),
                kinds,
                types,
                pids,
            )
        )
    if names is None:
        for name, checkpoint in sorted(checkpoints.items()):
            found.append(_status(using, name, False, checkpoint, None, None, pids))
    return found


def _status(
    using: str,
    name: str,
    configured: bool,
    checkpoint: ProjectionCheckpoint | None,
    kinds: tuple[str, ...] | None,
    types: tuple[str, ...] | None,
    pids: dict[str, int],
) -> ProjectionStatus:
    position = checkpoint.position if checkpoint is not None else ""
    behind, seconds, held_by = 0, None, None
    if kinds is not None and types is not None:
        after = parse_position(position or None)
        behind, first = feed_queries.behind(using, after, kinds, types, BEHIND_CAP)
        if first is not None:
            seconds = max(0.0, (timezone.now() - first).total_seconds())
        if behind and not feed_queries.page(using, after, kinds, types, 1):
            # Events wait, none is delivered yet: the horizon holds them.
            holder = feed_queries.holder(using)
            held_by = None if holder is None else HorizonHolder(*holder)
    return ProjectionStatus(
        name=name,
        configured=configured,
        state=checkpoint.state if checkpoint is not None else "new",
        position=position,
        handled=checkpoint.handled if checkpoint is not None else 0,
        behind=behind,
        seconds_behind=seconds,
        updated_at=checkpoint.updated_at if checkpoint is not None else None,
        last_error=checkpoint.last_error if checkpoint is not None else "",
        error_position=checkpoint.error_position if checkpoint is not None else "",
        error_log_id=checkpoint.error_log_id if checkpoint is not None else None,
        error_index=checkpoint.error_index if checkpoint is not None else None,
        runner_pid=pids.get(name),
        held_by=held_by,
    )
