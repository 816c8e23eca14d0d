"""Database routers for django-eventlogs: see "Scaling beyond one machine"."""

from __future__ import annotations

import random
from typing import Any

from django.db import models


class EventLogRouter:
    """Keep django_eventlog's tables (Log and Event) on the "events" database."""

    app_label = "django_eventlog"
    database = "events"

    def db_for_read(self, model: type[models.Model], **hints: Any) -> str | None:
        return self.database if model._meta.app_label == self.app_label else None

    def db_for_write(self, model: type[models.Model], **hints: Any) -> str | None:
        return self.database if model._meta.app_label == self.app_label else None

    def allow_relation(
        self, obj1: models.Model, obj2: models.Model, **hints: Any
    ) -> bool | None:
        labels = {obj1._meta.app_label, obj2._meta.app_label}
        if self.app_label in labels:
            # A log and its events, yes; a log and a row of another database, no.
            return labels == {self.app_label}
        return None

    def allow_migrate(
        self, db: str, app_label: str, model_name: str | None = None, **hints: Any
    ) -> bool | None:
        if app_label == self.app_label:
            return db == self.database
        if db == self.database:
            return False  # no other app's tables on the events database
        return None


class ReadReplicaRouter:
    """Read from a replica, write to the primary ("default")."""

    primary = "default"
    replicas = ["replica"]

    def db_for_read(self, model: type[models.Model], **hints: Any) -> str | None:
        return random.choice(self.replicas)

    def db_for_write(self, model: type[models.Model], **hints: Any) -> str | None:
        return self.primary

    def allow_relation(
        self, obj1: models.Model, obj2: models.Model, **hints: Any
    ) -> bool | None:
        return True  # the primary and its replicas hold the same rows

    def allow_migrate(
        self, db: str, app_label: str, model_name: str | None = None, **hints: Any
    ) -> bool | None:
        return db == self.primary  # replicas get the schema by replication
