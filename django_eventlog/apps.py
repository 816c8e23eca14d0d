from __future__ import annotations

from django.apps import AppConfig
from django.core import checks
from django.db.backends.signals import connection_created


class EventLogConfig(AppConfig):
    name = "django_eventlog"
    verbose_name = "Event logs"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django.db import connections

        from .checks import check_settings
        from .triggers import register_sqlite_guard

        checks.register(check_settings)
        connection_created.connect(
            register_sqlite_guard, dispatch_uid="django_eventlog.sqlite_guard"
        )
        # Connections opened before this app was ready get the guard too.
        for connection in connections.all(initialized_only=True):
            if connection.connection is not None:
                register_sqlite_guard(self, connection)
