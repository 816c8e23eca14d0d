"""System checks of the EVENTLOG_* settings and of aggregates' options."""

from __future__ import annotations

import dataclasses
import gc
import io
import logging
import re
import weakref
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from django.core import checks
from django.core.cache import caches
from django.core.management import call_command
from django.db import connection
from django.test.utils import override_settings

from django_eventlog import (
    Aggregate,
    AlwaysCache,
    EventRecord,
    InvalidArgument,
    LogAgePolicy,
    NeverCache,
)
from django_eventlog.caching import cache_key
from django_eventlog.checks import (
    check_aggregates_cacheable,
    check_settings,
    check_stored_types,
)
from django_eventlog.models import Event, Log
from django_eventlog.sql import catalog_statements
from testproject.payments.events import Payment
from tests.domain import Account, open_account
from tests.test_admin import Tally


class RefusesToBeBuilt:
    """A policy class whose constructor raises something other than TypeError."""

    def __init__(self) -> None:
        raise InvalidArgument("needs configuration")

    def should_cache(self, reduction: Any) -> bool:
        return True


def check_ids() -> list[str]:
    return [message.id for message in check_settings() if message.id]


def test_defaults_pass() -> None:
    assert check_ids() == []


@pytest.mark.django_db  # Django 6's own checks read the database
def test_checks_are_registered_with_django() -> None:
    from django.core import checks

    with override_settings(EVENTLOG_CHUNK_SIZE=0):
        found = [m.id for m in checks.run_checks()]
    assert "django_eventlog.E001" in found


# Sizes: E001-E004


@pytest.mark.parametrize(
    ("setting", "check_id"),
    [
        ("EVENTLOG_CHUNK_SIZE", "django_eventlog.E001"),
        ("EVENTLOG_PAGE_SIZE", "django_eventlog.E002"),
        ("EVENTLOG_MAX_PAGE_SIZE", "django_eventlog.E003"),
    ],
)
@pytest.mark.parametrize("value", [0, -5, "100", 1.5, True, None])
def test_non_positive_integers_are_errors(
    setting: str, check_id: str, value: object
) -> None:
    with override_settings(**{setting: value}):
        assert check_ids() == [check_id]


def test_page_size_above_maximum_is_an_error() -> None:
    with override_settings(EVENTLOG_PAGE_SIZE=500, EVENTLOG_MAX_PAGE_SIZE=100):
        assert check_ids() == ["django_eventlog.E004"]


# Caching: E005-E008, E013


def test_e005_cache_alias_not_in_caches() -> None:
    with override_settings(EVENTLOG_CACHE_ALIAS="missing"):
        messages = check_settings()
    assert [m.id for m in messages] == ["django_eventlog.E005"]
    assert "'missing'" in messages[0].msg
    with override_settings(
        CACHES={"default": {"BACKEND": "django.core.cache.backends.dummy.DummyCache"}},
        EVENTLOG_CACHE_ALIAS="default",
    ):
        assert check_ids() == []


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("no_such_module.Policy", "Cannot import caching policy"),
        ("nodots", "Cannot import caching policy"),
        ("django_eventlog.policies.NoSuchPolicy", "Cannot import caching policy"),
        ("django_eventlog.conf.DEFAULTS", "has no should_cache() method"),
        (object(), "has no should_cache() method"),
        (5, "has no should_cache() method"),
        (None, "has no should_cache() method"),
    ],
)
def test_e006_bad_policy_setting(value: object, expected: str) -> None:
    with override_settings(EVENTLOG_CACHE_POLICY=value):
        messages = check_settings()
    assert [m.id for m in messages] == ["django_eventlog.E006"]
    assert messages[0].msg.startswith("EVENTLOG_CACHE_POLICY: ")
    assert expected in messages[0].msg


@pytest.mark.parametrize(
    "value",
    [
        "django_eventlog.policies.NeverCache",
        "django_eventlog.policies.LogLengthPolicy",
        "tests.test_policies.AT_LEAST_THREE",
        LogAgePolicy.until(timedelta(days=1)),
    ],
)
def test_good_policy_settings_pass(value: object) -> None:
    with override_settings(EVENTLOG_CACHE_POLICY=value):
        assert check_ids() == []


def test_e006_policy_class_that_needs_arguments() -> None:
    with override_settings(EVENTLOG_CACHE_POLICY="tests.domain.Opened"):
        assert check_ids() == ["django_eventlog.E006"]


def test_e006_reports_a_policy_class_whose_constructor_raises() -> None:
    path = "tests.test_checks.RefusesToBeBuilt"
    with override_settings(EVENTLOG_CACHE_POLICY=path):
        messages = check_settings()
    assert [m.id for m in messages] == ["django_eventlog.E006"]
    assert "needs configuration" in messages[0].msg


@pytest.mark.parametrize("value", [0, -1, "60", 1.5, True])
def test_e007_bad_timeout(value: object) -> None:
    with override_settings(EVENTLOG_CACHE_TIMEOUT=value):
        assert check_ids() == ["django_eventlog.E007"]


@pytest.mark.parametrize("value", [None, 1, 86400 * 365])
def test_good_timeouts_pass(value: object) -> None:
    with override_settings(EVENTLOG_CACHE_TIMEOUT=value):
        assert check_ids() == []


@pytest.mark.parametrize(
    "value", ["", "a b", "a:b", "a*", "é", "x" * 51, 5, None, b"eventlog"]
)
def test_e008_bad_key_prefix(value: object) -> None:
    with override_settings(EVENTLOG_CACHE_KEY_PREFIX=value):
        assert check_ids() == ["django_eventlog.E008"]


@pytest.mark.parametrize("value", ["x", "my-app.v2_cache", "x" * 50])
def test_good_key_prefixes_pass(value: str) -> None:
    with override_settings(EVENTLOG_CACHE_KEY_PREFIX=value):
        assert check_ids() == []


@pytest.mark.parametrize("value", [1, 0, "yes", None])
def test_write_behind_must_be_a_bool(value: object) -> None:
    with override_settings(EVENTLOG_CACHE_WRITE_BEHIND=value):
        assert check_ids() == ["django_eventlog.E013"]


@pytest.mark.parametrize("value", [True, False])
def test_write_behind_bools_pass(value: bool) -> None:
    with override_settings(EVENTLOG_CACHE_WRITE_BEHIND=value):
        assert check_ids() == []


# Aggregate options: E009-E011


def _apply(self: Aggregate, record: EventRecord) -> None:
    pass


_OPTIONS = ("cache_policy", "cache_timeout", "version")


@pytest.fixture
def defined_here() -> Iterator[list[weakref.ref[type[Aggregate]]]]:
    """Weak references to the aggregate classes a test defines.

    A passing test deletes its classes and checks that they were collected.
    A failing one keeps them alive in its traceback, where the checks of later
    tests would still find them: their options are reset to valid ones.
    """
    refs: list[weakref.ref[type[Aggregate]]] = []
    yield refs
    for ref in refs:
        cls = ref()
        if cls is not None:
            for option in _OPTIONS:
                if option in cls.__dict__:
                    delattr(cls, option)


@pytest.mark.parametrize(
    ("attribute", "value", "check_id", "message"),
    [
        (
            "cache_policy",
            object(),
            "E009",
            "cache_policy must be an instance with should_cache().",
        ),
        (
            "cache_policy",
            "django_eventlog.policies.NeverCache",  # a path is a setting's form
            "E009",
            "cache_policy must be an instance with should_cache().",
        ),
        ("cache_timeout", 0, "E010", "cache_timeout must be positive seconds or None."),
        (
            "cache_timeout",
            -5,
            "E010",
            "cache_timeout must be positive seconds or None.",
        ),
        (
            "cache_timeout",
            "60",
            "E010",
            "cache_timeout must be positive seconds or None.",
        ),
        (
            "cache_timeout",
            1.5,
            "E010",
            "cache_timeout must be positive seconds or None.",
        ),
        (
            "cache_timeout",
            True,
            "E010",
            "cache_timeout must be positive seconds or None.",
        ),
        ("version", 0, "E011", "version must be a positive integer."),
        ("version", -1, "E011", "version must be a positive integer."),
        ("version", "2", "E011", "version must be a positive integer."),
        ("version", None, "E011", "version must be a positive integer."),
        ("version", True, "E011", "version must be a positive integer."),
    ],
)
def test_e009_e010_e011_bad_aggregate_options(
    defined_here: list[weakref.ref[type[Aggregate]]],
    attribute: str,
    value: object,
    check_id: str,
    message: str,
) -> None:
    bad = type(
        "BadAggregate",
        (Aggregate,),
        {attribute: value, "apply": _apply, "__module__": __name__},
    )

    class ChildOfBad(bad):  # type: ignore[valid-type,misc]
        pass

    defined_here.extend([weakref.ref(bad), weakref.ref(ChildOfBad)])

    found = [(m.id, m.obj, m.msg) for m in check_settings()]
    assert found == [
        (f"django_eventlog.{check_id}", bad, f"{__name__}.BadAggregate.{message}"),
        # Subclasses of subclasses are checked too, and inherit the option.
        (
            f"django_eventlog.{check_id}",
            ChildOfBad,
            f"{__name__}.{ChildOfBad.__qualname__}.{message}",
        ),
    ]

    del bad, ChildOfBad, found
    gc.collect()
    # Once collected they no longer exist for the checks (nor for other tests).
    assert [ref() for ref in defined_here] == [None, None]
    assert check_ids() == []


def test_one_aggregate_with_every_option_wrong(
    defined_here: list[weakref.ref[type[Aggregate]]],
) -> None:
    class Broken(Aggregate):
        cache_policy = 42  # type: ignore[assignment]
        cache_timeout = -1
        version = 0

        def apply(self, record: EventRecord) -> None:
            pass

    defined_here.append(weakref.ref(Broken))
    messages = [(m.id, m.obj) for m in check_settings()]
    assert messages == [
        ("django_eventlog.E009", Broken),
        ("django_eventlog.E010", Broken),
        ("django_eventlog.E011", Broken),
    ]

    del Broken, messages
    gc.collect()
    assert defined_here[0]() is None
    assert check_ids() == []


def test_e009_a_policy_class_instead_of_an_instance(
    defined_here: list[weakref.ref[type[Aggregate]]],
) -> None:
    class ClassNotInstance(Aggregate):
        cache_policy = AlwaysCache  # type: ignore[assignment]

        def apply(self, record: EventRecord) -> None:
            pass

    defined_here.append(weakref.ref(ClassNotInstance))
    ids = [m.id for m in check_settings() if m.obj is ClassNotInstance]
    assert ids == ["django_eventlog.E009"]


# Admin aggregates: E012


@pytest.mark.parametrize(
    "value",
    [
        {"payment": Payment},
        {"payment": "testproject.payments.events.Payment", "account": Tally},
        {},
    ],
)
def test_valid_admin_aggregates_pass_the_checks(value: object) -> None:
    with override_settings(EVENTLOG_ADMIN_AGGREGATES=value):
        assert check_ids() == []


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (["payment"], "it must be a dict of log kind to aggregate."),
        ("testproject.payments.events.Payment", "it must be a dict"),
        ({1: Payment}, "it must be a dict of log kind to aggregate."),
        (
            {"payment": "testproject.payments.nowhere.Payment"},
            "Cannot import aggregate",
        ),
        ({"payment": "NoDots"}, "Cannot import aggregate"),
        ({"payment": "django_eventlog.models.Log"}, "is not an Aggregate subclass"),
        ({"payment": dict}, "is not an Aggregate subclass"),
        ({"payment": Payment()}, "is not an Aggregate subclass"),
        ({"payment": None}, "is not an Aggregate subclass"),
        (
            {"payment": "django_eventlog.aggregates.Aggregate"},
            "Aggregate does not implement apply()",
        ),
    ],
)
def test_invalid_admin_aggregates_are_error_e012(value: object, message: str) -> None:
    with override_settings(EVENTLOG_ADMIN_AGGREGATES=value):
        errors = check_settings()
    assert [e.id for e in errors] == ["django_eventlog.E012"]
    assert errors[0].msg.startswith("EVENTLOG_ADMIN_AGGREGATES: ")
    assert message in errors[0].msg


# Event size: E016


@pytest.mark.parametrize("value", [0, -1, "1MB", 1.5, True, None])
def test_e016_max_event_size_must_be_a_positive_integer(value: object) -> None:
    with override_settings(EVENTLOG_MAX_EVENT_SIZE=value):
        errors = check_settings()
    assert [e.id for e in errors] == ["django_eventlog.E016"]
    assert (
        errors[0].msg == "EVENTLOG_MAX_EVENT_SIZE must be a positive integer (bytes)."
    )
    assert errors[0].hint == "Remove it to use the default, 1048576 (1 MiB)."


@pytest.mark.parametrize("value", [1, 1024, 16 * 1024 * 1024])
def test_e016_positive_sizes_pass(value: int) -> None:
    with override_settings(EVENTLOG_MAX_EVENT_SIZE=value):
        assert check_ids() == []


# The projections' settings: E017 to E022


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("tests.projections.Balances", "must be a list of dotted paths"),
        ([1], "must be a list of dotted paths"),
        (["tests.nowhere.Summary"], "cannot import 'tests.nowhere.Summary'"),
        (["tests.domain.Account"], "is not a subclass of Projection"),
        (
            ["tests.projections.Mailer", "tests.projections.Mailer"],
            "two projections are named 'tests.mailer'",
        ),
    ],
)
def test_e017_projections_that_cannot_run(value: object, message: str) -> None:
    with override_settings(EVENTLOG_PROJECTIONS=value):
        errors = check_settings()
    assert [e.id for e in errors] == ["django_eventlog.E017"]
    assert message in errors[0].msg


def test_e017_configured_projections_pass() -> None:
    from tests.projections import ALL

    with override_settings(EVENTLOG_PROJECTIONS=ALL):
        assert check_ids() == []


@pytest.mark.parametrize(
    ("name", "value", "check_id"),
    [
        ("EVENTLOG_PROJECTION_BATCH_SIZE", 0, "E018"),
        ("EVENTLOG_PROJECTION_BATCH_SIZE", "500", "E018"),
        ("EVENTLOG_PROJECTION_RETRIES", -1, "E019"),
        ("EVENTLOG_PROJECTION_RETRIES", True, "E019"),
        ("EVENTLOG_PROJECTION_RETRIES", 1.5, "E019"),
        ("EVENTLOG_PROJECTION_RETRY_DELAY", -0.1, "E020"),
        ("EVENTLOG_PROJECTION_RETRY_DELAY", None, "E020"),
        ("EVENTLOG_PROJECTION_POLL_INTERVAL", 0, "E021"),
        ("EVENTLOG_PROJECTION_POLL_INTERVAL", float("inf"), "E021"),
        ("EVENTLOG_PROJECTION_HORIZON_WARNING", "60", "E022"),
        ("EVENTLOG_PROJECTION_HORIZON_WARNING", 0, "E022"),
    ],
)
def test_e018_to_e022_bad_projection_settings(
    name: str, value: object, check_id: str
) -> None:
    with override_settings(**{name: value}):
        errors = check_settings()
    assert [e.id for e in errors] == [f"django_eventlog.{check_id}"]
    assert errors[0].msg.startswith(name)
    assert errors[0].hint is None or "default" in errors[0].hint


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("EVENTLOG_PROJECTION_RETRIES", 0),
        ("EVENTLOG_PROJECTION_RETRY_DELAY", 0),
        ("EVENTLOG_PROJECTION_POLL_INTERVAL", 0.05),
        ("EVENTLOG_PROJECTION_HORIZON_WARNING", 5),
    ],
)
def test_good_projection_settings_pass(name: str, value: object) -> None:
    with override_settings(**{name: value}):
        assert check_ids() == []


# Aggregates that can never be cached: W001


def cacheable_warnings(*classes: type[Aggregate]) -> list[tuple[object, str]]:
    """The W001 warnings about ``classes``, as (object, message)."""
    return [
        (m.obj, m.msg)
        for m in check_aggregates_cacheable()
        if m.id == "django_eventlog.W001" and m.obj in classes
    ]


def _plain_class() -> type[Aggregate]:
    class Plain(Aggregate):
        def __init__(self) -> None:
            self.count = 0

        def apply(self, record: EventRecord) -> None:
            self.count += 1

    return Plain


def _untyped_dataclass() -> type[Aggregate]:
    @dataclasses.dataclass
    class Untyped(Aggregate):
        seen: Any = dataclasses.field(default_factory=set)  # comes back a list

        def apply(self, record: EventRecord) -> None:
            self.seen.add(record.index)

    return Untyped


def _typed_dataclass() -> type[Aggregate]:
    @dataclasses.dataclass
    class Typed(Aggregate):
        count: int = 0

        def apply(self, record: EventRecord) -> None:
            self.count += 1

    return Typed


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (_plain_class, "Encoding objects of type Plain is unsupported"),
        (_untyped_dataclass, "it does not decode back to an equal state"),
        (_typed_dataclass, None),
    ],
    ids=["plain-class", "untyped-field", "typed-dataclass"],
)
def test_w001_names_exactly_the_aggregates_the_cache_refuses(
    defined_here: list[weakref.ref[type[Aggregate]]],
    django_capture_on_commit_callbacks: Any,
    make: Any,
    reason: str | None,
) -> None:
    aggregate_class = make()
    defined_here.append(weakref.ref(aggregate_class))
    name = f"{__name__}.{aggregate_class.__qualname__}"
    warned = cacheable_warnings(aggregate_class)
    if reason is None:
        assert warned == []
    else:
        assert warned == [
            (aggregate_class, f"{name} reductions are never cached: {reason}.")
        ]
    # The check's verdict is the cache's: reduce, commit, look in the cache.
    state = open_account(5, 7)
    with django_capture_on_commit_callbacks(execute=True):
        Log.objects.reduce(state.log_id, aggregate_class)
    cached = caches["default"].get(cache_key(aggregate_class, state.log_id))
    assert (cached is not None) == (reason is None)


@pytest.mark.django_db  # Django 6's own checks read the database
def test_w001_is_a_warning_with_a_hint_and_reaches_django() -> None:
    plain = _plain_class()
    warnings = [m for m in checks.run_checks() if m.obj is plain]
    assert [(m.id, m.level) for m in warnings] == [
        ("django_eventlog.W001", checks.WARNING)
    ]
    assert warnings[0].hint == (
        "Make it a dataclass whose fields are typed like event fields and have "
        "defaults, or set cache_policy = NeverCache()."
    )
    # W001 is a warning: the settings checks, which gate start-up, ignore it.
    assert check_ids() == []


def test_w001_an_aggregate_that_needs_arguments() -> None:
    @dataclasses.dataclass
    class NeedsOwner(Aggregate):
        owner: str

        def apply(self, record: EventRecord) -> None:
            pass

    [(_, message)] = cacheable_warnings(NeedsOwner)
    assert "reductions are never cached: it cannot be created without arguments" in (
        message
    )
    assert "missing 1 required positional argument: 'owner'" in message


def test_w001_not_for_aggregates_whose_policy_is_never_cache() -> None:
    plain = _plain_class()
    never = type("NeverCachedPlain", (plain,), {"cache_policy": NeverCache()})
    assert cacheable_warnings(plain, never) == [
        (
            plain,
            f"{__name__}.{plain.__qualname__} reductions are never cached: "
            "Encoding objects of type Plain is unsupported.",
        )
    ]
    with override_settings(EVENTLOG_CACHE_POLICY="django_eventlog.policies.NeverCache"):
        assert cacheable_warnings(plain, never) == []
    # An aggregate's own policy wins over the setting.
    always = type("AlwaysCachedPlain", (plain,), {"cache_policy": AlwaysCache()})
    with override_settings(EVENTLOG_CACHE_POLICY="django_eventlog.policies.NeverCache"):
        assert [obj for obj, _ in cacheable_warnings(plain, always)] == [always]


def test_w001_not_for_abstract_bases_but_for_their_subclasses() -> None:
    class Base(Aggregate):  # no apply(): never reduced itself
        def __init__(self) -> None:
            self.items: set[int] = set()

    class Concrete(Base):
        def apply(self, record: EventRecord) -> None:
            self.items.add(record.index)

    assert [obj for obj, _ in cacheable_warnings(Base, Concrete)] == [Concrete]


def test_w001_checks_admin_aggregates_once() -> None:
    plain = _plain_class()
    with override_settings(EVENTLOG_ADMIN_AGGREGATES={"account": plain, "x": plain}):
        assert [obj for obj, _ in cacheable_warnings(plain)] == [plain]


def test_w001_spares_the_example_aggregates() -> None:
    assert cacheable_warnings(Payment, Tally, Account) == []
    assert len(check_aggregates_cacheable()) == len(
        [m for m in check_aggregates_cacheable() if m.id == "django_eventlog.W001"]
    )


# Stored types without a class: W002 (a deployment check)


def retire(type_name: str) -> None:
    """Store an event of a type no class claims, as an older release would have."""
    state = open_account(5)
    Event.objects.create(
        log_id=state.log_id, index=state.next_index, type=type_name, payload={}
    )


def w002(messages: list[checks.CheckMessage]) -> list[checks.CheckMessage]:
    return [m for m in messages if m.id == "django_eventlog.W002"]


@pytest.mark.django_db
def test_w002_a_stored_type_without_a_class_is_a_warning() -> None:
    retire("tests.retired")
    retire("tests.retired")
    retire("tests.gone")
    warnings = check_stored_types()
    assert [m.level for m in warnings] == [checks.WARNING, checks.WARNING]
    assert [m.msg for m in warnings] == [
        f"Stored events of type {name!r} have no DomainEvent class: reading "
        "them raises UnknownEventType."
        for name in ("tests.gone", "tests.retired")
    ]
    assert all("AppConfig.ready()" in str(m.hint) for m in warnings)
    assert "type_name = 'tests.gone'" in str(warnings[0].hint)


@pytest.mark.django_db
def test_w002_none_when_every_stored_type_has_a_class() -> None:
    open_account(1, 2)
    assert check_stored_types() == []
    assert check_stored_types(databases=["default"]) == []


@pytest.mark.django_db
def test_w002_none_on_an_empty_store() -> None:
    assert check_stored_types() == []


@pytest.mark.django_db
def test_w002_only_check_deploy_runs_it() -> None:
    """Off the request path: plain ``check`` (which runserver, migrate and the
    test runner run) never reads the database for it."""
    retire("tests.retired")
    assert w002(checks.run_checks()) == []
    assert w002(checks.run_checks(databases=["default"])) == []
    assert len(w002(checks.run_checks(include_deployment_checks=True))) == 1
    out, err = io.StringIO(), io.StringIO()
    call_command("check", stdout=out, stderr=err)
    assert "W002" not in out.getvalue() + err.getvalue()
    call_command("check", "--deploy", stdout=out, stderr=err)
    assert "?: (django_eventlog.W002) Stored events of type 'tests.retired'" in (
        err.getvalue()
    )
    out, err = io.StringIO(), io.StringIO()
    call_command(
        "check",
        "--deploy",
        "--tag",
        "django_eventlog_stored_types",
        "--database",
        "default",
        stderr=err,
    )
    assert re.findall(r"\(([\w.]+)\)", err.getvalue()) == ["django_eventlog.W002"]


@pytest.mark.django_db
def test_w002_skips_a_database_without_the_events_table(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Not migrated (or unreachable): no crash, no warning of the check, a
    logged note; the caller's transaction stays usable."""
    retire("tests.retired")
    with connection.cursor() as cursor:  # rolled back with the test
        cursor.execute("ALTER TABLE django_eventlog_event RENAME TO eventlog_moved")
    with caplog.at_level(logging.WARNING, logger="django_eventlog"):
        assert check_stored_types() == []
    [record] = caplog.records
    assert record.getMessage().startswith(
        "django_eventlog.W002 skipped: the stored event types of database "
        "'default' cannot be read: "
    )
    assert Log.objects.count() == 1


@pytest.mark.django_db
def test_w002_ignores_databases_without_the_events(settings: Any) -> None:
    class ElsewhereRouter:
        def allow_migrate(self, db: str, app_label: str, **hints: Any) -> bool:
            return db != "default"

    retire("tests.retired")
    settings.DATABASE_ROUTERS = [ElsewhereRouter()]
    assert check_stored_types(databases=["default"]) == []


@pytest.mark.django_db
def test_w002_reads_the_type_names_by_the_type_index() -> None:
    for _ in range(10):
        open_account(1, 2)
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            # As for the kind filter (test_admin_limits): on a few rows a
            # sequential scan is cheaper; turned off, it is still taken if
            # the query cannot use the index at all.
            cursor.execute("SET LOCAL enable_seqscan = off")
            explain = "EXPLAIN ANALYZE"
        else:
            explain = "EXPLAIN QUERY PLAN"
        cursor.execute(f"{explain} {catalog_statements(connection).select_types}")
        plan = "\n".join(" ".join(map(str, row)) for row in cursor.fetchall())
    # The first type, then the next after each: two probes, no table scan.
    assert plan.count("django_eventlog_type_log_idx") == 2, plan
    assert "Seq Scan" not in plan, plan
    assert not re.search(r"SCAN (TABLE )?django_eventlog_event(?! USING)", plan), plan
