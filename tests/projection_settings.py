"""Settings of the processes the projection tests start (runners, writers):
``tests.settings`` with the projections and retry delay the test chose, in
environment variables.

``EVENTLOG_TEST_PROJECTIONS``: dotted paths, comma-separated.
``EVENTLOG_TEST_RETRY_DELAY``: seconds before the first retry (0.05).
"""

from __future__ import annotations

import os

from tests.settings import *  # noqa: F403
from tests.settings import DATABASES

EVENTLOG_PROJECTIONS = [
    path for path in os.environ.get("EVENTLOG_TEST_PROJECTIONS", "").split(",") if path
]
EVENTLOG_PROJECTION_RETRY_DELAY = float(
    os.environ.get("EVENTLOG_TEST_RETRY_DELAY", "0.05")
)
EVENTLOG_PROJECTION_POLL_INTERVAL = 0.05

if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Writer processes and a runner at once: each transaction takes SQLite's
    # write lock when it begins, waiting for it (up to 20 s), rather than
    # failing at once with "database is locked" when a deferred transaction
    # that has read cannot upgrade to writing.
    # (OPTIONS["transaction_mode"] would do, but only from Django 5.1.)
    DATABASES["default"]["ENGINE"] = "tests.sqlite_immediate"
    DATABASES["default"]["OPTIONS"] = {"timeout": 20}
