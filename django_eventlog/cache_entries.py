"""How a cached reduction is stored: one msgpack entry per (aggregate, log).

An entry names the aggregate, its version and the log, so an entry that
reaches the wrong key, or outlives a change of the aggregate's shape, is
refused rather than trusted.

Internal to the package (:mod:`django_eventlog.caching` is its user):
``encode`` and ``decode``, and ``BadEntry``, which ``decode`` raises;
``why_uncacheable``, which :mod:`django_eventlog.checks` asks.
"""

from __future__ import annotations

import logging
import uuid
from datetime import datetime, timezone
from typing import Any, TypeVar

import msgspec

from .aggregates import Aggregate, Reduction

__all__ = ["BadEntry", "decode", "encode", "why_uncacheable"]

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
    encoded = _encoded(reduction, aggregate_class)
    if isinstance(encoded, bytes):
        return encoded
    if aggregate_class not in _uncacheable_warned:
        _uncacheable_warned.add(aggregate_class)
        logger.warning(
            "%s reductions are not cached: %s. Make the aggregate a dataclass "
            "with typed fields, or set cache_policy = NeverCache().",
            aggregate_class.__qualname__,
            encoded,
        )
    return None


def why_uncacheable(aggregate_class: type[Aggregate]) -> str | None:
    """Why reductions of ``aggregate_class`` can never be cached, or None.

    Puts a new ``aggregate_class()`` through the test :func:`encode` runs on
    every reduction it is asked to cache (the system check ``W001`` asks).
    """
    try:
        aggregate = aggregate_class()
    except Exception as e:  # TypeError, or whatever its __init__ raises
        return f"it cannot be created without arguments ({e!r})"
    now = datetime.now(timezone.utc)
    encoded = _encoded(
        Reduction(uuid.UUID(int=0), aggregate, -1, now, now), aggregate_class
    )
    return None if isinstance(encoded, bytes) else encoded


def _encoded(reduction: Reduction[A], aggregate_class: type[A]) -> bytes | str:
    """The entry of a reduction, or why there can be none."""
    aggregate = reduction.aggregate
    try:
        state = _encoder.encode(aggregate)
        exact = _aggregate_decoder(aggregate_class).decode(state) == aggregate
    except Exception as e:  # msgspec, or the aggregate's own __post_init__
        return str(e)
    if not exact:
        return "it does not decode back to an equal state"
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
        return repr(e)
