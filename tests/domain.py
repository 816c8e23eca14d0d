"""A small bank-account domain the tests share."""

from __future__ import annotations

from dataclasses import dataclass, field

from django_eventlog import Aggregate, DomainEvent, EventRecord, LogState
from django_eventlog.testing import make_log


class Opened(DomainEvent):
    type_name = "tests.opened"
    owner: str


class Deposited(DomainEvent):
    type_name = "tests.deposited"
    amount: int


@dataclass
class Account(Aggregate):
    owner: str = ""
    balance: int = 0
    indices: list[int] = field(default_factory=list)

    def apply(self, record: EventRecord) -> None:
        self.indices.append(record.index)
        match record.event:
            case Opened(owner=owner):
                self.owner = owner
            case Deposited(amount=amount):
                self.balance += amount


def open_account(*amounts: int, owner: str = "ada") -> LogState:
    """An account log: ``Opened(owner)``, then a ``Deposited`` per amount."""
    return make_log(Opened(owner), *map(Deposited, amounts), kind="account")
