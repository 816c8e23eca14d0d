"""The read-only admin of projections and of the events skipped in them.

``ProjectionAdmin`` shows each checkpoint with what
``projection_status.statuses`` says of it (lag, runner, what holds the
horizon back), computed once per page; ``ProjectionSkipAdmin`` shows who
skipped which event and why. Both link a failed or skipped event to its
place in its log's timeline. :mod:`django_eventlog.admin` registers them.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.contrib.admin.views.main import ChangeList
from django.http import HttpRequest
from django.utils.html import format_html
from django.utils.safestring import SafeString

from .admin_base import ReadOnlyAdmin, timeline_url
from .models import ProjectionCheckpoint, ProjectionSkip
from .projection_status import BEHIND_CAP, ProjectionStatus, statuses
from .projections import load_projections

__all__ = ["ProjectionAdmin", "ProjectionSkipAdmin", "error_summary"]

# The attribute a checkpoint of a page carries its status in.
_STATUS = "eventlog_status"
#: The most characters of an error shown in the list.
SUMMARY_CHARS = 200


def error_summary(text: str) -> str:
    """The line of a traceback that says what was raised: its last one."""
    lines = text.strip().splitlines()
    summary = lines[-1].strip() if lines else ""
    if len(summary) > SUMMARY_CHARS:
        return summary[: SUMMARY_CHARS - 1] + "…"
    return summary


def _event_link(log_id: Any, index: int | None, site: str) -> SafeString | str:
    if log_id is None or index is None:
        return "-"
    return format_html(
        '<a class="eventlog-event-link" href="{}">{} [{}]</a>',
        timeline_url(log_id, index, site),
        log_id,
        index,
    )


def _traceback_html(text: str) -> SafeString | str:
    """A traceback, escaped and preformatted; "-" for none."""
    if not text:
        return "-"
    return format_html(
        '<pre class="eventlog-traceback" style="white-space: pre-wrap">{}</pre>', text
    )


def _status(checkpoint: ProjectionCheckpoint) -> ProjectionStatus | None:
    status = getattr(checkpoint, _STATUS, None)
    return status if isinstance(status, ProjectionStatus) else None


class ProjectionAdmin(ReadOnlyAdmin):
    """Each projection's state, position, lag, runner and last error.

    The lag columns come from one ``statuses()`` call per page: a few
    queries per configured projection, however many events there are.
    Projections configured but never run have no checkpoint yet: the list
    names them in a note above the table, with their lag.
    """

    list_display = (
        "name",
        "state_display",
        "position",
        "handled",
        "events_behind",
        "seconds_behind",
        "updated_at",
        "runner_pid",
        "failed_on",
        "error",
    )
    ordering = ("name",)
    search_fields = ("=name",)
    search_help_text = "An exact projection name."
    fields = (
        "name",
        "state_display",
        "position",
        "handled",
        "events_behind",
        "seconds_behind",
        "held_by",
        "updated_at",
        "runner_pid",
        "failed_event",
        "traceback",
    )
    readonly_fields = fields
    change_list_template = "admin/django_eventlog/projectioncheckpoint/change_list.html"

    def get_changelist_instance(self, request: HttpRequest) -> ChangeList:
        changelist = super().get_changelist_instance(request)
        found = {s.name: s for s in statuses(changelist.queryset.db)}
        for checkpoint in changelist.result_list:
            setattr(checkpoint, _STATUS, found.get(checkpoint.name))
        # For the template: configured projections with no checkpoint yet.
        changelist.eventlog_not_run = [  # type: ignore[attr-defined]
            status for status in found.values() if status.updated_at is None
        ]
        return changelist

    def get_object(
        self, request: HttpRequest, object_id: str, from_field: str | None = None
    ) -> ProjectionCheckpoint | None:
        checkpoint: ProjectionCheckpoint | None = super().get_object(
            request, object_id, from_field
        )
        if checkpoint is None:
            return None
        configured = {p.name for p in load_projections()}
        if checkpoint.name in configured:
            using = checkpoint._state.db or "default"
            [status] = statuses(using, [checkpoint.name])
            setattr(checkpoint, _STATUS, status)
        return checkpoint

    @admin.display(description="state", ordering="state")
    def state_display(self, checkpoint: ProjectionCheckpoint) -> SafeString:
        status = _status(checkpoint)
        note = "" if status is not None and status.configured else " (not configured)"
        if checkpoint.state == ProjectionCheckpoint.State.FAILED:
            return format_html(
                '<strong class="eventlog-failed" style="color: var(--error-fg, '
                '#ba2121)">✖ {}</strong>{}',
                checkpoint.state,
                note,
            )
        return format_html("{}{}", checkpoint.state, note)

    @admin.display(description="events behind")
    def events_behind(self, checkpoint: ProjectionCheckpoint) -> str:
        status = _status(checkpoint)
        if status is None or not status.configured:
            return "-"
        if status.behind >= BEHIND_CAP:
            return f"{BEHIND_CAP}+"
        return str(status.behind)

    @admin.display(description="seconds behind")
    def seconds_behind(self, checkpoint: ProjectionCheckpoint) -> str:
        status = _status(checkpoint)
        if status is None or status.seconds_behind is None:
            return "-"
        return f"{status.seconds_behind:.1f}"

    @admin.display(description="horizon held by")
    def held_by(self, checkpoint: ProjectionCheckpoint) -> str:
        status = _status(checkpoint)
        holder = None if status is None else status.held_by
        if holder is None:
            return "-"
        return (
            f"PostgreSQL pid {holder.pid}, {holder.state} for "
            f"{holder.seconds:.1f} s: {holder.query}"
        )

    @admin.display(description="runner pid")
    def runner_pid(self, checkpoint: ProjectionCheckpoint) -> str:
        status = _status(checkpoint)
        pid = None if status is None else status.runner_pid
        return "-" if pid is None else str(pid)

    @admin.display(description="failed on")
    def failed_on(self, checkpoint: ProjectionCheckpoint) -> SafeString | str:
        return _event_link(
            checkpoint.error_log_id, checkpoint.error_index, self.admin_site.name
        )

    @admin.display(description="last error")
    def error(self, checkpoint: ProjectionCheckpoint) -> str:
        return error_summary(checkpoint.last_error) or "-"

    @admin.display(description="failed event")
    def failed_event(self, checkpoint: ProjectionCheckpoint) -> SafeString | str:
        if checkpoint.error_log_id is None or checkpoint.error_index is None:
            return "-"
        return format_html(
            "{} (type {}, position {})",
            self.failed_on(checkpoint),
            checkpoint.error_type or "?",
            checkpoint.error_position or "?",
        )

    @admin.display(description="last error")
    def traceback(self, checkpoint: ProjectionCheckpoint) -> SafeString | str:
        return _traceback_html(checkpoint.last_error)


class ProjectionSkipAdmin(ReadOnlyAdmin):
    """Events an operator skipped in a failed projection: who, when, why."""

    list_display = (
        "skipped_at",
        "projection",
        "event",
        "type",
        "skipped_by",
        "reason",
    )
    list_filter = ("projection",)
    search_fields = ("=projection", "=skipped_by")
    search_help_text = "An exact projection name or operator."
    ordering = ("-skipped_at",)
    fields = (
        "projection",
        "event",
        "type",
        "position",
        "skipped_by",
        "skipped_at",
        "reason",
        "error_traceback",
    )
    readonly_fields = fields

    @admin.display(description="event")
    def event(self, skipped: ProjectionSkip) -> SafeString | str:
        return _event_link(skipped.log_id, skipped.index, self.admin_site.name)

    @admin.display(description="error")
    def error_traceback(self, skipped: ProjectionSkip) -> SafeString | str:
        return _traceback_html(skipped.error)
