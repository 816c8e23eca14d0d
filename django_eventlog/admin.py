"""Read-only admin for logs and events, with a timeline per log.

``LogAdmin`` and ``EventAdmin`` (:mod:`django_eventlog.event_admin`) are
registered on the default admin site, and so are ``ProjectionAdmin`` and
``ProjectionSkipAdmin`` (:mod:`django_eventlog.projection_admin`).
To change them, unregister and register a subclass, or register them on
your own ``AdminSite``::

    admin.site.unregister(Log)

    @admin.register(Log)
    class MyLogAdmin(LogAdmin):
        timeline_page_size = 100
"""

from __future__ import annotations

import uuid
from typing import Any
from urllib.parse import urlencode

from django.contrib import admin
from django.db.models import OuterRef, Q, QuerySet, Subquery
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import reverse
from django.utils import formats, timezone

from . import queries
from .admin_base import EstimatedCountPaginator, ReadOnlyAdmin, correlation_url
from .conf import conf
from .event_admin import EventAdmin
from .events import registered_type_names
from .models import Event, Log, ProjectionCheckpoint, ProjectionSkip
from .projection_admin import ProjectionAdmin, ProjectionSkipAdmin
from .records import RecordDecoder
from .timeline import (
    TimelineEntry,
    fill_states,
    payload_chars,
    read_now,
    render_payload,
)
from .validation import INDEX_MAX

__all__ = [
    "EstimatedCountPaginator",
    "EventAdmin",
    "LogAdmin",
    "ProjectionAdmin",
    "ProjectionSkipAdmin",
    "ReadOnlyAdmin",
]


class KindListFilter(admin.SimpleListFilter):
    """The log list's kind filter, listing kinds with a loose index scan.

    One probe of the kind index per distinct kind, where the ``SELECT
    DISTINCT kind`` of ``list_filter = ("kind",)`` reads every log.
    """

    title = "kind"
    parameter_name = "kind"
    #: the most kinds listed
    limit = 100

    def lookups(
        self,
        request: HttpRequest,
        model_admin: admin.ModelAdmin,  # type: ignore[type-arg]
    ) -> list[tuple[str, str]]:
        using = model_admin.model._default_manager.db
        return [(kind, kind) for kind in queries.log_kinds(using, self.limit)]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        value = self.value()
        return queryset if value is None else queryset.filter(kind=value)


class LogAdmin(ReadOnlyAdmin):
    """Logs, searchable by exact log id or idempotency key, each with its timeline."""

    list_display = ("id", "kind", "created_at", "event_count", "last_event_at")
    list_filter = (KindListFilter, ("created_at", admin.DateFieldListFilter))
    search_fields = ("=id",)
    search_help_text = "An exact log id or idempotency key."
    ordering = ("-created_at",)
    fields = ("id", "kind", "created_at", "event_count", "last_event_at")
    readonly_fields = fields
    change_form_template = "admin/django_eventlog/log/change_form.html"
    #: events per timeline page
    timeline_page_size = 50
    #: characters of a payload or state field shown, beyond which it is cut
    timeline_payload_limit = 10_000
    #: levels of nesting of a payload or state field shown
    timeline_payload_depth = 20

    def get_queryset(self, request: HttpRequest) -> QuerySet[Log]:
        # The last event by index (contiguous from 0) gives the count and the
        # time of the last event from one index probe per log on the page,
        # where COUNT/MAX over a join would aggregate the whole events table.
        last = Event.objects.filter(log=OuterRef("pk")).order_by("-index")
        logs: QuerySet[Log] = super().get_queryset(request)
        return logs.annotate(
            last_index=Subquery(last.values("index")[:1]),
            last_recorded_at=Subquery(last.values("recorded_at")[:1]),
        )

    @admin.display(description="events")
    def event_count(self, log: Any) -> int:
        return 0 if log.last_index is None else int(log.last_index) + 1

    # Not sortable: ordering by it would run the subquery for every log.
    @admin.display(description="last event")
    def last_event_at(self, log: Any) -> str:
        # Formatted here: the change page shows a method's value as str().
        value = log.last_recorded_at
        return "-" if value is None else formats.localize(timezone.localtime(value))

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[Log], search_term: str
    ) -> tuple[QuerySet[Log], bool]:
        term = search_term.strip()
        if not term:
            return queryset, False
        by_key = Q(pk__in=Event.objects.filter(idempotency_key=term).values("log_id"))
        try:
            return queryset.filter(Q(pk=uuid.UUID(term)) | by_key), False
        except ValueError:
            return queryset.filter(by_key), False

    def render_change_form(
        self,
        request: HttpRequest,
        context: dict[str, Any],
        add: bool = False,
        change: bool = False,
        form_url: str = "",
        obj: Log | None = None,
    ) -> HttpResponse:
        # The log Django's change view already fetched: no second query.
        if obj is not None:
            context.update(self.timeline_context(request, obj))
        return super().render_change_form(request, context, add, change, form_url, obj)

    def history_view(
        self,
        request: HttpRequest,
        object_id: str,
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        """Redirect to the log's timeline: a log never changes, its events
        are its history (the change page offers no "History" button)."""
        log = self.get_object(request, object_id)
        if log is None or not self.has_view_permission(request, log):
            return super().history_view(request, object_id, extra_context)
        url = reverse(
            f"admin:{self.opts.app_label}_{self.opts.model_name}_change",
            args=[log.pk],
            current_app=self.admin_site.name,
        )
        return HttpResponseRedirect(f"{url}#timeline")

    def timeline_context(self, request: HttpRequest, log: Log) -> dict[str, Any]:
        """Return one keyset-paginated page of the log's events."""
        newest_first = request.GET.get("order") == "desc"
        event_type = request.GET.get("type", "")
        show_state = request.GET.get("state") == "1"
        start = _non_negative_int(request.GET.get("from"))
        size = self.timeline_page_size

        using = log._state.db or "default"
        rows = queries.page_rows(
            using,
            log.pk,
            (INDEX_MAX if newest_first else 0) if start is None else start,
            size + 1,
            descending=newest_first,
            type_name=event_type or None,
            # A page of huge payloads costs no more than the part shown.
            payload_chars=payload_chars(self.timeline_payload_limit),
        )
        next_from = rows[size][0] if len(rows) > size else None
        rows = rows[:size]
        previous_from = None
        if rows:
            # The page before this one starts `size` events back, the other way.
            previous_from = queries.previous_page_start(
                using,
                log.pk,
                rows[0][0],
                size,
                descending=newest_first,
                type_name=event_type or None,
            )

        recorded_at = RecordDecoder(using).recorded_at
        limit, depth = self.timeline_payload_limit, self.timeline_payload_depth
        # A correlation id links to the event list, for who may open it
        # (asked once, and only if the page shows a correlation id).
        linked: bool | None = None
        entries = []
        for index, type_name, payload, when, key, *metadata, version in rows:
            actor, correlation, causation, _ = metadata
            url = None
            if correlation is not None:
                if linked is None:
                    linked = self.may_list_events(request)
                if linked:
                    url = correlation_url(correlation, self.admin_site.name)
            entries.append(
                TimelineEntry(
                    index,
                    type_name,
                    recorded_at(when),
                    key,
                    render_payload(payload, limit=limit, depth=depth),
                    actor=actor,
                    correlation_id=correlation,
                    causation_id=causation,
                    correlation_url=url,
                    # From the row: an older version costs no query either.
                    reading=read_now(
                        type_name,
                        version,
                        payload,
                        limit=limit,
                        depth=depth,
                        log_id=log.pk,
                        index=index,
                    ),
                )
            )
        aggregate_class = conf.EVENTLOG_ADMIN_AGGREGATES.get(log.kind)
        state_error = None
        if show_state and aggregate_class is not None and entries:
            try:
                fill_states(log, aggregate_class, entries, limit, depth)
            except Exception as e:
                state_error = f"{type(e).__name__}: {e}"

        def link(**changes: Any) -> str:
            params = {
                "order": "desc" if newest_first else "asc",
                "type": event_type,
                "state": "1" if show_state else "",
                **changes,
            }
            query = urlencode(
                {k: v for k, v in params.items() if v not in ("", None, "asc")}
            )
            return f"?{query}#timeline"

        return {
            "timeline": entries,
            "timeline_newest_first": newest_first,
            "timeline_type": event_type,
            "timeline_types": registered_type_names(),
            "timeline_show_state": show_state,
            # A name: templates would call (instantiate) a class.
            "timeline_aggregate": aggregate_class and aggregate_class.__qualname__,
            "timeline_state_error": state_error,
            "timeline_first_url": link(**{"from": None}),
            "timeline_next_url": None
            if next_from is None
            else link(**{"from": next_from}),
            "timeline_previous_url": (
                None if previous_from is None else link(**{"from": previous_from})
            ),
            "timeline_toggle_order_url": link(
                order="asc" if newest_first else "desc", **{"from": None}
            ),
            "timeline_toggle_state_url": link(state="" if show_state else "1"),
        }

    def may_list_events(self, request: HttpRequest) -> bool:
        """Whether the user may open this site's event list."""
        event_admin = self.admin_site._registry.get(Event)
        return event_admin is not None and event_admin.has_view_permission(request)


def _non_negative_int(value: str | None) -> int | None:
    try:
        number = int(value or "")
    except ValueError:
        return None
    return number if number >= 0 else None


admin.site.register(Log, LogAdmin)
admin.site.register(Event, EventAdmin)
admin.site.register(ProjectionCheckpoint, ProjectionAdmin)
admin.site.register(ProjectionSkip, ProjectionSkipAdmin)
