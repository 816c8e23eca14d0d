"""Settings of the demo project; also what the test suite runs on.

``EVENTLOG_DB=postgresql`` switches from SQLite to PostgreSQL, configured by
the standard libpq variables PGHOST, PGPORT, PGUSER, PGPASSWORD, PGDATABASE.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

BASE_DIR = Path(__file__).resolve().parent.parent

SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "insecure-demo-key-do-not-use")
DEBUG = os.environ.get("DJANGO_DEBUG", "1") == "1"
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_eventlog",
    "testproject.payments",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    # Every event a request writes records who made it (the signed-in user)
    # and which request it was (X-Correlation-ID, echoed in the response).
    "django_eventlog.middleware.EventContextMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]

ROOT_URLCONF = "testproject.urls"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ]
        },
    }
]


def _postgresql_options() -> dict[str, Any]:
    # EVENTLOG_PG_PREPARE=1: server-side binding with prepared statements, the
    # set-up the performance docs recommend (psycopg 3 only).
    if os.environ.get("EVENTLOG_PG_PREPARE") == "1":
        return {"server_side_binding": True, "prepare_threshold": 5}
    return {}


def _database() -> dict[str, Any]:
    engine = os.environ.get("EVENTLOG_DB", "sqlite")
    if engine == "sqlite":
        return {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": os.environ.get("EVENTLOG_SQLITE_PATH", BASE_DIR / "db.sqlite3"),
        }
    if engine == "postgresql":
        return {
            "ENGINE": "django.db.backends.postgresql",
            "HOST": os.environ.get("PGHOST", "127.0.0.1"),
            "PORT": os.environ.get("PGPORT", "5432"),
            "USER": os.environ.get("PGUSER", "postgres"),
            "PASSWORD": os.environ.get("PGPASSWORD", ""),
            "NAME": os.environ.get("PGDATABASE", "eventlog"),
            "OPTIONS": _postgresql_options(),
        }
    raise ValueError(f"EVENTLOG_DB must be 'sqlite' or 'postgresql', not {engine!r}")


DATABASES = {"default": _database()}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

USE_TZ = True
TIME_ZONE = "UTC"
LANGUAGE_CODE = "en-us"
STATIC_URL = "static/"


def _cache() -> dict[str, Any]:
    url = os.environ.get("REDIS_URL")
    if not url:
        return {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}
    return {
        "BACKEND": "django_redis.cache.RedisCache",
        "LOCATION": url,
        # Fail fast when Redis is down: a cache miss costs less than a wait.
        "OPTIONS": {"SOCKET_CONNECT_TIMEOUT": 0.5, "SOCKET_TIMEOUT": 0.5},
    }


# Cached reductions live in Redis when REDIS_URL is set, else in process memory.
CACHES = {"default": _cache()}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "loggers": {
        "django_eventlog": {"handlers": ["console"], "level": "WARNING"},
        # Server errors with their tracebacks, with DEBUG off too (Django's
        # default sends them only to ADMINS by mail, which the demo has not).
        "django.request": {
            "handlers": ["console"],
            "level": "ERROR",
            "propagate": False,
        },
    },
}

# The admin timeline shows a payment's state after each of its events.
EVENTLOG_ADMIN_AGGREGATES = {"payment": "testproject.payments.events.Payment"}

# The read side: the payments list's read model, and the subscriber that
# authorizes a payment whose create died before the gateway's decision.
# `python manage.py eventlog_projections run` runs them (make demo does);
# nothing else does, so tests that do not call catch_up() never see them.
EVENTLOG_PROJECTIONS = [
    "testproject.payments.projections.PaymentSummaries",
    "testproject.payments.projections.PaymentAuthorizer",
]

# `manage.py test`: Django's runner, letting test databases be flushed (the
# store's triggers refuse it otherwise; see docs/testing.md).
TEST_RUNNER = "django_eventlog.testing.runner.DiscoverRunner"
