"""A small bank-account domain the tests share."""

from __future__ import annotations

from dataclasses import dataclass, field

from django_eventlog import Aggregate, DomainEvent, EventRecord


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
