"""How a cached reduction is stored: one msgpack entry per (aggregate, log).

An entry names the aggregate, its version and the log, so an entry that
reaches the wrong key, or outlives a change of the aggregate's shape, is
refused rather than trusted.

Internal to the package (:mod:`django_eventlog.caching` is its only user):
``encode`` and ``decode``, and ``BadEntry``, which ``decode`` raises.
"""

from __future__ import annotations

import logging
import uuid
from datetime import datetime
from typing import Any, TypeVar

import msgspec

from .aggregates import Aggregate, Reduction

__all__ = ["BadEntry", "decode", "encode"]

logger = logging.getLogger("django_eventlog")

A = TypeVar("A", bound=Aggregate)


class _Entry(msgspec.Struct, array_like=True, frozen=True):
    name: str
    version: int
    log_id: uuid.UUID
    through_index: int
    reduced_at: datetime
    log_created_at: datetime | None
    aggregate: msgspec.Raw


_encoder = msgspec.msgpack.Encoder()
_entry_decoder = msgspec.msgpack.Decoder(_Entry)
_aggregate_decoders: dict[type[Any], msgspec.msgpack.Decoder[Any]] = {}
_uncacheable_warned: set[type[Aggregate]] = set()


def _aggregate_decoder(cls: type[A]) -> msgspec.msgpack.Decoder[A]:
    decoder = _aggregate_decoders.get(cls)
    if decoder is None:
        decoder = _aggregate_decoders[cls] = msgspec.msgpack.Decoder(cls)
    return decoder


class BadEntry(Exception):
    """A cache entry that cannot stand for the reduction asked for."""


def decode(data: object, aggregate_class: type[A], log_id: uuid.UUID) -> Reduction[A]:
    """Return the reduction an entry holds, or raise :class:`BadEntry`."""
    try:
        if not isinstance(data, bytes):
            raise BadEntry(f"an entry of type {type(data).__name__}, not bytes")
        entry = _entry_decoder.decode(data)
        if (entry.name, entry.version, entry.log_id) != (
            aggregate_class.aggregate_name,
            aggregate_class.version,
            log_id,
        ):
            raise BadEntry(f"an entry of {entry.name} v{entry.version} {entry.log_id}")
        aggregate = _aggregate_decoder(aggregate_class).decode(entry.aggregate)
    except Exception as e:  # msgspec, or the aggregate's own __post_init__
        raise BadEntry(str(e)) from e
    return Reduction(
        log_id, aggregate, entry.through_index, entry.reduced_at, entry.log_created_at
    )


def encode(reduction: Reduction[A], aggregate_class: type[A]) -> bytes | None:
    """Encode a reduction, or return None when its aggregate cannot round-trip."""
    aggregate = reduction.aggregate
    try:
        state = _encoder.encode(aggregate)
        exact = _aggregate_decoder(aggregate_class).decode(state) == aggregate
    except Exception as e:  # msgspec, or the aggregate's own __post_init__
        exact, reason = False, str(e)
    else:
        reason = "it does not decode back to an equal state"
    if not exact:
        if aggregate_class not in _uncacheable_warned:
            _uncacheable_warned.add(aggregate_class)
            logger.warning(
                "%s reductions are not cached: %s. Make the aggregate a dataclass "
                "with typed fields, or set cache_policy = NeverCache().",
                aggregate_class.__qualname__,
                reason,
            )
        return None
    entry = _Entry(
        aggregate_class.aggregate_name,
        aggregate_class.version,
        reduction.log_id,
        reduction.through_index,
        reduction.reduced_at,
        reduction.log_created_at,
        msgspec.Raw(state),
    )
    try:
        return _encoder.encode(entry)
    except Exception as e:  # say, an aggregate_name msgpack cannot hold
        logger.warning(
            "%s reductions are not cached: %r", aggregate_class.__qualname__, e
        )
        return None
