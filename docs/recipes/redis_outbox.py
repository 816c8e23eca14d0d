"""An outbox to a Redis Stream: see "Outbox: publishing to a Redis Stream"."""

from __future__ import annotations

import json
import re
from typing import ClassVar

import redis
from redis.typing import EncodableT, FieldT

from django_eventlog import FeedRecord
from django_eventlog.projections import Projection

# A feed position is "<txid>.<id>": two integers that sort in feed order
# (txid first). Read as a stream entry id "<txid>-<id>" they sort the same way.
POSITION = re.compile(r"([0-9]+)\.([0-9]+)")


def entry_id(position: str) -> str:
    """The stream entry id of the event at ``position``: "<txid>-<id>"."""
    match = POSITION.fullmatch(position)
    if match is None:
        raise ValueError(f"Not a feed position of the form <txid>.<id>: {position!r}")
    return f"{match[1]}-{match[2]}"


class RedisStreamOutbox(Projection):
    """Publish every event to a Redis Stream, each once, in feed order.

    A subscriber: it runs outside any database transaction and is handled
    at least once. Each entry's id is the event's feed position, so Redis
    refuses an event it already holds (an entry id must be greater than the
    stream's last one), and a redelivered event is not added twice.

    The stream must be written by this outbox only: an entry added with an
    automatic id (milliseconds since 1970) sorts after every position, and
    the outbox would stop on the next event. Subclass it to set the name,
    the stream and the server.
    """

    name = "outbox.redis-stream"
    atomic = False
    #: The stream's key: this outbox's own.
    stream: ClassVar[str] = "eventlog:events"
    redis_url: ClassVar[str] = "redis://localhost:6379/0"
    #: Seconds to wait for Redis before the handler raises (and is retried).
    timeout: ClassVar[float] = 5.0

    def __init__(self) -> None:
        self.redis = redis.Redis.from_url(
            self.redis_url,
            socket_timeout=self.timeout,
            socket_connect_timeout=self.timeout,
        )

    def handle(self, record: FeedRecord) -> None:
        entry = entry_id(record.position)
        fields: dict[FieldT, EncodableT] = {
            "type": record.type,
            "record": json.dumps(record.as_dict()),
        }
        try:
            self.redis.xadd(self.stream, fields, id=entry)
        except redis.ResponseError as e:
            # Refused: already published (a retry after a lost reply, or a
            # crash before the checkpoint was saved), or something else.
            if not self.published(entry):
                raise RuntimeError(
                    f"Redis refused entry {entry} of stream {self.stream!r} and "
                    f"does not hold it: {e}. An entry of a greater id that this "
                    "outbox did not write, or this entry trimmed away?"
                ) from e

    def published(self, entry: str) -> bool:
        """Whether the stream holds the entry ``entry`` already."""
        return bool(self.redis.xrange(self.stream, entry, entry, count=1))
