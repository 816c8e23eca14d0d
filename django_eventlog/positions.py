"""Feed positions: the opaque tokens of ``Log.objects.feed``, made and read.

A position is ``"<txid>.<id>"`` in decimal: the event's ``txid`` (0 on
SQLite, and for events stored before migration 0007) and its row id. Users
treat it as opaque; it is safe in a URL and in a ``CharField`` of
:data:`POSITION_MAX_LENGTH`.

Internal to the package: import the public API from ``django_eventlog``.
"""

from __future__ import annotations

import re

from .exceptions import InvalidArgument

__all__ = ["POSITION_MAX_LENGTH", "Position", "format_position", "parse_position"]

#: Two 64-bit integers and a dot.
POSITION_MAX_LENGTH = 40

#: A position as the database compares it: (txid, id).
Position = tuple[int, int]

_BIGINT_MAX = 2**63 - 1
_TOKEN = re.compile(r"(0|[1-9][0-9]{0,18})\.(0|[1-9][0-9]{0,18})")


def format_position(txid: int | None, event_id: int) -> str:
    """The token of the event with ``txid`` (None: 0) and row id ``event_id``."""
    return f"{txid or 0}.{event_id}"


def parse_position(token: object, name: str = "after") -> Position:
    """(txid, id) of a token from :func:`format_position`; the start of the
    feed, (0, 0), for None. ``InvalidArgument`` for anything else."""
    if token is None:
        return (0, 0)
    match = _TOKEN.fullmatch(token) if isinstance(token, str) else None
    if match is None:
        raise InvalidArgument(
            f"{name} must be a feed position (a record's position, like "
            f'"7125.42") or None, got {token!r}.'
        )
    txid, event_id = int(match[1]), int(match[2])
    if txid > _BIGINT_MAX or event_id > _BIGINT_MAX:
        raise InvalidArgument(f"{name} is not a feed position: {token!r}.")
    return txid, event_id
