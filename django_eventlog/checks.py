"""System checks of the ``EVENTLOG_*`` settings, of aggregates and of the
stored event types. Ids are stable, never reused."""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Iterator
from typing import Any

from django.conf import settings
from django.core.checks import CheckMessage, Error, Warning, register
from django.core.exceptions import ImproperlyConfigured
from django.db import DatabaseError, connections, router, transaction

from . import queries
from .aggregates import Aggregate
from .cache_entries import why_uncacheable
from .conf import DEFAULTS, load_actor, load_aggregate, load_policy, setting
from .events import registered_type_names
from .models import Event
from .policies import NeverCache
from .projections import load_projections
from .validation import is_positive_int

logger = logging.getLogger("django_eventlog")

KEY_PREFIX_MAX_LENGTH = 50
#: Stored type names fetched at a time by the deploy check.
TYPE_NAMES_CHUNK = 500


def _subclasses(cls: type[Aggregate]) -> Iterator[type[Aggregate]]:
    for subclass in cls.__subclasses__():
        yield subclass
        yield from _subclasses(subclass)


def _positive_int(
    check_id: str, name: str, *, unit: str = "", default_note: str = ""
) -> list[CheckMessage]:
    """The error of a setting that must be a positive integer, if it is not."""
    if is_positive_int(setting(name)):
        return []
    return [
        Error(
            f"{name} must be a positive integer{unit}.",
            hint=f"Remove it to use the default, {DEFAULTS[name]}{default_note}.",
            id=check_id,
        )
    ]


def check_settings(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """Reject invalid ``EVENTLOG_*`` settings and aggregate cache options."""
    errors: list[CheckMessage] = []
    for check_id, name in (
        ("django_eventlog.E001", "EVENTLOG_CHUNK_SIZE"),
        ("django_eventlog.E002", "EVENTLOG_PAGE_SIZE"),
        ("django_eventlog.E003", "EVENTLOG_MAX_PAGE_SIZE"),
    ):
        errors.extend(_positive_int(check_id, name))
    if not errors and setting("EVENTLOG_PAGE_SIZE") > setting("EVENTLOG_MAX_PAGE_SIZE"):
        errors.append(
            Error(
                "EVENTLOG_PAGE_SIZE may not exceed EVENTLOG_MAX_PAGE_SIZE.",
                id="django_eventlog.E004",
            )
        )
    alias = setting("EVENTLOG_CACHE_ALIAS")
    if alias not in settings.CACHES:
        errors.append(
            Error(
                f"EVENTLOG_CACHE_ALIAS {alias!r} is not a key of CACHES.",
                hint="Name a configured cache, or remove it to use 'default'.",
                id="django_eventlog.E005",
            )
        )
    try:
        load_policy(setting("EVENTLOG_CACHE_POLICY"))
    except ImproperlyConfigured as e:
        errors.append(Error(f"EVENTLOG_CACHE_POLICY: {e}", id="django_eventlog.E006"))
    timeout = setting("EVENTLOG_CACHE_TIMEOUT")
    if timeout is not None and not is_positive_int(timeout):
        errors.append(
            Error(
                "EVENTLOG_CACHE_TIMEOUT must be a positive number of seconds or None.",
                id="django_eventlog.E007",
            )
        )
    if not isinstance(setting("EVENTLOG_CACHE_WRITE_BEHIND"), bool):
        errors.append(
            Error(
                "EVENTLOG_CACHE_WRITE_BEHIND must be True or False.",
                id="django_eventlog.E013",
            )
        )
    if not isinstance(setting("EVENTLOG_PREPARED_STATEMENTS"), bool):
        errors.append(
            Error(
                "EVENTLOG_PREPARED_STATEMENTS must be True or False.",
                id="django_eventlog.E024",
            )
        )
    prefix = setting("EVENTLOG_CACHE_KEY_PREFIX")
    if not (
        isinstance(prefix, str)
        and len(prefix) <= KEY_PREFIX_MAX_LENGTH
        and re.fullmatch(r"[A-Za-z0-9_.-]+", prefix)
    ):
        errors.append(
            Error(
                "EVENTLOG_CACHE_KEY_PREFIX must be 1 to "
                f"{KEY_PREFIX_MAX_LENGTH} letters, digits, '_', '.' or '-'.",
                id="django_eventlog.E008",
            )
        )
    try:
        admin_aggregates = setting("EVENTLOG_ADMIN_AGGREGATES")
        if not isinstance(admin_aggregates, dict) or not all(
            isinstance(kind, str) for kind in admin_aggregates
        ):
            raise ImproperlyConfigured("it must be a dict of log kind to aggregate.")
        for value in admin_aggregates.values():
            load_aggregate(value)
    except ImproperlyConfigured as e:
        errors.append(
            Error(f"EVENTLOG_ADMIN_AGGREGATES: {e}", id="django_eventlog.E012")
        )
    errors.extend(
        _positive_int("django_eventlog.E014", "EVENTLOG_CACHE_BREAKER_FAILURES")
    )
    cooloff = setting("EVENTLOG_CACHE_BREAKER_COOLOFF")
    if not (
        isinstance(cooloff, (int, float))
        and not isinstance(cooloff, bool)
        and 0 < cooloff < math.inf
    ):
        errors.append(
            Error(
                "EVENTLOG_CACHE_BREAKER_COOLOFF must be a positive number of seconds.",
                hint="Remove it to use the default, "
                f"{DEFAULTS['EVENTLOG_CACHE_BREAKER_COOLOFF']}.",
                id="django_eventlog.E015",
            )
        )
    for aggregate_class in _subclasses(Aggregate):
        name = f"{aggregate_class.__module__}.{aggregate_class.__qualname__}"
        policy = aggregate_class.cache_policy
        if policy is not None and (
            isinstance(policy, type)
            or not callable(getattr(policy, "should_cache", None))
        ):
            errors.append(
                Error(
                    f"{name}.cache_policy must be an instance with should_cache().",
                    obj=aggregate_class,
                    id="django_eventlog.E009",
                )
            )
        timeout = aggregate_class.cache_timeout
        if timeout is not None and not is_positive_int(timeout):
            errors.append(
                Error(
                    f"{name}.cache_timeout must be positive seconds or None.",
                    obj=aggregate_class,
                    id="django_eventlog.E010",
                )
            )
        if not is_positive_int(aggregate_class.version):
            errors.append(
                Error(
                    f"{name}.version must be a positive integer.",
                    obj=aggregate_class,
                    id="django_eventlog.E011",
                )
            )
    errors.extend(
        _positive_int(
            "django_eventlog.E016",
            "EVENTLOG_MAX_EVENT_SIZE",
            unit=" (bytes)",
            default_note=" (1 MiB)",
        )
    )
    errors.extend(_projection_settings())
    try:
        load_actor(setting("EVENTLOG_ACTOR"))
    except ImproperlyConfigured as e:
        errors.append(
            Error(
                f"EVENTLOG_ACTOR: {e}",
                hint="Name a function that takes the request and returns the "
                "actor (a str) or None, or remove it to use 'user:<pk>'.",
                id="django_eventlog.E023",
            )
        )
    return errors


def _projection_settings() -> list[CheckMessage]:
    """The errors of the projections' settings (E017 to E022)."""
    errors: list[CheckMessage] = []
    paths = setting("EVENTLOG_PROJECTIONS")
    try:
        if not isinstance(paths, (list, tuple)) or not all(
            isinstance(path, str) for path in paths
        ):
            raise ImproperlyConfigured(
                "EVENTLOG_PROJECTIONS must be a list of dotted paths of "
                "Projection subclasses."
            )
        load_projections()
    except ImproperlyConfigured as e:
        errors.append(Error(str(e), id="django_eventlog.E017"))
    errors.extend(
        _positive_int("django_eventlog.E018", "EVENTLOG_PROJECTION_BATCH_SIZE")
    )
    retries = setting("EVENTLOG_PROJECTION_RETRIES")
    if isinstance(retries, bool) or not (isinstance(retries, int) and retries >= 0):
        errors.append(
            Error(
                "EVENTLOG_PROJECTION_RETRIES must be an integer, 0 or more.",
                hint="Remove it to use the default, "
                f"{DEFAULTS['EVENTLOG_PROJECTION_RETRIES']}.",
                id="django_eventlog.E019",
            )
        )
    for check_id, name, minimum in (
        ("django_eventlog.E020", "EVENTLOG_PROJECTION_RETRY_DELAY", "0 or more"),
        ("django_eventlog.E021", "EVENTLOG_PROJECTION_POLL_INTERVAL", "positive"),
        ("django_eventlog.E022", "EVENTLOG_PROJECTION_HORIZON_WARNING", "positive"),
    ):
        value = setting(name)
        if not (
            isinstance(value, (int, float))
            and not isinstance(value, bool)
            and (value >= 0 if minimum == "0 or more" else value > 0)
            and value < math.inf
        ):
            errors.append(
                Error(
                    f"{name} must be a number of seconds, {minimum}.",
                    hint=f"Remove it to use the default, {DEFAULTS[name]}.",
                    id=check_id,
                )
            )
    return errors


@register()
def check_aggregates_cacheable(
    app_configs: Any = None, **kwargs: Any
) -> list[CheckMessage]:
    """Warn about aggregates whose reductions can never be cached."""
    warnings: list[CheckMessage] = []
    for aggregate_class in _reducible_aggregates():
        if isinstance(_policy_of(aggregate_class), NeverCache):
            continue
        reason = why_uncacheable(aggregate_class)
        if reason is not None:
            name = f"{aggregate_class.__module__}.{aggregate_class.__qualname__}"
            warnings.append(
                Warning(
                    f"{name} reductions are never cached: {reason}.",
                    hint="Make it a dataclass whose fields are typed like event "
                    "fields and have defaults, or set cache_policy = NeverCache().",
                    obj=aggregate_class,
                    id="django_eventlog.W001",
                )
            )
    return warnings


def _reducible_aggregates() -> list[type[Aggregate]]:
    """Every imported Aggregate subclass that implements apply(), and the
    admin's, each once."""
    found: dict[type[Aggregate], None] = {}
    try:
        for value in dict(setting("EVENTLOG_ADMIN_AGGREGATES")).values():
            found[load_aggregate(value)] = None
    except (ImproperlyConfigured, TypeError, ValueError):
        pass  # E012 reports it
    for aggregate_class in _subclasses(Aggregate):
        if aggregate_class.apply is not Aggregate.apply:
            found[aggregate_class] = None
    return list(found)


def _policy_of(aggregate_class: type[Aggregate]) -> object:
    if aggregate_class.cache_policy is not None:
        return aggregate_class.cache_policy
    try:
        return load_policy(setting("EVENTLOG_CACHE_POLICY"))
    except ImproperlyConfigured:
        return None  # E006 reports it


#: The tag of W002. Not Django's ``database`` tag: Django 6 runs those only
#: with ``--database``, and W002 must run with a plain ``check --deploy``.
STORED_TYPES_TAG = "django_eventlog_stored_types"


@register(STORED_TYPES_TAG, deploy=True)
def check_stored_types(
    app_configs: Any = None, databases: Any = None, **kwargs: Any
) -> list[CheckMessage]:
    """Warn about stored event types that no ``DomainEvent`` class claims.

    It reads the database, so it is a deployment check: ``manage.py check
    --deploy`` runs it, on the database the routers read events from, or on
    each ``--database`` given that holds the events. A database that cannot
    be read (unreachable, not migrated) is logged and skipped.
    """
    if databases is None:
        aliases = [router.db_for_read(Event)]
    else:
        aliases = [a for a in databases if router.allow_migrate_model(a, Event)]
    registered = set(registered_type_names())
    warnings: list[CheckMessage] = []
    for alias in aliases:
        try:
            # A savepoint: a failed read leaves the caller's transaction usable.
            with transaction.atomic(using=alias):
                unknown = [
                    name
                    for name in queries.stored_types(alias, TYPE_NAMES_CHUNK)
                    if name not in registered
                ]
        except (DatabaseError, ImproperlyConfigured) as e:
            logger.warning(
                "django_eventlog.W002 skipped: the stored event types of "
                "database %r cannot be read: %s",
                alias,
                e,
            )
            continue
        where = "" if len(connections.settings) == 1 else f" in database {alias!r}"
        warnings.extend(
            Warning(
                f"Stored events of type {name!r}{where} have no DomainEvent "
                "class: reading them raises UnknownEventType.",
                hint="Import the module that defines the class in your "
                "AppConfig.ready(), so that every process registers it; or "
                "restore the class, or give a renamed class "
                f"type_name = {name!r}.",
                id="django_eventlog.W002",
            )
            for name in unknown
        )
    return warnings
