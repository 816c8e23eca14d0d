"""A project's own AdminSite with subclasses of the eventlog admins.

tests/test_admin.py selects this urlconf with ``pytest.mark.urls``. The
default site stays mounted too, at ``admin/``, as in the test project.
"""

from __future__ import annotations

from django.contrib import admin
from django.urls import path

from django_eventlog.admin import EventAdmin, LogAdmin
from django_eventlog.models import Event, Log

#: timeline page size of the custom site's log admin
CUSTOM_TIMELINE_PAGE_SIZE = 3


class ShortTimelineLogAdmin(LogAdmin):
    timeline_page_size = CUSTOM_TIMELINE_PAGE_SIZE


class ProjectEventAdmin(EventAdmin):
    pass


custom_site = admin.AdminSite(name="custom")
custom_site.register(Log, ShortTimelineLogAdmin)
custom_site.register(Event, ProjectEventAdmin)

urlpatterns = [
    path("admin/", admin.site.urls),
    path("custom-admin/", custom_site.urls),
]
