"""The outbox recipe of docs/read-side.md (docs/recipes/redis_outbox.py),
run against a real Redis with ``catch_up`` (both databases).

The guarantee under test: every event the feed delivers ends up in the
stream exactly once, in feed order, whatever failed in between: a reply
lost after the XADD, a crash before the checkpoint was saved, Redis down.
"""

from __future__ import annotations

import importlib
import json
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from django_eventlog import Event, FeedRecord, Log
from django_eventlog.models import ProjectionCheckpoint
from django_eventlog.projection_control import retry
from django_eventlog.projections import Projection, catch_up
from tests.domain import Deposited, Opened
from tests.redis_server import RedisServer

pytestmark = pytest.mark.django_db

# Imported by name, as the settings name it (docs/ is not a package that
# mypy follows).
RECIPE = importlib.import_module("docs.recipes.redis_outbox")
RedisStreamOutbox: type[Projection] = RECIPE.RedisStreamOutbox
entry_id: Callable[[str], str] = RECIPE.entry_id

OUTBOX = "outbox.redis-stream"


def configure(monkeypatch: pytest.MonkeyPatch, settings: Any, url: str) -> str:
    """Run the recipe alone, publishing to ``url``; the stream's key."""
    settings.EVENTLOG_PROJECTIONS = ["docs.recipes.redis_outbox.RedisStreamOutbox"]
    settings.EVENTLOG_PROJECTION_RETRY_DELAY = 0.001
    stream = f"outbox-test:{uuid.uuid4()}"
    monkeypatch.setattr(RedisStreamOutbox, "stream", stream)
    monkeypatch.setattr(RedisStreamOutbox, "redis_url", url)
    monkeypatch.setattr(RedisStreamOutbox, "timeout", 0.5)
    return stream


@pytest.fixture
def client(redis_url: str) -> Iterator[redis.Redis]:
    connection = redis.Redis.from_url(redis_url)
    yield connection
    connection.close()


@pytest.fixture
def stream(
    monkeypatch: pytest.MonkeyPatch, settings: Any, redis_url: str, client: redis.Redis
) -> Iterator[str]:
    key = configure(monkeypatch, settings, redis_url)
    yield key
    client.delete(key)


def accounts(*deposits: list[int]) -> None:
    for i, amounts in enumerate(deposits):
        state = Log.objects.create_log(Opened(f"owner {i}"), kind="account")
        for amount in amounts:
            state = Log.objects.append(state, Deposited(amount))


def the_feed() -> list[FeedRecord]:
    return Log.objects.feed(limit=1000)


def entries(client: redis.Redis, key: str) -> list[tuple[str, dict[str, Any]]]:
    """(entry id, the record published) of each entry, in stream order."""
    found = []
    for entry, fields in client.xrange(key) or []:
        assert isinstance(entry, bytes)
        assert fields is not None
        found.append((entry.decode(), json.loads(fields[b"record"])))
    return found


def added(client: redis.Redis, key: str) -> int:
    """How many entries were ever added to the stream (trimmed or not)."""
    info = client.xinfo_stream(key)
    return int(info["entries-added"])


def checkpoint() -> ProjectionCheckpoint:
    return ProjectionCheckpoint.objects.get(name=OUTBOX)


def test_entry_ids_sort_as_the_feed_does() -> None:
    assert entry_id("0.1") == "0-1"
    assert entry_id("7125.42") == "7125-42"
    with pytest.raises(ValueError, match="feed position"):
        entry_id("7125-42")


def test_every_event_is_published_once_in_feed_order(
    stream: str, client: redis.Redis
) -> None:
    accounts([1, 2, 3], [], [40])
    assert catch_up() == {OUTBOX: 7}
    accounts([5])
    assert catch_up() == {OUTBOX: 2}

    published = entries(client, stream)
    feed = the_feed()
    assert len(published) == Event.objects.count() == 9
    assert published == [(entry_id(r.position), r.as_dict()) for r in feed]
    assert added(client, stream) == 9
    # Each log's events, in index order.
    by_log: dict[str, list[int]] = {}
    for _, record in published:
        by_log.setdefault(record["log_id"], []).append(record["index"])
    assert sorted(by_log.values()) == [[0], [0, 1], [0, 1], [0, 1, 2, 3]]
    assert checkpoint().position == feed[-1].position


def test_a_crash_before_the_checkpoint_save_publishes_nothing_twice(
    stream: str, client: redis.Redis
) -> None:
    accounts([1, 2], [3])
    assert catch_up() == {OUTBOX: 5}
    before = entries(client, stream)
    # The checkpoint as if the process died after its XADDs, before saving.
    ProjectionCheckpoint.objects.filter(name=OUTBOX).update(position="", handled=0)

    assert catch_up() == {OUTBOX: 5}  # handled again: at least once

    assert entries(client, stream) == before
    assert added(client, stream) == 5  # refused, not added and removed
    assert checkpoint().state == "running"


def test_a_reply_lost_after_the_xadd_is_retried_without_a_duplicate(
    stream: str, client: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    accounts([1, 2, 3])
    lost = the_feed()[2].position
    handle: Callable[[Projection, FeedRecord], None] = RedisStreamOutbox.handle
    calls: list[str] = []

    def reply_lost(self: Projection, record: FeedRecord) -> None:
        handle(self, record)
        calls.append(record.position)
        if record.position == lost and calls.count(lost) == 1:
            raise redis.ConnectionError("connection reset after the XADD")

    monkeypatch.setattr(RedisStreamOutbox, "handle", reply_lost)
    assert catch_up() == {OUTBOX: 4}

    assert calls.count(lost) == 2
    assert [entry for entry, _ in entries(client, stream)] == [
        entry_id(r.position) for r in the_feed()
    ]
    assert added(client, stream) == 4
    assert checkpoint().state == "running"


def test_an_entry_redis_refuses_and_lacks_stops_the_outbox(
    stream: str, client: redis.Redis
) -> None:
    accounts([1])
    # Another writer's entry, with an automatic id (milliseconds): it sorts
    # after every feed position.
    client.xadd(stream, {"other": "writer"})

    assert catch_up() == {OUTBOX: 0}

    stopped = checkpoint()
    assert stopped.state == "failed"
    assert stopped.error_position == the_feed()[0].position
    assert "does not hold it" in stopped.last_error
    assert added(client, stream) == 1


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A Redis of its own, to stop and start, that keeps its data."""
    server = RedisServer(data_dir=str(tmp_path))
    server.start()
    yield server
    server.stop()


def test_redis_down_stops_the_outbox_and_retry_resumes_it(
    monkeypatch: pytest.MonkeyPatch, settings: Any, private_redis: RedisServer
) -> None:
    key = configure(monkeypatch, settings, private_redis.url)
    client = redis.Redis.from_url(private_redis.url)
    accounts([1])
    assert catch_up() == {OUTBOX: 2}
    private_redis.stop()
    accounts([2, 3])

    assert catch_up() == {OUTBOX: 0}

    feed = the_feed()
    stopped = checkpoint()
    assert stopped.state == "failed"
    assert stopped.position == feed[1].position  # right before the failing one
    assert stopped.error_position == feed[2].position
    assert "ConnectionError" in stopped.last_error

    private_redis.start()
    assert catch_up() == {OUTBOX: 0}  # failed stays stopped until retried
    assert len(entries(client, key)) == 2
    assert retry("default", OUTBOX)
    assert catch_up() == {OUTBOX: 3}

    assert [entry for entry, _ in entries(client, key)] == [
        entry_id(r.position) for r in feed
    ]
    assert added(client, key) == 5
    assert checkpoint().state == "running"
    client.close()
