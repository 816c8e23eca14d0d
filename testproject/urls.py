from django.contrib import admin
from django.urls import include, path, re_path

from testproject.payments.views import api_fallback

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/payments/", include("testproject.payments.urls")),
    # Last: every other path under api/ answers JSON, never Django's HTML 404
    # or APPEND_SLASH's redirect (see api_fallback).
    re_path(r"^api(?:/.*)?$", api_fallback),
]
