"""manage.py eventlog_clear_cache: drop cached reductions by aggregate, or all."""

from __future__ import annotations

import io
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from django.core.cache import BaseCache, caches
from django.core.management import call_command
from django.core.management.base import CommandError

from django_eventlog import (
    Aggregate,
    CacheStats,
    EventRecord,
    Log,
    cache_stats,
)
from django_eventlog.caching import cache_key, key_prefix
from tests.conftest import redis_cache
from tests.domain import Account, Deposited, Opened
from tests.redis_server import free_port

pytestmark = pytest.mark.django_db

ACCOUNT = "tests.domain.Account"
TOTALS = "tests.test_clear_cache_command.Totals"


@dataclass
class Totals(Aggregate):
    """A second aggregate of the account logs, whose name starts with Account's.

    Deleting ``Account``'s entries by the pattern ``<prefix>Account:*`` must
    not reach ``<prefix>Account_totals:...``.
    """

    aggregate_name = f"{Account.aggregate_name}_totals"

    total: int = 0

    def apply(self, record: EventRecord) -> None:
        if isinstance(record.event, Deposited):
            self.total += record.event.amount


@pytest.fixture
def redis_eventlog(redis_url: str, settings: Any) -> Iterator[BaseCache]:
    """EVENTLOG_CACHE_ALIAS on a django-redis cache."""
    settings.CACHES = {**settings.CACHES, "eventlog": redis_cache(redis_url)}
    settings.EVENTLOG_CACHE_ALIAS = "eventlog"
    cache = caches["eventlog"]
    cache.clear()
    yield cache
    cache.clear()


@pytest.fixture
def locmem_eventlog(settings: Any) -> Iterator[BaseCache]:
    """EVENTLOG_CACHE_ALIAS on a local-memory cache, which cannot delete by prefix."""
    settings.CACHES = {
        **settings.CACHES,
        "eventlog": {
            "BACKEND": "django.core.cache.backends.locmem.LocMemCache",
            "LOCATION": "eventlog-clear-cache-tests",
        },
    }
    settings.EVENTLOG_CACHE_ALIAS = "eventlog"
    cache = caches["eventlog"]
    cache.clear()
    yield cache
    cache.clear()


def reduced_logs(capture: Callable[..., Any], count: int) -> list[uuid.UUID]:
    """Create ``count`` account logs and cache both aggregates of each."""
    log_ids = []
    with capture(execute=True):
        for n in range(count):
            state = Log.objects.create_log(Opened(f"owner{n}"), kind="account")
            state = Log.objects.append(state, Deposited(n + 1))
            Log.objects.reduce(state.log_id, Account)
            Log.objects.reduce(state.log_id, Totals)
            log_ids.append(state.log_id)
    return log_ids


def clear_cache(*args: str, stderr: io.StringIO | None = None) -> str:
    out = io.StringIO()
    call_command("eventlog_clear_cache", *args, stdout=out, stderr=stderr)
    return out.getvalue()


def misses_of(reduce: Callable[[], object]) -> int:
    before: CacheStats = cache_stats()
    reduce()
    return cache_stats().misses - before.misses


# django-redis: delete by key prefix


def test_one_aggregate_is_dropped_and_the_other_survives(
    redis_eventlog: BaseCache, django_capture_on_commit_callbacks: Any
) -> None:
    log_ids = reduced_logs(django_capture_on_commit_callbacks, 3)
    for log_id in log_ids:
        assert redis_eventlog.get(cache_key(Account, log_id)) is not None
        assert redis_eventlog.get(cache_key(Totals, log_id)) is not None
    # An entry of an older version of Account is under the same prefix.
    old_key = f"{key_prefix(Account)}v0:{log_ids[0].hex}"
    redis_eventlog.set(old_key, b"stale")
    redis_eventlog.set("someone-else:key", "kept")

    output = clear_cache(ACCOUNT)

    assert output == (
        f"Deleted 4 cached reductions of {ACCOUNT} from cache 'eventlog'.\n"
    )
    assert redis_eventlog.get(old_key) is None
    assert redis_eventlog.get("someone-else:key") == "kept"
    for log_id in log_ids:
        assert redis_eventlog.get(cache_key(Account, log_id)) is None
        assert redis_eventlog.get(cache_key(Totals, log_id)) is not None
    # The next reduce of Account folds the log again; Totals still hits.
    first = log_ids[0]
    assert misses_of(lambda: Log.objects.reduce(first, Account)) == 1
    assert misses_of(lambda: Log.objects.reduce(first, Totals)) == 0


def test_several_aggregates_at_once_and_a_count_of_one(
    redis_eventlog: BaseCache, django_capture_on_commit_callbacks: Any
) -> None:
    [log_id] = reduced_logs(django_capture_on_commit_callbacks, 1)

    # The same class twice is dropped once.
    output = clear_cache(ACCOUNT, TOTALS, ACCOUNT)

    assert output.splitlines() == [
        f"Deleted 1 cached reduction of {ACCOUNT} from cache 'eventlog'.",
        f"Deleted 1 cached reduction of {TOTALS} from cache 'eventlog'.",
    ]
    assert redis_eventlog.get(cache_key(Account, log_id)) is None
    assert redis_eventlog.get(cache_key(Totals, log_id)) is None
    # Nothing left: a second run deletes nothing.
    assert clear_cache(ACCOUNT) == (
        f"Deleted 0 cached reductions of {ACCOUNT} from cache 'eventlog'.\n"
    )


def test_all_drops_every_aggregate_and_nothing_else(
    redis_eventlog: BaseCache, django_capture_on_commit_callbacks: Any
) -> None:
    log_ids = reduced_logs(django_capture_on_commit_callbacks, 2)
    redis_eventlog.set("someone-else:key", "kept")

    output = clear_cache("--all")

    assert output == (
        "Deleted 4 cached reductions of every aggregate from cache 'eventlog'.\n"
    )
    for log_id in log_ids:
        assert redis_eventlog.get(cache_key(Account, log_id)) is None
        assert redis_eventlog.get(cache_key(Totals, log_id)) is None
    assert redis_eventlog.get("someone-else:key") == "kept"
    assert misses_of(lambda: Log.objects.reduce(log_ids[0], Totals)) == 1


def test_all_follows_the_key_prefix_setting(
    redis_eventlog: BaseCache, django_capture_on_commit_callbacks: Any, settings: Any
) -> None:
    [log_id] = reduced_logs(django_capture_on_commit_callbacks, 1)
    default_key = cache_key(Account, log_id)
    settings.EVENTLOG_CACHE_KEY_PREFIX = "other"

    # Entries under the old prefix are not this configuration's.
    assert clear_cache("--all") == (
        "Deleted 0 cached reductions of every aggregate from cache 'eventlog'.\n"
    )
    assert redis_eventlog.get(default_key) is not None


def test_whole_alias_is_not_needed_on_redis(
    redis_eventlog: BaseCache, django_capture_on_commit_callbacks: Any
) -> None:
    [log_id] = reduced_logs(django_capture_on_commit_callbacks, 1)
    redis_eventlog.set("someone-else:key", "kept")

    err = io.StringIO()
    output = clear_cache(ACCOUNT, "--whole-alias", stderr=err)

    assert output.splitlines() == [
        "Cache 'eventlog' deletes by key prefix: --whole-alias is not needed and "
        "was ignored.",
        f"Deleted 1 cached reduction of {ACCOUNT} from cache 'eventlog'.",
    ]
    assert redis_eventlog.get("someone-else:key") == "kept"
    assert redis_eventlog.get(cache_key(Totals, log_id)) is not None
    assert err.getvalue() == ""


@pytest.mark.parametrize("ignore_exceptions", [False, True])
def test_an_unreachable_redis_is_a_command_error(
    settings: Any, ignore_exceptions: bool
) -> None:
    config = redis_cache(f"redis://127.0.0.1:{free_port()}/0")  # nothing listens
    config["OPTIONS"]["IGNORE_EXCEPTIONS"] = ignore_exceptions
    settings.CACHES = {**settings.CACHES, "eventlog": config}
    settings.EVENTLOG_CACHE_ALIAS = "eventlog"
    # With IGNORE_EXCEPTIONS, django-redis hides the failure and returns None.
    expected = "returned None, not a count" if ignore_exceptions else "failed: "
    with pytest.raises(CommandError, match=expected) as error:
        clear_cache(ACCOUNT)
    assert f"cached reductions of {ACCOUNT} from cache 'eventlog'" in str(error.value)


def test_verbosity_zero_is_silent(redis_eventlog: BaseCache) -> None:
    out = io.StringIO()
    call_command("eventlog_clear_cache", "--all", verbosity=0, stdout=out)
    assert out.getvalue() == ""


# Backends without delete_pattern


def test_locmem_refuses_without_whole_alias(
    locmem_eventlog: BaseCache, django_capture_on_commit_callbacks: Any
) -> None:
    [log_id] = reduced_logs(django_capture_on_commit_callbacks, 1)

    with pytest.raises(CommandError) as error:
        clear_cache(ACCOUNT)

    message = str(error.value)
    assert "cannot delete entries by key prefix" in message
    assert "--whole-alias clears the ENTIRE cache 'eventlog'" in message
    assert "EVENTLOG_CACHE_ALIAS" in message
    assert "LocMemCache" in message
    # Nothing was deleted.
    assert locmem_eventlog.get(cache_key(Account, log_id)) is not None
    assert locmem_eventlog.get(cache_key(Totals, log_id)) is not None


def test_locmem_whole_alias_clears_everything_and_says_so(
    locmem_eventlog: BaseCache, django_capture_on_commit_callbacks: Any
) -> None:
    [log_id] = reduced_logs(django_capture_on_commit_callbacks, 1)
    locmem_eventlog.set("someone-else:key", "gone too")
    caches["default"].set("default-cache-key", "kept")

    err = io.StringIO()
    output = clear_cache("--all", "--whole-alias", stderr=err)

    assert output.startswith("Cleared the entire cache 'eventlog' (")
    assert "every aggregate and every other entry in it are gone" in output
    # A manage.py process cannot reach the memory of the server processes.
    assert "cleared only this process's copy" in err.getvalue()
    assert locmem_eventlog.get(cache_key(Account, log_id)) is None
    assert locmem_eventlog.get(cache_key(Totals, log_id)) is None
    assert locmem_eventlog.get("someone-else:key") is None
    # Only the alias EVENTLOG_CACHE_ALIAS names was cleared.
    assert caches["default"].get("default-cache-key") == "kept"
    assert misses_of(lambda: Log.objects.reduce(log_id, Account)) == 1


# Arguments


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("tests.domain.NoSuchAggregate", "Cannot import aggregate"),
        ("no_such_module.Aggregate", "Cannot import aggregate"),
        ("nodots", "Cannot import aggregate"),
        ("tests.domain.Opened", "is not an Aggregate subclass"),
        ("tests.conftest.redis_cache", "is not an Aggregate subclass"),
        ("django_eventlog.ACCOUNT", "Cannot import aggregate"),
        ("django_eventlog.Aggregate", "is Aggregate itself"),
    ],
)
def test_a_path_that_is_no_aggregate_is_refused(
    redis_eventlog: BaseCache, path: str, expected: str
) -> None:
    redis_eventlog.set(f"{key_prefix()}x", b"kept")
    with pytest.raises(CommandError, match=expected) as error:
        # A good path before the bad one is not dropped either.
        clear_cache(ACCOUNT, path)
    assert repr(path) in str(error.value)
    assert redis_eventlog.get(f"{key_prefix()}x") == b"kept"


def test_an_aggregate_or_all_is_required(redis_eventlog: BaseCache) -> None:
    with pytest.raises(CommandError, match=r"or give --all"):
        clear_cache()
    with pytest.raises(CommandError, match=r"or give --all"):
        clear_cache("--whole-alias")


def test_aggregates_and_all_together_are_refused(redis_eventlog: BaseCache) -> None:
    with pytest.raises(CommandError, match="not both"):
        clear_cache(ACCOUNT, "--all")


def test_an_unknown_cache_alias_is_a_command_error(settings: Any) -> None:
    settings.EVENTLOG_CACHE_ALIAS = "missing"
    with pytest.raises(CommandError, match="EVENTLOG_CACHE_ALIAS 'missing'"):
        clear_cache("--all")


def test_help_explains_whole_alias_and_version_bumps(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # argparse prints --help to sys.stdout, whatever stdout call_command gets.
    with pytest.raises(SystemExit):
        call_command("eventlog_clear_cache", "--help")
    text = " ".join(capsys.readouterr().out.split())
    assert "--whole-alias" in text
    assert "ENTIRE cache alias" in text
    assert "bumping its 'version'" in text
