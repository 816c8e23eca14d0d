"""The admin's timeline on a log where the length is the point.

tests/test_admin.py pages through a log of a few hundred events; here the
same walk runs on 100,000 events on PostgreSQL (20,000 on SQLite, to keep
its run short), built with bulk_create in about 3 s on either database.
"""

from __future__ import annotations

import pytest
from django.test import Client

from tests.conftest import ON_POSTGRESQL
from tests.test_admin import pages_by_keyset

pytestmark = pytest.mark.django_db

VERY_LONG_LOG_LENGTH = 100_000 if ON_POSTGRESQL else 20_000


def test_a_very_long_log_pages_by_keyset(admin_client: Client) -> None:
    pages_by_keyset(admin_client, VERY_LONG_LOG_LENGTH)
