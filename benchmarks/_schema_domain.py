"""The domain of ``benchmarks/schema_versions.py``: two event classes and an
aggregate that both the library before schema versions (commit 058b815)
and today's can import.

Import this module only after ``django.setup()``. ``Credited`` is at its
first schema version, stored as NULL by both. ``Deposited`` is at version 2
(version 2 added ``currency``); the old library knows no ``schema_version``
and takes it for a plain class attribute. Its upcaster from version 1 is
registered by :func:`register_upcaster`, which only today's library can
run: ``upcaster`` does not exist before schema versions.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from django_eventlog import Aggregate, DomainEvent, EventRecord
from django_eventlog.policies import NeverCache

#: What both classes' events are stored as: version 1 of either.
PAYLOAD = '{"amount": 1, "note": "benchmark credit"}'


class Credited(DomainEvent):
    type_name = "bench.credited"
    amount: int
    note: str


class Deposited(DomainEvent):
    type_name = "bench.deposited"
    schema_version = 2
    amount: int
    note: str
    # No default: a version 1 payload decodes only through the upcaster.
    currency: str


@dataclasses.dataclass
class Account(Aggregate):
    aggregate_name = "bench.schema_account"
    # Every reduce folds the whole log (and the cache is Django's dummy one).
    cache_policy = NeverCache()
    balance: int = 0
    count: int = 0

    def apply(self, record: EventRecord) -> None:
        event = record.event
        if isinstance(event, Credited | Deposited):
            self.balance += event.amount
        self.count += 1


def register_upcaster() -> None:
    """Register ``Deposited``'s step from version 1 (today's library only)."""
    from django_eventlog import upcaster

    @upcaster(Deposited, from_version=1)
    def deposited_currency(data: dict[str, Any]) -> dict[str, Any]:
        data["currency"] = "EUR"
        return data
