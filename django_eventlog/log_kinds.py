"""The kinds of the logs a page of the feed names, read once per process.

The feed's records carry their log's kind. A page reads its events alone and
then the kinds of the logs it names that this process has not seen yet, in
one query: a log's kind never changes and a log is never deleted (the
database refuses both, migration 0005), so a kind read once from a
committed log holds for good. Reading the kind with each event instead (a
subquery per row) cost a catch-up about 2 us an event.

Only kinds read where every row seen is committed are kept: the caller says
so (``keep``): outside a transaction, or at the start of a transaction that
has written nothing yet. A transaction that created a log and then rolls
back could otherwise leave a kind behind for an id that another log may
take later. At most :data:`KEPT` logs are kept per database alias; past
that the cache starts over. The test helpers' ``flush`` empties it
(:func:`forget`), since a flushed test database may reuse a log id.

Internal to the package: import the public API from ``django_eventlog``.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from . import feed_queries
from .exceptions import LogNotFound
from .sql import FeedRow

__all__ = ["KEPT", "forget", "kinds_of"]

#: The most logs whose kinds are kept per database alias (about 200 bytes
#: each).
KEPT = 65_536

#: Per database alias: log id (as the driver returns it) -> kind.
_known: dict[str, dict[Any, str]] = {}


def kinds_of(using: str, rows: Sequence[FeedRow], *, keep: bool) -> Mapping[Any, str]:
    """The kind of the log of each of ``rows``, by log id as in the rows.

    ``keep``: every row seen is committed (see the module's docstring), so
    the kinds read may be kept for the next pages. ``LogNotFound`` if a log
    is gone (the tables were emptied while the page was read).
    """
    known = _known.setdefault(using, {})
    page: dict[Any, str] = {}
    missing: list[Any] = []
    for log_id in {row[2] for row in rows}:
        kind = known.get(log_id)
        if kind is None:
            missing.append(log_id)
        else:
            page[log_id] = kind
    if not missing:
        return page
    found = dict(feed_queries.kinds(using, missing))
    for log_id in missing:
        kind = found.get(log_id)
        if kind is None:
            raise LogNotFound(
                log_id if isinstance(log_id, uuid.UUID) else uuid.UUID(log_id)
            )
        page[log_id] = kind
    if keep and len(found) <= KEPT:
        if len(known) + len(found) > KEPT:
            known.clear()
        known.update(found)
    return page


def forget() -> None:
    """Forget every kind read (after the tables were emptied)."""
    _known.clear()
