"""Databases added at run time, for the tests that need a second alias."""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from django.db import connections


@contextmanager
def database_alias(alias: str, **changes: Any) -> Iterator[dict[str, Any]]:
    """DATABASES[alias]: a copy of "default" with ``changes``, for the test."""
    config = copy.deepcopy(connections["default"].settings_dict)
    config.update(changes)
    connections.settings[alias] = config
    try:
        # Connected now: Django's test case refuses to open a connection to
        # an alias it was not told about, but lets an open one be used.
        connections[alias].connect()
        yield config
    finally:
        connections[alias].close()
        with contextlib.suppress(AttributeError):  # never opened in this thread
            del connections[alias]
        del connections.settings[alias]
