"""What the three stores of ``benchmarks/eventstores.py`` share.

Every store keeps the same domain: an account whose events are all
``Credited(amount: int, note: str)``, the first one included (index 0).
Reducing a log gives ``Folded(balance, events, next_index)``: the sum of the
amounts, the number of events and the index the next event takes.
"""

from __future__ import annotations

from typing import NamedTuple

NOTE = "benchmark credit"


class Conflict(Exception):
    """Another writer took the index this append asked for."""


class Folded(NamedTuple):
    balance: int
    events: int
    next_index: int
