"""Create (or reset) the demo's local admin user and print its credentials."""

from __future__ import annotations

import secrets
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "Create or reset the local admin user 'admin' with a new random password."

    def handle(self, *args: Any, **options: Any) -> None:
        password = secrets.token_urlsafe(9)
        user, created = get_user_model().objects.get_or_create(
            username="admin", defaults={"email": "admin@localhost"}
        )
        user.is_staff = user.is_superuser = True
        user.set_password(password)
        user.save()
        action = "Created" if created else "Reset"
        self.stdout.write(
            f"{action} the admin user: username admin, password {password}"
        )
