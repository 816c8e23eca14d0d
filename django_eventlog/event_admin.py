"""The read-only event list: every log's events, newest first, with who
wrote each and the request it belongs to.

Its filters stay cheap on a table of millions of events: by time (a range
of ``recorded_at``), by correlation id (the partial index
``django_eventlog_corr_idx``) and by actor (a bounded window of event ids:
actors are not indexed). :mod:`django_eventlog.admin` registers
``EventAdmin`` and re-exports it.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.contrib.admin.options import IncorrectLookupParameters
from django.contrib.admin.views.main import ChangeList
from django.db.models import Model, Q, QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.utils.html import format_html

from .admin_base import (
    CORRELATION_PARAMETER,
    ReadOnlyAdmin,
    correlation_url,
    timeline_url,
)
from .models import Event

__all__ = ["ActorListFilter", "CorrelationListFilter", "EventAdmin"]


class CorrelationListFilter(admin.SimpleListFilter):
    """The events of one correlation id, in every log (``?correlation_id=``).

    Read through the partial index on ``correlation_id``: a page and its
    count cost what that correlation's events cost, however many others
    the table holds. Shown in the sidebar only while it filters.
    """

    title = "correlation id"
    parameter_name = CORRELATION_PARAMETER

    def lookups(
        self,
        request: HttpRequest,
        model_admin: admin.ModelAdmin,  # type: ignore[type-arg]
    ) -> list[tuple[str, str]]:
        value = self.value()
        return [] if value is None else [(value, value)]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        value = self.value()
        return queryset if value is None else queryset.filter(correlation_id=value)


class ActorListFilter(admin.SimpleListFilter):
    """The events of one actor (``?actor=``), among at most ``window``
    consecutive event ids.

    ``actor`` has no index, so an unbounded ``WHERE actor = ...`` would read
    the whole table for the page and again for its count. The filter reads
    the ids below ``?actor_before=<id>`` (the newest by default) down to
    ``window`` fewer: one range of the primary key. "Older events" moves
    the window back. The actors offered are those of the ``recent`` newest
    events (one query of that many rows), at most ``limit`` of them.
    """

    title = "actor"
    parameter_name = "actor"
    #: the parameter of the window's end: the first id above it
    before_parameter = "actor_before"
    #: the newest events whose actors are offered
    recent = 1_000
    #: the most actors offered
    limit = 50
    #: the most event ids one filtered page reads
    window = 100_000

    def __init__(
        self,
        request: HttpRequest,
        params: dict[str, Any],
        model: type[Model],
        model_admin: admin.ModelAdmin,  # type: ignore[type-arg]
    ) -> None:
        # Read before SimpleListFilter's own, which calls lookups().
        self.before: int | None = None
        self.newest = 0
        if self.before_parameter in params:
            value = params.pop(self.before_parameter)
            # A list on Django 5.0 and later, the last value before.
            self.before = _positive_int(value[-1] if isinstance(value, list) else value)
        super().__init__(request, params, model, model_admin)
        if self.value() is not None:
            low, high = self.ids()
            self.title = f"actor (ids {low:,} to {high - 1:,})"

    def lookups(
        self,
        request: HttpRequest,
        model_admin: admin.ModelAdmin,  # type: ignore[type-arg]
    ) -> list[tuple[str, str]]:
        recent = list(
            model_admin.model._default_manager.order_by("-pk").values_list(
                "pk", "actor"
            )[: self.recent]
        )
        self.newest = recent[0][0] if recent else 0
        actors = sorted({actor for _, actor in recent if actor is not None})
        actors = actors[: self.limit]
        value = self.value()
        if value is not None and value not in actors:
            actors.append(value)
        return [(actor, actor) for actor in actors]

    def ids(self) -> tuple[int, int]:
        """The window of ids searched: from the first, up to the second."""
        high = self.newest + 1 if self.before is None else self.before
        return max(high - self.window, 1), high

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        value = self.value()
        if value is None:
            return queryset
        low, high = self.ids()
        return queryset.filter(actor=value, pk__gte=low, pk__lt=high)

    def choices(self, changelist: ChangeList) -> Any:
        # No facets (ReadOnlyAdmin turns them off); a new actor starts from
        # the newest events again.
        name, before = self.parameter_name, self.before_parameter
        yield {
            "selected": self.value() is None,
            "query_string": changelist.get_query_string(remove=[name, before]),
            "display": "All",
        }
        for lookup, title in self.lookup_choices:
            yield {
                "selected": self.value() == lookup,
                "query_string": changelist.get_query_string(
                    {name: lookup}, remove=[before]
                ),
                "display": title,
            }
        if self.value() is None:
            return
        low, high = self.ids()
        if self.before is not None and high <= self.newest:
            newer = high + self.window
            yield {
                "selected": False,
                "query_string": (
                    changelist.get_query_string(remove=[before])
                    if newer > self.newest
                    else changelist.get_query_string({before: newer})
                ),
                "display": f"Newer events (ids from {high:,})",
            }
        if low > 1:
            yield {
                "selected": False,
                "query_string": changelist.get_query_string({before: low}),
                "display": f"Older events (ids below {low:,})",
            }


#: The largest id a BigAutoField holds.
_ID_MAX = 2**63 - 1


def _positive_int(value: str) -> int:
    """An event id given as a parameter; ``IncorrectLookupParameters`` (the
    list's "?e=1" page) for anything else."""
    try:
        number = int(value)
    except ValueError:
        number = 0
    if not 1 <= number <= _ID_MAX:
        raise IncorrectLookupParameters(f"actor_before must be an event id: {value!r}")
    return number


class EventAdmin(ReadOnlyAdmin):
    """Events across logs: search by type or idempotency key, filter by
    correlation id, actor and time."""

    list_display = (
        "id",
        "timeline_link",
        "index",
        "type",
        "recorded_at",
        "actor",
        "correlation_link",
        "idempotency_key",
    )
    list_display_links = None
    # Not by actor or correlation id: either would sort the whole table.
    sortable_by = ("id", "index", "type", "recorded_at", "idempotency_key")
    list_filter = (
        CorrelationListFilter,
        ActorListFilter,
        ("recorded_at", admin.DateFieldListFilter),
    )
    search_fields = ("=type", "=idempotency_key")
    search_help_text = (
        "An exact event type or idempotency key. Any time range: "
        "?recorded_at__gte=2026-01-01T00:00Z&recorded_at__lt=2026-02-01T00:00Z"
    )
    ordering = ("-id",)

    def get_queryset(self, request: HttpRequest) -> QuerySet[Event]:
        # The list shows no payload nor extra: a page of large ones would
        # cost the database, the network and memory for nothing.
        return super().get_queryset(request).defer("payload", "extra")

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[Event], search_term: str
    ) -> tuple[QuerySet[Event], bool]:
        term = search_term.strip()
        if not term:
            return queryset, False
        return queryset.filter(Q(type=term) | Q(idempotency_key=term)), False

    @admin.display(description="log")
    def timeline_link(self, event: Event) -> str:
        url = timeline_url(event.log_id, event.index, self.admin_site.name)
        return format_html('<a href="{}">{}</a>', url, event.log_id)

    @admin.display(description="correlation id")
    def correlation_link(self, event: Event) -> str:
        correlation = event.correlation_id
        if correlation is None:
            return self.get_empty_value_display()
        url = correlation_url(correlation, self.admin_site.name)
        return format_html('<a href="{}">{}</a>', url, correlation)

    def change_view(
        self,
        request: HttpRequest,
        object_id: str,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        event = self.get_object(request, object_id)
        if (
            event is None
            or request.method == "POST"
            or not self.has_view_permission(request, event)
        ):
            return super().change_view(request, object_id, form_url, extra_context)
        return HttpResponseRedirect(
            timeline_url(event.log_id, event.index, self.admin_site.name)
        )
