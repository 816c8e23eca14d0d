"""A factory-boy factory of logs. Needs the ``factory-boy`` package.

Build events with factories of your own (a ``DomainEvent`` is a frozen
dataclass, which ``factory.Factory`` creates like any class) and give them to
:class:`LogFactory`, which writes them through ``Log.objects``.
"""

from __future__ import annotations

from typing import Any

try:
    # factory-boy's package does not re-export for type checkers (strict
    # mypy's no_implicit_reexport): import from the modules that define them.
    from factory.base import Factory
    from factory.errors import UnsupportedStrategy
except ImportError as e:
    raise ImportError(
        "django_eventlog.testing.factories (LogFactory) needs the factory-boy "
        "package: pip install factory-boy (or the django-eventlogs[testing] extra)",
        name=e.name,
    ) from e

from ..aggregates import LogState
from .logs import make_log

__all__ = ["LogFactory"]


class LogFactory(Factory[LogState]):
    """Write a log holding ``events`` and return its :class:`~django_eventlog.LogState`.

    ``LogFactory.create(events=[...])`` (or ``LogFactory(events=[...])``) calls
    :func:`~django_eventlog.testing.make_log`: the first event goes through
    ``Log.objects.create_log``, the rest through ``Log.objects.append``, in
    one transaction. Declarations, each overridable per call:

    ``events``
        The events, in order; at least one (none raises ``InvalidArgument``).
        Build them with your event factories, or declare a default in a
        subclass with ``factory.List([factory.SubFactory(OpenedFactory)])``.
    ``kind``
        The log's kind, ``"test"`` unless set.
    ``log_id``
        None for a new time-ordered UUID.
    ``idempotency_key``
        The key of the first event, or None.

    Subclass it per kind of log::

        class AccountFactory(LogFactory):
            kind = "account"
            events = factory.List([factory.SubFactory(OpenedFactory)])

        state = AccountFactory.create()
        states = AccountFactory.create_batch(3)

    A log exists only once written, so ``build()`` raises
    ``factory.errors.UnsupportedStrategy``: build the events instead.
    """

    class Meta:
        model = LogState

    # Typed Any so that subclasses may declare them with factory-boy
    # declarations (factory.List, factory.Sequence, factory.Faker).
    kind: Any = "test"
    events: Any = ()
    log_id: Any = None
    idempotency_key: Any = None

    @classmethod
    def _create(
        cls, model_class: type[LogState], *args: Any, **kwargs: Any
    ) -> LogState:
        if args:
            raise TypeError(f"{cls.__name__} takes keyword arguments only.")
        events = kwargs.pop("events")
        return make_log(*events, **kwargs)

    @classmethod
    def _build(cls, model_class: type[LogState], *args: Any, **kwargs: Any) -> LogState:
        raise UnsupportedStrategy(
            f"{cls.__name__}.build() cannot make a log without writing it: use "
            f"{cls.__name__}.create() (or {cls.__name__}(), which creates), or "
            "build the events with their own factories."
        )
