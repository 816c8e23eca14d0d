"""django_eventlog.testing: make_log, fresh_cache, LogFactory and the pytest plugin.

The examples of docs/testing.md are mirrored here, so they stay correct.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import uuid
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.core.cache import caches
from django.test import TestCase

# factory-boy's package does not re-export its names for strict mypy: import
# them from the modules that define them (docs/testing.md uses factory.X).
from factory.base import Factory
from factory.declarations import List, Sequence, SubFactory
from factory.errors import UnsupportedStrategy
from factory.faker import Faker

import django_eventlog.testing
from django_eventlog import (
    ConcurrentAppend,
    Event,
    EventEncodingError,
    IdempotencyConflict,
    IdempotentReplay,
    InvalidArgument,
    Log,
    cache_stats,
    cache_writer,
    wait_for_cache_writes,
)
from django_eventlog.caching import cache_key
from django_eventlog.conf import conf
from django_eventlog.testing import CACHE_ALIAS, LogFactory, fresh_cache, make_log
from django_eventlog.testing import factories as factories_module
from tests.domain import Account, Deposited, Opened

pytest_plugins = ["pytester"]

ROOT = Path(__file__).resolve().parent.parent
transactional = pytest.mark.django_db(transaction=True)


# The event factories and the log factory of docs/testing.md.


class OpenedFactory(Factory[Opened]):
    class Meta:
        model = Opened

    owner = Faker("first_name")


class DepositedFactory(Factory[Deposited]):
    class Meta:
        model = Deposited

    amount = Sequence(lambda n: (n + 1) * 100)


class AccountFactory(LogFactory):
    kind = "account"
    events = List([SubFactory(OpenedFactory)])


class KeyedAccountFactory(AccountFactory):
    idempotency_key = Sequence(lambda n: f"open-{n}")


def events_of(log_id: uuid.UUID) -> list[Any]:
    return [record.event for record in Log.objects.load(log_id)]


# make_log


@pytest.mark.django_db
def test_make_log_writes_the_events_at_indices_0_to_n_minus_1() -> None:
    state = make_log(Opened("ada"), Deposited(10), Deposited(5), kind="account")
    assert state.next_index == 3

    reduction = Log.objects.reduce(state.log_id, Account)
    assert reduction.aggregate.balance == 15
    assert reduction.aggregate.indices == [0, 1, 2]
    assert reduction.through_index == 2
    records = Log.objects.load(state.log_id)
    assert [r.index for r in records] == [0, 1, 2]
    assert [r.event for r in records] == [Opened("ada"), Deposited(10), Deposited(5)]
    assert Log.objects.get(pk=state.log_id).kind == "account"


@pytest.mark.django_db
def test_make_log_of_one_event_and_the_default_kind() -> None:
    state = make_log(Deposited(1))
    assert state.next_index == 1
    assert Log.objects.get(pk=state.log_id).kind == "test"
    assert events_of(state.log_id) == [Deposited(1)]


@pytest.mark.django_db
def test_make_log_without_events_says_so() -> None:
    with pytest.raises(InvalidArgument, match="at least one event"):
        make_log(kind="account")
    assert not Log.objects.exists()


@pytest.mark.django_db
@pytest.mark.parametrize("as_text", [False, True])
def test_make_log_takes_a_log_id(as_text: bool) -> None:
    log_id = uuid.uuid4()
    state = make_log(Opened("ada"), log_id=str(log_id) if as_text else log_id)
    assert state.log_id == log_id
    assert Log.objects.filter(pk=log_id).exists()
    with pytest.raises(ConcurrentAppend):
        make_log(Opened("bob"), log_id=log_id)


@pytest.mark.django_db
def test_make_log_gives_the_key_to_the_first_event_and_replays_a_retry() -> None:
    state = make_log(Opened("ada"), Deposited(10), idempotency_key="open-1")
    assert [r.idempotency_key for r in Log.objects.load(state.log_id)] == [
        "open-1",
        None,
    ]
    with pytest.raises(IdempotentReplay) as replay:
        make_log(Opened("ada"), idempotency_key="open-1")
    assert (replay.value.log_id, replay.value.event_index) == (state.log_id, 0)
    with pytest.raises(IdempotencyConflict):
        make_log(Opened("bob"), idempotency_key="open-1")
    assert Log.objects.count() == 1


@transactional
def test_make_log_writes_all_or_nothing() -> None:
    # Committed for real: a half-written log would stay behind.
    with pytest.raises(EventEncodingError):
        make_log(Opened("ada"), Deposited(10), Deposited("ten"))  # type: ignore[arg-type]
    assert not Log.objects.exists()
    assert not Event.objects.exists()


# LogFactory and event factories


def test_event_factories_make_frozen_domain_events() -> None:
    opened = OpenedFactory.build(owner="ada")
    assert opened == Opened("ada")
    deposits = DepositedFactory.build_batch(2)
    assert all(isinstance(d, Deposited) for d in deposits)
    assert deposits[1].amount == deposits[0].amount + 100
    assert isinstance(OpenedFactory.build().owner, str)


@pytest.mark.django_db
def test_account_factories() -> None:
    # docs/testing.md, "Event factories with factory-boy".
    state = AccountFactory.create()
    assert state.next_index == 1
    assert Log.objects.get(pk=state.log_id).kind == "account"
    (opened,) = events_of(state.log_id)
    assert isinstance(opened, Opened)
    assert opened.owner

    rich = AccountFactory.create(
        events=[
            OpenedFactory.build(owner="ada"),
            *DepositedFactory.build_batch(3, amount=50),
        ]
    )
    assert Log.objects.reduce(rich.log_id, Account).aggregate.balance == 150
    assert events_of(rich.log_id) == [Opened("ada"), *[Deposited(50)] * 3]

    states = AccountFactory.create_batch(3)
    assert len({s.log_id for s in states}) == 3
    assert all(s.next_index == 1 for s in states)
    assert Log.objects.filter(kind="account").count() == 5


@pytest.mark.django_db
def test_log_factory_called_creates_with_the_declared_defaults() -> None:
    # Calling a factory class is untyped in factory-boy: typed code calls create().
    state = LogFactory(events=[Deposited(7)])  # type: ignore[no-untyped-call]
    assert Log.objects.get(pk=state.log_id).kind == "test"
    assert events_of(state.log_id) == [Deposited(7)]


@pytest.mark.django_db
def test_log_factory_takes_kind_and_log_id() -> None:
    log_id = uuid.uuid4()
    state = LogFactory.create(kind="ledger", log_id=log_id, events=[Opened("ada")])
    assert state.log_id == log_id
    assert Log.objects.get(pk=log_id).kind == "ledger"


@pytest.mark.django_db
def test_log_factory_keys_make_creation_happen_once() -> None:
    first, second = KeyedAccountFactory.create_batch(2)
    keys = [Log.objects.load(s.log_id)[0].idempotency_key for s in (first, second)]
    assert keys[0] != keys[1]
    assert keys[0] is not None
    assert keys[0].startswith("open-")
    opened = Log.objects.load(first.log_id)[0].event
    with pytest.raises(IdempotentReplay) as replay:
        LogFactory.create(events=[opened], kind="account", idempotency_key=keys[0])
    assert replay.value.log_id == first.log_id


@pytest.mark.django_db
def test_log_factory_again_under_a_used_key_with_new_random_values_conflicts() -> None:
    first = KeyedAccountFactory.create()
    [opened] = events_of(first.log_id)
    key = Log.objects.load(first.log_id)[0].idempotency_key
    other = OpenedFactory.build()
    while other == opened:  # Faker may draw the same name again
        other = OpenedFactory.build()
    with pytest.raises(IdempotencyConflict) as conflict:
        KeyedAccountFactory.create(events=[other], idempotency_key=key)
    assert conflict.value.log_id == first.log_id
    with pytest.raises(IdempotentReplay) as replay:
        KeyedAccountFactory.create(events=[opened], idempotency_key=key)
    assert (replay.value.log_id, replay.value.event_index) == (first.log_id, 0)
    assert Log.objects.filter(kind="account").count() == 1


@pytest.mark.django_db
def test_log_factory_without_events_says_so() -> None:
    with pytest.raises(InvalidArgument, match="at least one event"):
        LogFactory.create()
    assert not Log.objects.exists()


def test_log_factory_build_raises_a_clear_error() -> None:
    with pytest.raises(UnsupportedStrategy, match=r"AccountFactory\.create\(\)"):
        AccountFactory.build()
    with pytest.raises(UnsupportedStrategy, match="without writing it"):
        LogFactory.build_batch(2, events=[Opened("ada")])


def test_log_factory_is_importable_from_the_testing_package() -> None:
    assert django_eventlog.testing.LogFactory is factories_module.LogFactory
    with pytest.raises(AttributeError, match="Nope"):
        django_eventlog.testing.Nope  # noqa: B018


# docs/testing.md: concurrency and idempotent retries


@pytest.mark.django_db
def test_the_second_writer_gets_concurrent_append() -> None:
    state = make_log(Opened("ada"), kind="account")
    first = Log.objects.reduce(state.log_id, Account)
    second = Log.objects.reduce(state.log_id, Account)

    Log.objects.append(first, Deposited(10))
    with pytest.raises(ConcurrentAppend):
        Log.objects.append(second, Deposited(20))

    again = Log.objects.reduce(state.log_id, Account)
    Log.objects.append(again, Deposited(20))
    assert Log.objects.reduce(state.log_id, Account).aggregate.balance == 30


@pytest.mark.django_db
def test_a_retried_deposit_is_written_once() -> None:
    state = make_log(Opened("ada"), kind="account")
    Log.objects.append(state, Deposited(10), idempotency_key="deposit-1")

    with pytest.raises(IdempotentReplay) as replay:
        Log.objects.append(state, Deposited(10), idempotency_key="deposit-1")
    assert (replay.value.log_id, replay.value.event_index) == (state.log_id, 1)

    with pytest.raises(IdempotencyConflict):
        Log.objects.append(state, Deposited(99), idempotency_key="deposit-1")

    assert Log.objects.reduce(state.log_id, Account).aggregate.balance == 10


# fresh_cache


@transactional
def test_fresh_cache_isolates_reductions_and_counts() -> None:
    state = make_log(Opened("ada"), Deposited(10), kind="account")
    Log.objects.reduce(state.log_id, Account)  # cached in the usual cache
    key = cache_key(Account, state.log_id)
    assert caches["default"].get(key) is not None
    assert cache_stats().writes == 1

    with fresh_cache() as cache:
        assert conf.EVENTLOG_CACHE_ALIAS == CACHE_ALIAS
        assert cache is caches[CACHE_ALIAS]
        assert cache_stats().writes == 0  # zeroed on entry
        Log.objects.append(state, Deposited(5))
        reduction = Log.objects.reduce(state.log_id, Account)
        assert reduction.aggregate.balance == 15
        stats = cache_stats()
        assert (stats.misses, stats.hits, stats.writes) == (1, 0, 1)
        assert cache.get(key) is not None

    assert conf.EVENTLOG_CACHE_ALIAS == "default"
    assert CACHE_ALIAS not in settings.CACHES
    assert cache.get(key) is None  # emptied on exit


@transactional
def test_each_fresh_cache_starts_empty() -> None:
    state = make_log(Opened("ada"), kind="account")
    with fresh_cache():
        Log.objects.reduce(state.log_id, Account)
    with fresh_cache():
        Log.objects.reduce(state.log_id, Account)
        assert (cache_stats().misses, cache_stats().hits) == (1, 0)


@transactional
def test_fresh_cache_waits_for_background_writes_on_exit(settings: Any) -> None:
    settings.EVENTLOG_CACHE_WRITE_BEHIND = True
    state = make_log(Opened("ada"), kind="account")
    with fresh_cache():
        Log.objects.reduce(state.log_id, Account)
    assert cache_stats().writes == 1


def test_fresh_cache_raises_when_background_writes_hang() -> None:
    release = threading.Event()

    def hang() -> None:
        release.wait(10)

    try:
        with (
            pytest.raises(TimeoutError, match=r"0\.05 seconds"),
            fresh_cache(timeout=0.05),
        ):
            cache_writer._writer().submit(hang)
    finally:
        release.set()
    assert wait_for_cache_writes(10)


@fresh_cache()
def test_fresh_cache_as_a_decorator() -> None:
    assert conf.EVENTLOG_CACHE_ALIAS == CACHE_ALIAS


class AccountTests(TestCase):
    """docs/testing.md, "Django's TestCase"."""

    def test_a_deposit_adds_to_the_balance(self) -> None:
        state = make_log(Opened("ada"), Deposited(10), kind="account")
        reduction = Log.objects.reduce(state.log_id, Account)
        assert reduction.aggregate.balance == 10

    @fresh_cache()
    def test_the_reduction_is_cached_when_the_transaction_commits(self) -> None:
        state = make_log(Opened("ada"), kind="account")
        Log.objects.reduce(state.log_id, Account)
        assert cache_stats().writes == 0  # nothing committed

        with self.captureOnCommitCallbacks(execute=True):
            Log.objects.reduce(state.log_id, Account)
        assert cache_stats().writes == 1

        Log.objects.reduce(state.log_id, Account)
        assert cache_stats().hits == 1


# The pytest plugin, in a pytest run of its own


PLUGIN_TESTS = """
import uuid

import pytest

from django_eventlog import Log, cache_stats, wait_for_cache_writes
from django_eventlog.conf import conf
from django_eventlog.testing import CACHE_ALIAS, make_log
from tests.domain import Account, Deposited, Opened

SHARED_ID = uuid.UUID("0192f0c0-0000-7000-8000-000000000001")


@pytest.mark.django_db(transaction=True)
def test_a_second_reduce_starts_from_the_cached_one(eventlog_cache):
    state = make_log(Opened("ada"), Deposited(10), kind="account")

    Log.objects.reduce(state.log_id, Account)
    Log.objects.append(state, Deposited(5))
    reduction = Log.objects.reduce(state.log_id, Account)

    assert reduction.aggregate.balance == 15
    stats = cache_stats()
    assert (stats.misses, stats.hits, stats.writes) == (1, 1, 2)
    assert stats.events_applied_after_hit == 1


@pytest.mark.django_db
def test_cached_on_commit(eventlog_cache, django_capture_on_commit_callbacks):
    state = make_log(Opened("ada"), kind="account")
    with django_capture_on_commit_callbacks(execute=True):
        Log.objects.reduce(state.log_id, Account)
    assert cache_stats().writes == 1


@pytest.mark.django_db(transaction=True)
def test_written_behind(eventlog_cache, settings):
    settings.EVENTLOG_CACHE_WRITE_BEHIND = True
    state = make_log(Opened("ada"), kind="account")
    Log.objects.reduce(state.log_id, Account)
    assert wait_for_cache_writes(timeout=5)
    assert cache_stats().writes == 1


@pytest.fixture
def project_writes_behind(settings):
    settings.EVENTLOG_CACHE_WRITE_BEHIND = True  # as a project's settings might


@pytest.mark.django_db(transaction=True)
def test_written_at_commit(
    project_writes_behind, eventlog_sync_cache_writes, eventlog_cache
):
    assert conf.EVENTLOG_CACHE_WRITE_BEHIND is False
    state = make_log(Opened("ada"), kind="account")
    Log.objects.reduce(state.log_id, Account)
    assert cache_stats().writes == 1


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("amount", [10, 20])
def test_no_entry_outlives_its_test(eventlog_cache, amount):
    # The same log id in two tests: the second must not see the first's entry.
    assert conf.EVENTLOG_CACHE_ALIAS == CACHE_ALIAS
    make_log(Opened("ada"), Deposited(amount), log_id=SHARED_ID)
    assert Log.objects.reduce(SHARED_ID, Account).aggregate.balance == amount
    assert (cache_stats().misses, cache_stats().hits) == (1, 0)
"""


def test_the_pytest_plugin_fixtures(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytester.makeconftest(
        'pytest_plugins = ["django_eventlog.testing.pytest_plugin"]\n'
    )
    pytester.makepyfile(test_plugin=PLUGIN_TESTS)
    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    if os.environ.get("EVENTLOG_DB") == "postgresql":
        # pytest-django names the test database after this one: keep it apart
        # from the test database of the run we are in.
        name = settings.DATABASES["default"]["NAME"].removeprefix("test_")
        monkeypatch.setenv("PGDATABASE", f"{name}_plugin")
    result = pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", "--ds=testproject.settings", "-W", "error"
    )
    result.assert_outcomes(passed=6)


# Flushing test databases with Django's runner


@pytest.mark.parametrize(
    "runner",
    [
        "",  # the settings' TEST_RUNNER, as the demo project sets it
        "django_eventlog.testing.runner.DiscoverRunner",
        "django.test.runner.DiscoverRunner",
    ],
)
def test_django_runner_flushes_only_with_allow_flush(
    runner: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    if os.environ.get("EVENTLOG_DB") == "postgresql":
        # The runner names its test database after this one: keep it apart
        # from the test database of the run we are in.
        name = settings.DATABASES["default"]["NAME"].removeprefix("test_")
        monkeypatch.setenv("PGDATABASE", f"{name}_runner")
    command = [sys.executable, "manage.py", "test", "tests.flush_cases", "--noinput"]
    if runner:
        command += ["--testrunner", runner]
    result = subprocess.run(
        command, capture_output=True, text=True, check=False, cwd=ROOT, timeout=120
    )
    if runner != "django.test.runner.DiscoverRunner":
        assert result.returncode == 0, result.stderr
        assert "Ran 2 tests" in result.stderr
        assert "\nOK\n" in result.stderr
    else:
        # Django's own runner: the store refuses the flush after the first test.
        assert result.returncode != 0
        assert "couldn't be flushed" in result.stderr
        assert "immutable" in result.stderr or "cannot be emptied" in result.stderr


# Optional dependencies


def run_python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
    )


def test_the_testing_package_needs_neither_factory_boy_nor_pytest() -> None:
    code = (
        "import sys\n"
        "sys.modules['factory'] = None\n"
        "sys.modules['pytest'] = None\n"
        "import django_eventlog.testing as testing\n"
        "from django_eventlog.testing import CACHE_ALIAS, fresh_cache, make_log\n"
        "assert 'django_eventlog.models' not in sys.modules\n"
        "for load in (\n"
        "    lambda: testing.LogFactory,\n"
        "    lambda: __import__('django_eventlog.testing.factories'),\n"
        "):\n"
        "    try:\n"
        "        load()\n"
        "    except ImportError as e:\n"
        "        print(e)\n"
        "try:\n"
        "    from django_eventlog.testing import LogFactory\n"
        "except ImportError as e:\n"
        "    print(type(e).__name__, e)\n"
    )
    result = run_python(code)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 3, result.stdout
    assert all("pip install factory-boy" in line for line in lines), lines
    assert lines[2].startswith("ImportError ")


def test_only_the_plugin_imports_pytest() -> None:
    code = (
        "import sys\n"
        "import django_eventlog.testing\n"
        "import django_eventlog.testing.factories\n"
        "assert 'pytest' not in sys.modules, 'pytest was imported'\n"
        "import django_eventlog.testing.pytest_plugin\n"
        "assert 'pytest' in sys.modules\n"
        "print('ok')\n"
    )
    result = run_python(code)
    assert result.stdout.strip() == "ok", result.stderr
