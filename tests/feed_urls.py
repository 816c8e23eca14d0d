"""Feed views for tests/test_http_feed.py (selected with ``pytest.mark.urls``)."""

from __future__ import annotations

from django.urls import path

from django_eventlog import http
from tests.domain import Deposited

urlpatterns = [
    path("feed/", http.feed_view()),
    path("accounts/", http.feed_view(kinds=["account", "savings"])),
    path("deposits/", http.feed_view(types=[Deposited])),
    path("small/", http.feed_view(page_size=2)),
    path("logs/", http.feed_view(permission="django_eventlog.view_log")),
    # Open to anyone: only behind the project's own access control.
    path("open/", http.feed_view(permission=None)),
]
