"""The projections of ``read_side.py``: a no-op one (catch-up) and one that
writes down when each event was handled (lag).

Import after ``django.setup()``: ``_ours`` defines the event class, which
the runner process needs to decode the events.
"""

from __future__ import annotations

import os
import time
from typing import ClassVar, TextIO

from _ours import Credited
from django.db import transaction

from django_eventlog import FeedRecord, Projection


class NoopProjection(Projection):
    """Atomic, does nothing with an event but count it and add its amount
    (the decoding into ``Credited`` is part of the cost)."""

    name = "readbench-noop"
    handled: ClassVar[int] = 0
    total: ClassVar[int] = 0

    def handle(self, record: FeedRecord) -> None:
        event = record.event
        assert isinstance(event, Credited)
        NoopProjection.handled += 1
        NoopProjection.total += event.amount


class LagProjection(Projection):
    """Atomic; once each batch has committed, appends ``<log id> <index>
    <time.time()>`` of its events to the file ``READBENCH_LAG_FILE``.

    "Handled" is the commit of the batch (``transaction.on_commit``): only
    then does a read model see the event.
    """

    name = "readbench-lag"

    def __init__(self) -> None:
        self.pending: list[str] = []
        self.out: TextIO = open(os.environ["READBENCH_LAG_FILE"], "a")  # noqa: SIM115

    def handle(self, record: FeedRecord) -> None:
        if not self.pending:
            transaction.on_commit(self.committed)
        self.pending.append(f"{record.log_id} {record.index}")

    def committed(self) -> None:
        now = time.time()
        self.out.write("".join(f"{line} {now:.6f}\n" for line in self.pending))
        self.out.flush()
        self.pending.clear()
