"""What every admin of the package shares: the read-only base, the
estimated count, the link to an event's place in its log's timeline and
the link to every event of one correlation id.

Users import ``ReadOnlyAdmin`` and ``EstimatedCountPaginator`` from
:mod:`django_eventlog.admin`, which re-exports them.
"""

from __future__ import annotations

import uuid
from functools import cached_property
from typing import Any
from urllib.parse import urlencode

from django.contrib import admin
from django.contrib.auth import get_permission_codename
from django.core.paginator import Paginator
from django.db import connections
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest
from django.urls import reverse

__all__ = [
    "CORRELATION_PARAMETER",
    "EstimatedCountPaginator",
    "ReadOnlyAdmin",
    "correlation_url",
    "timeline_url",
]

#: The event list's query parameter for one correlation id.
CORRELATION_PARAMETER = "correlation_id"


class EstimatedCountPaginator(Paginator):  # type: ignore[type-arg]
    """Count an unfiltered PostgreSQL table from its statistics, not COUNT(*).

    The admin counts rows on every page load; on a table of millions of
    events that count costs more than the page.
    """

    @cached_property
    def count(self) -> int:
        query = self.object_list
        if (
            isinstance(query, QuerySet)
            and not query.query.where
            and connections[query.db].vendor == "postgresql"
        ):
            with connections[query.db].cursor() as cursor:
                cursor.execute(
                    "SELECT reltuples::bigint FROM pg_class WHERE oid = %s::regclass",
                    [query.model._meta.db_table],
                )
                row = cursor.fetchone()
            # -1 (never analyzed) or a small table: count for real.
            if row is not None and row[0] > 10_000:
                return int(row[0])
        return super().count


class ReadOnlyAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    """No add, change or delete, for superusers too; viewing needs view permission."""

    show_full_result_count = False
    paginator = EstimatedCountPaginator
    # Delete is the only built-in action; with no delete permission there
    # is none, and no action column either.
    actions = None
    if hasattr(admin, "ShowFacets"):  # Django 5.0+
        # Facet counts would scan the whole events table on every page.
        show_facets = admin.ShowFacets.NEVER

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        codename = get_permission_codename("view", self.opts)
        return request.user.has_perm(f"{self.opts.app_label}.{codename}")

    # A NUL in a filter or a search would reach PostgreSQL, which refuses it
    # in text (a 500); no stored kind, type or key can hold one.
    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        if _has_nul(request):
            return HttpResponseBadRequest("NUL characters are not allowed.")
        return super().changelist_view(request, extra_context)

    def changeform_view(
        self,
        request: HttpRequest,
        object_id: str | None = None,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        if _has_nul(request):
            return HttpResponseBadRequest("NUL characters are not allowed.")
        return super().changeform_view(request, object_id, form_url, extra_context)


def _has_nul(request: HttpRequest) -> bool:
    return any(
        "\x00" in key or any("\x00" in value for value in values)
        for key, values in request.GET.lists()
    )


def timeline_url(log_id: uuid.UUID, index: int, site: str) -> str:
    """The URL of event ``index`` of log ``log_id`` in its timeline, on the
    admin site named ``site``: the timeline page starting at that event,
    scrolled to it."""
    url = reverse("admin:django_eventlog_log_change", args=[log_id], current_app=site)
    return f"{url}?from={index}#event-{index}"


def correlation_url(correlation_id: str, site: str) -> str:
    """The URL of the event list of the admin site named ``site``, filtered
    to the events of ``correlation_id``, in every log."""
    url = reverse("admin:django_eventlog_event_changelist", current_app=site)
    return f"{url}?{urlencode({CORRELATION_PARAMETER: correlation_id})}"
