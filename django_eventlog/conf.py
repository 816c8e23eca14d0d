"""Settings of django_eventlog, read lazily so ``override_settings`` works."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed
from django.utils.module_loading import import_string

from .exceptions import InvalidArgument
from .validation import check_aggregate_class

if TYPE_CHECKING:
    from django.http import HttpRequest

    from .aggregates import Aggregate, CachingPolicy

#: What ``EVENTLOG_ACTOR`` names: the actor of a request, or None.
ActorFunction = Callable[["HttpRequest"], "str | None"]

DEFAULTS: dict[str, Any] = {
    # Rows fetched per round trip when reduce() streams a log.
    "EVENTLOG_CHUNK_SIZE": 2000,
    # Page size of load() when the caller gives no limit.
    "EVENTLOG_PAGE_SIZE": 100,
    # Largest limit load() accepts.
    "EVENTLOG_MAX_PAGE_SIZE": 1000,
    # The Django cache (a key of CACHES) that holds cached reductions.
    "EVENTLOG_CACHE_ALIAS": "default",
    # Policy of aggregates that set none: an object with should_cache(), or
    # the dotted path of one (or of a class to instantiate).
    "EVENTLOG_CACHE_POLICY": "django_eventlog.policies.AlwaysCache",
    # Seconds a cached reduction lives; None keeps it until evicted.
    "EVENTLOG_CACHE_TIMEOUT": 86400,
    # True: cached reductions are written by a background thread after the
    # commit, so reduce() returns without waiting for the cache (the crate's
    # "written asynchronously"). False: written before reduce() returns (or
    # at the commit of the caller's transaction).
    "EVENTLOG_CACHE_WRITE_BEHIND": False,
    # Start of every cache key this library writes.
    "EVENTLOG_CACHE_KEY_PREFIX": "eventlog",
    # Log kind -> Aggregate class (or its dotted path) whose state the admin
    # timeline shows after each event.
    "EVENTLOG_ADMIN_AGGREGATES": {},
    # Cache outages (connection errors, timeouts) in a row after which the
    # cache is skipped for EVENTLOG_CACHE_BREAKER_COOLOFF seconds.
    "EVENTLOG_CACHE_BREAKER_FAILURES": 5,
    # Seconds the cache is skipped before one call probes it again.
    "EVENTLOG_CACHE_BREAKER_COOLOFF": 30,
    # Largest event accepted, in bytes of its encoded JSON (1 MiB).
    "EVENTLOG_MAX_EVENT_SIZE": 1_048_576,
    # The projections and subscribers the runner runs: dotted paths of
    # Projection subclasses.
    "EVENTLOG_PROJECTIONS": [],
    # Events a projection handles per batch (one transaction when atomic).
    "EVENTLOG_PROJECTION_BATCH_SIZE": 1000,
    # Times a failing event is retried before its projection stops (failed).
    "EVENTLOG_PROJECTION_RETRIES": 3,
    # Seconds before the first retry; each further retry waits twice as long.
    "EVENTLOG_PROJECTION_RETRY_DELAY": 0.5,
    # Seconds an idle runner waits between looks at the feed.
    "EVENTLOG_PROJECTION_POLL_INTERVAL": 0.1,
    # Seconds the feed's horizon may stand still, while events wait behind
    # it, before the runner logs a warning naming what holds it.
    "EVENTLOG_PROJECTION_HORIZON_WARNING": 60,
    # PostgreSQL (psycopg 3): prepare the library's hot statements on each
    # connection (django_eventlog.prepared). False behind a pooler that cannot
    # keep prepared statements (PgBouncer before 1.21 in transaction mode).
    "EVENTLOG_PREPARED_STATEMENTS": True,
    # The function (or its dotted path) EventContextMiddleware asks for the
    # actor of a request; None: "user:<pk>" of request.user, if signed in.
    "EVENTLOG_ACTOR": None,
}


_values: dict[str, Any] = {}


def setting(name: str) -> Any:
    """Return the raw value of an ``EVENTLOG_*`` setting, or its default.

    Read once, then kept until Django signals that a setting changed (as
    ``override_settings`` and pytest-django's ``settings`` do): the hot paths
    read settings on every call, and an absent one costs Django's
    ``getattr`` a raised ``AttributeError`` each time (about 4 us).
    """
    try:
        return _values[name]
    except KeyError:
        value = _values[name] = getattr(settings, name, DEFAULTS[name])
        return value


def _forget(*, setting: str, **kwargs: Any) -> None:
    _values.pop(setting, None)


setting_changed.connect(_forget, dispatch_uid="django_eventlog.conf")


class Settings:
    """Typed access to the ``EVENTLOG_*`` settings and their defaults."""

    _get = staticmethod(setting)

    @property
    def EVENTLOG_CHUNK_SIZE(self) -> int:
        return int(self._get("EVENTLOG_CHUNK_SIZE"))

    @property
    def EVENTLOG_PAGE_SIZE(self) -> int:
        return int(self._get("EVENTLOG_PAGE_SIZE"))

    @property
    def EVENTLOG_MAX_PAGE_SIZE(self) -> int:
        return int(self._get("EVENTLOG_MAX_PAGE_SIZE"))

    @property
    def EVENTLOG_CACHE_ALIAS(self) -> str:
        return str(self._get("EVENTLOG_CACHE_ALIAS"))

    @property
    def EVENTLOG_CACHE_POLICY(self) -> CachingPolicy:
        return load_policy(self._get("EVENTLOG_CACHE_POLICY"))

    @property
    def EVENTLOG_CACHE_TIMEOUT(self) -> int | None:
        value = self._get("EVENTLOG_CACHE_TIMEOUT")
        return None if value is None else int(value)

    @property
    def EVENTLOG_CACHE_WRITE_BEHIND(self) -> bool:
        return self._get("EVENTLOG_CACHE_WRITE_BEHIND") is True

    @property
    def EVENTLOG_PREPARED_STATEMENTS(self) -> bool:
        return self._get("EVENTLOG_PREPARED_STATEMENTS") is True

    @property
    def EVENTLOG_CACHE_KEY_PREFIX(self) -> str:
        return str(self._get("EVENTLOG_CACHE_KEY_PREFIX"))

    @property
    def EVENTLOG_ADMIN_AGGREGATES(self) -> dict[str, type[Aggregate]]:
        return {
            kind: load_aggregate(value)
            for kind, value in dict(self._get("EVENTLOG_ADMIN_AGGREGATES")).items()
        }

    @property
    def EVENTLOG_CACHE_BREAKER_FAILURES(self) -> int:
        return int(self._get("EVENTLOG_CACHE_BREAKER_FAILURES"))

    @property
    def EVENTLOG_CACHE_BREAKER_COOLOFF(self) -> float:
        return float(self._get("EVENTLOG_CACHE_BREAKER_COOLOFF"))

    @property
    def EVENTLOG_MAX_EVENT_SIZE(self) -> int:
        return int(self._get("EVENTLOG_MAX_EVENT_SIZE"))

    @property
    def EVENTLOG_PROJECTIONS(self) -> list[str]:
        return list(self._get("EVENTLOG_PROJECTIONS"))

    @property
    def EVENTLOG_PROJECTION_BATCH_SIZE(self) -> int:
        return int(self._get("EVENTLOG_PROJECTION_BATCH_SIZE"))

    @property
    def EVENTLOG_PROJECTION_RETRIES(self) -> int:
        return int(self._get("EVENTLOG_PROJECTION_RETRIES"))

    @property
    def EVENTLOG_PROJECTION_RETRY_DELAY(self) -> float:
        return float(self._get("EVENTLOG_PROJECTION_RETRY_DELAY"))

    @property
    def EVENTLOG_PROJECTION_POLL_INTERVAL(self) -> float:
        return float(self._get("EVENTLOG_PROJECTION_POLL_INTERVAL"))

    @property
    def EVENTLOG_PROJECTION_HORIZON_WARNING(self) -> float:
        return float(self._get("EVENTLOG_PROJECTION_HORIZON_WARNING"))

    @property
    def EVENTLOG_ACTOR(self) -> ActorFunction | None:
        return load_actor(self._get("EVENTLOG_ACTOR"))


def load_aggregate(value: object) -> type[Aggregate]:
    """Return the Aggregate subclass a setting names: the class or its path."""
    named = value
    if isinstance(value, str):
        try:
            value = import_string(value)
        except ImportError as e:
            raise ImproperlyConfigured(f"Cannot import aggregate {value!r}: {e}") from e
    try:
        return check_aggregate_class(value)
    except InvalidArgument as e:
        path = f"{named!r}: " if isinstance(named, str) else ""
        raise ImproperlyConfigured(f"{path}{e}") from None


def load_policy(value: object) -> CachingPolicy:
    """Return the policy a setting names: an instance or a dotted path."""
    if isinstance(value, str):
        return _import_policy(value)
    if isinstance(value, type):
        raise ImproperlyConfigured(
            f"{value.__qualname__} is a class; give an instance: {value.__qualname__}()"
        )
    if not callable(getattr(value, "should_cache", None)):
        raise ImproperlyConfigured(
            f"{value!r} is not a caching policy: it has no should_cache() method."
        )
    return value  # type: ignore[return-value]


@functools.lru_cache(maxsize=32)
def _import_policy(path: str) -> CachingPolicy:
    try:
        value = import_string(path)
    except ImportError as e:
        raise ImproperlyConfigured(f"Cannot import caching policy {path!r}: {e}") from e
    if isinstance(value, type):
        try:
            value = value()
        except Exception as e:  # TypeError, or whatever its __init__ raises
            raise ImproperlyConfigured(
                f"Policy class {path!r} cannot be created without arguments: {e!r}"
            ) from e
    return load_policy(value)


def load_actor(value: object) -> ActorFunction | None:
    """Return the actor function a setting names: None, the function or its
    dotted path."""
    if isinstance(value, str):
        return _import_actor(value)
    if value is not None and not callable(value):
        raise ImproperlyConfigured(
            f"{value!r} is neither a function nor the dotted path of one."
        )
    return value


@functools.lru_cache(maxsize=8)
def _import_actor(path: str) -> ActorFunction:
    try:
        value = import_string(path)
    except ImportError as e:
        raise ImproperlyConfigured(f"Cannot import actor function {path!r}: {e}") from e
    if not callable(value):
        raise ImproperlyConfigured(f"{path!r} names {value!r}, which is not callable.")
    return value  # type: ignore[no-any-return]


conf = Settings()
