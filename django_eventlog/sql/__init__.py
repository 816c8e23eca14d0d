"""All SQL text of the library, and nothing else.

- :mod:`~django_eventlog.sql.events`: writing events and reading one log's
  (:class:`Statements`, built once per database alias).
- :mod:`~django_eventlog.sql.catalog`: the store as a whole: the kinds and
  type names stored, the triggers installed (:class:`CatalogStatements`).
- :mod:`~django_eventlog.sql.feed`: the global feed across logs and what
  holds it back (:class:`FeedStatements`).
- :mod:`~django_eventlog.sql.checkpoints`: a projection's checkpoint, read
  and moved by each batch (:class:`CheckpointStatements`).
- :mod:`~django_eventlog.sql.locks`: the projections' advisory locks
  (PostgreSQL).
- :mod:`~django_eventlog.sql.per_alias`: :class:`PerAlias`, which builds
  each set of statements once per database alias.

:mod:`django_eventlog.queries`, :mod:`django_eventlog.feed_queries` and
:mod:`django_eventlog.checkpoint_queries` run them on a plain cursor,
:mod:`django_eventlog.projection_locks` the locks. Internal to the
package: import the public API from ``django_eventlog``.
"""

from .catalog import CatalogStatements, catalog_statements
from .checkpoints import CheckpointStatements, checkpoint_statements
from .events import (
    LOG_INDEX_CONSTRAINT,
    NO_GAP,
    EncodedEvent,
    Row,
    Statements,
    db_uuid,
    refused_as_gap,
    statements,
    violated_constraint,
)
from .feed import FeedRow, FeedStatements, feed_statements
from .locks import LOCK_HOLDERS, LOCK_NAMESPACE, TRY_LOCK, UNLOCK

__all__ = [
    "LOCK_HOLDERS",
    "LOCK_NAMESPACE",
    "LOG_INDEX_CONSTRAINT",
    "NO_GAP",
    "TRY_LOCK",
    "UNLOCK",
    "CatalogStatements",
    "CheckpointStatements",
    "EncodedEvent",
    "FeedRow",
    "FeedStatements",
    "Row",
    "Statements",
    "catalog_statements",
    "checkpoint_statements",
    "db_uuid",
    "feed_statements",
    "refused_as_gap",
    "statements",
    "violated_constraint",
]
