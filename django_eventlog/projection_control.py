"""What an operator does to a projection: retry it, skip one event, rebuild.

``eventlog_projections retry|skip|rebuild`` call these; each changes the
checkpoint in one transaction, locking its row, so it never interleaves
with a batch of the runner (which locks the row too).

Internal to the package: import the public API from ``django_eventlog``.
"""

from __future__ import annotations

from collections.abc import Callable

from django.db import transaction
from django.utils import timezone

from .exceptions import InvalidArgument
from .models import ProjectionCheckpoint, ProjectionSkip
from .positions import parse_position

__all__ = ["reset_for_rebuild", "retry", "skip"]

State = ProjectionCheckpoint.State


def _locked(using: str, name: str) -> ProjectionCheckpoint:
    manager = ProjectionCheckpoint.objects.using(using).select_for_update()
    found, _ = manager.get_or_create(name=name)
    return found


def retry(using: str, name: str) -> bool:
    """Let a failed projection run again from the event it failed on;
    whether it was failed. The last error stays on record."""
    with transaction.atomic(using=using):
        checkpoint = _locked(using, name)
        if checkpoint.state != State.FAILED:
            return False
        checkpoint.state = State.RUNNING
        _clear_error(checkpoint)
        checkpoint.save(using=using)
        return True


def skip(
    using: str, name: str, position: str, *, by: str, reason: str = ""
) -> ProjectionSkip:
    """Move a failed projection past the one event it failed on, at
    ``position``, and record who skipped it and why.

    ``InvalidArgument`` unless the projection is failed on exactly that
    event: a skip is a decision about one event, never a way to jump ahead.
    """
    parse_position(position, "position")
    with transaction.atomic(using=using):
        checkpoint = _locked(using, name)
        if checkpoint.state != State.FAILED:
            raise InvalidArgument(
                f"Projection {name!r} is {checkpoint.state}, not failed: only the "
                "event a failed projection stopped on can be skipped."
            )
        if position != checkpoint.error_position:
            raise InvalidArgument(
                f"Projection {name!r} failed on the event at "
                f"{checkpoint.error_position}, not {position}: give that position."
            )
        if checkpoint.error_log_id is None or checkpoint.error_index is None:
            raise InvalidArgument(f"Projection {name!r} names no failed event.")
        skipped = ProjectionSkip(
            projection=name,
            position=position,
            log_id=checkpoint.error_log_id,
            index=checkpoint.error_index,
            type=checkpoint.error_type,
            error=checkpoint.last_error,
            skipped_by=by,
            reason=reason,
        )
        skipped.save(using=using)
        checkpoint.position = position
        checkpoint.state = State.RUNNING
        _clear_error(checkpoint)
        checkpoint.save(using=using)
        return skipped


def reset_for_rebuild(using: str, name: str, reset: Callable[[], None]) -> None:
    """Set the checkpoint back to the start, state ``rebuilding``, and call
    ``reset()`` (the projection's, which clears its read model) in the same
    transaction: whoever runs the projection next replays every event."""
    with transaction.atomic(using=using):
        checkpoint = _locked(using, name)
        reset()
        checkpoint.position = ""
        checkpoint.handled = 0
        checkpoint.state = State.REBUILDING
        _clear_error(checkpoint)
        checkpoint.save(using=using)


def _clear_error(checkpoint: ProjectionCheckpoint) -> None:
    checkpoint.error_position = ""
    checkpoint.error_log_id = None
    checkpoint.error_index = None
    checkpoint.error_type = ""
    checkpoint.updated_at = timezone.now()
