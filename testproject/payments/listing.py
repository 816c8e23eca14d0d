"""GET /api/payments/: the payments, from the read model, page by page.

``?status=authorized`` keeps one status, ``?limit=`` sets the page size,
``?after=`` continues after a page (take it from the page's ``next`` link).
Pages follow ``(created_at, payment id)``, oldest first: a keyset, so a page
costs one indexed query wherever it starts, and a payment is never shown
twice nor left out because others were created meanwhile.

The list is read from ``PaymentSummary``, which the projection
``PaymentSummaries`` keeps: it shows the payments as of the events the
runner has handled, a moment behind the logs. ``GET /api/payments/<id>/``
reads the log itself.
"""

from __future__ import annotations

import datetime
import re
import uuid
from typing import Any
from urllib.parse import urlencode

from django.db.models import Q
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.urls import reverse

from django_eventlog import http

from .models import PaymentSummary

PAGE_SIZE = 50
MAX_PAGE_SIZE = 200

# "<microseconds since the epoch>.<payment id as 32 hex digits>"
_CURSOR = re.compile(r"([0-9]{1,18})\.([0-9a-f]{32})")
_LIMIT = re.compile(r"[0-9]{1,10}")
_EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)


def payment_list(request: HttpRequest) -> HttpResponse:
    """A page of payment summaries and the ``next`` page's link (or null)."""
    status = _one(request, "status")
    if status is not None and status not in PaymentSummary.Status.values:
        raise http.BadRequest(
            f"status must be one of {', '.join(PaymentSummary.Status.values)}."
        )
    limit = _limit(request)
    summaries = PaymentSummary.objects.order_by("created_at", "payment_id")
    if status is not None:
        summaries = summaries.filter(status=status)
    after = _one(request, "after")
    if after is not None:
        created_at, payment_id = _parse_cursor(after)
        summaries = summaries.filter(
            Q(created_at__gt=created_at)
            | Q(created_at=created_at, payment_id__gt=payment_id)
        )
    # One more than the page tells whether a next page exists.
    page = list(summaries[: limit + 1])
    next_url = None
    if len(page) > limit:
        query = {"after": cursor(page[limit - 1]), "limit": str(limit)}
        if status is not None:
            query["status"] = status
        next_url = f"{request.path}?{urlencode(query)}"
    return JsonResponse(
        {"payments": [_summary(s) for s in page[:limit]], "next": next_url}
    )


def cursor(summary: PaymentSummary) -> str:
    """The ``after`` value of the page that follows ``summary``."""
    micros = (summary.created_at - _EPOCH) // datetime.timedelta(microseconds=1)
    return f"{micros}.{summary.payment_id.hex}"


def _parse_cursor(raw: str) -> tuple[datetime.datetime, uuid.UUID]:
    match = _CURSOR.fullmatch(raw)
    if match is None:
        raise http.BadRequest("after must be taken from a page's next link.")
    created_at = _EPOCH + datetime.timedelta(microseconds=int(match[1]))
    return created_at, uuid.UUID(hex=match[2])


def _one(request: HttpRequest, name: str) -> str | None:
    values = request.GET.getlist(name)
    if len(values) > 1:
        raise http.BadRequest(f"{name} must be given once, not {len(values)} times.")
    return values[0] if values else None


def _limit(request: HttpRequest) -> int:
    raw = _one(request, "limit")
    if raw is None:
        return PAGE_SIZE
    if not _LIMIT.fullmatch(raw) or not 1 <= int(raw) <= MAX_PAGE_SIZE:
        raise http.BadRequest(f"limit must be an integer from 1 to {MAX_PAGE_SIZE}.")
    return int(raw)


def _summary(summary: PaymentSummary) -> dict[str, Any]:
    return {
        "id": str(summary.payment_id),
        "status": summary.status,
        "amount_requested": summary.amount_requested,
        "amount_approved": summary.amount_approved,
        "amount_captured": summary.amount_captured,
        "amount_refunded": summary.amount_refunded,
        "currency": summary.currency,
        "created_at": summary.created_at.isoformat(),
        "updated_at": summary.updated_at.isoformat(),
        "events": summary.last_index + 1,
        "links": {"self": reverse("payment", args=[summary.payment_id])},
    }
