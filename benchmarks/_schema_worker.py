"""The child process of ``benchmarks/schema_versions.py``: cold reduces on
request, with whichever ``django_eventlog`` its PYTHONPATH puts first.

``python benchmarks/_schema_worker.py old|new``: ``old`` must find the
library before schema versions (no ``django_eventlog.upcasting``), ``new``
today's, which also registers the upcaster of ``_schema_domain``. It
answers one JSON line on start (where its package lives), then reads
requests from stdin, one JSON object a line, ``{"log": "<uuid>"}``, and
answers each with one line: the seconds ``Log.objects.reduce(log,
Account)`` took, the CPU seconds this process spent in it, and what it
folded, or the library error it raised.

The database comes from the environment, as :func:`configure` reads it.
"""

from __future__ import annotations

import gc
import json
import os
import sys
import time
from pathlib import Path
from typing import Any


def configure() -> None:
    """Set Django up on the benchmark's database, for this process.

    ``EVENTLOG_DB`` (``postgresql``, the default, or ``sqlite``) picks the
    server; PostgreSQL by the libpq variables (``PGDATABASE`` the database),
    SQLite by the file ``EVENTLOG_SQLITE_PATH``. Only ``django_eventlog`` is
    installed, so nothing else in the project runs, and the cache is
    Django's dummy one: every reduce is cold.
    """
    import django
    from django.conf import settings

    vendor = os.environ.get("EVENTLOG_DB", "postgresql")
    if vendor == "postgresql":
        prepared = os.environ.get("EVENTLOG_PG_PREPARE") == "1"
        database: dict[str, Any] = {
            "ENGINE": "django.db.backends.postgresql",
            "HOST": os.environ.get("PGHOST", "127.0.0.1"),
            "PORT": os.environ.get("PGPORT", "5432"),
            "USER": os.environ.get("PGUSER", "postgres"),
            "PASSWORD": os.environ.get("PGPASSWORD", ""),
            "NAME": os.environ.get("PGDATABASE", "eventlog"),
            # As testproject's settings: what docs/performance recommends.
            "OPTIONS": {"server_side_binding": True, "prepare_threshold": 5}
            if prepared
            else {},
        }
    elif vendor == "sqlite":
        database = {
            "ENGINE": "django.db.backends.sqlite3",
            # The parent makes its database under a name of its own.
            "NAME": os.environ.get("EVENTLOG_SQLITE_PATH", ":memory:"),
        }
    else:
        raise SystemExit(
            f"EVENTLOG_DB must be 'postgresql' or 'sqlite', not {vendor!r}"
        )
    settings.configure(
        DEBUG=False,
        INSTALLED_APPS=["django_eventlog"],
        DATABASES={"default": database},
        CACHES={"default": {"BACKEND": "django.core.cache.backends.dummy.DummyCache"}},
        USE_TZ=True,
        TIME_ZONE="UTC",
        DEFAULT_AUTO_FIELD="django.db.models.BigAutoField",
    )
    django.setup()


def reply(answer: dict[str, Any]) -> None:
    print(json.dumps(answer), flush=True)


def strays(package: Path) -> list[str]:
    """The loaded modules of ``django_eventlog`` whose file is not in
    ``package`` (an editable install's finder adds its own for names the
    package lacks)."""
    files = {
        name: getattr(module, "__file__", None)
        for name, module in list(sys.modules.items())
        if name.partition(".")[0] == "django_eventlog"
    }
    return [
        name
        for name, file in files.items()
        if file is not None and not Path(file).is_relative_to(package)
    ]


def main() -> int:
    code = sys.argv[1]
    configure()
    from django.db import connection

    import django_eventlog

    package = Path(django_eventlog.__file__).parent
    # By the file, not by import: an editable install's finder would find
    # today's module for the old package too.
    versioned = (package / "upcasting.py").exists()
    if versioned != (code == "new"):
        # The PYTHONPATH did not put the expected library first.
        reply({"error": f"{code}: found {package}"})
        return 1
    if code == "new":
        from _schema_domain import register_upcaster

        register_upcaster()
    from _schema_domain import Account

    from django_eventlog import EventLogError, Log

    if strays(package):
        reply({"error": f"{code}: modules not from {package}: {strays(package)}"})
        return 1
    reply({"package": str(package)})
    for line in sys.stdin:
        log_id = json.loads(line)["log"]
        # Each reduce starts with no garbage left by the one before.
        gc.collect()
        start, cpu = time.perf_counter(), time.process_time()
        try:
            reduction = Log.objects.reduce(log_id, Account)
        except EventLogError as e:
            reply({"error": f"{type(e).__name__}: {e}"})
            continue
        seconds = time.perf_counter() - start
        cpu = time.process_time() - cpu
        account = reduction.aggregate
        reply(
            {
                "seconds": seconds,
                "cpu": cpu,
                "balance": account.balance,
                "count": account.count,
                "next_index": reduction.next_index,
            }
        )
    connection.close()
    # Modules imported on the way count too: exit non-zero for the parent.
    return 1 if strays(package) else 0


if __name__ == "__main__":
    sys.exit(main())
