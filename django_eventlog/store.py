"""The manager behind ``Log.objects``: create, append, transact, reduce, load,
feed.

:class:`BaseLogManager` puts together the read methods
(:mod:`~django_eventlog.reads`), the write methods
(:mod:`~django_eventlog.writes`), the decide loop
(:mod:`~django_eventlog.transact`) and the global feed
(:mod:`~django_eventlog.feed`), each in a module of its own.
"""

from __future__ import annotations

from typing import TypeVar

from django.db import models

from .feed import LogFeed
from .transact import LogTransactions

__all__ = ["BaseLogManager"]

M = TypeVar("M", bound=models.Model)


class BaseLogManager(LogTransactions[M], LogFeed[M]):
    """Create, append to, transact on, reduce and page through logs; read the
    feed of all of them.

    The methods of ``Log.objects`` (:class:`~django_eventlog.LogManager`, this
    class bound to the ``Log`` model). Writes go to
    ``router.db_for_write(Event)`` and reads to ``router.db_for_read(Event)``
    unless the manager is bound to a database with
    ``Log.objects.db_manager(alias)``.
    """
