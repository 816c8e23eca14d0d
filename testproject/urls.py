from django.contrib import admin
from django.urls import include, path, re_path

from django_eventlog import http
from testproject.payments.views import api_fallback

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/payments/", include("testproject.payments.urls")),
    # Every payment event, in feed order, for another service to follow: for
    # users with django_eventlog.view_event (the demo's admin user, signed in
    # at /admin/, has every permission).
    path("api/feed/", http.feed_view(kinds=["payment"]), name="feed"),
    # Last: every other path under api/ answers JSON, never Django's HTML 404
    # or APPEND_SLASH's redirect (see api_fallback).
    re_path(r"^api(?:/.*)?$", api_fallback),
]
