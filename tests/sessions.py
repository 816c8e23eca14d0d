"""Sessions: threads with a database connection of their own, for tests
that hold a transaction open in one while another commits."""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from typing import Any, TypeVar

import pytest
from django.db import connection, connections, transaction

T = TypeVar("T")
TIMEOUT = 30.0


class Session:
    """A thread with a database connection of its own, running steps on demand."""

    def __init__(self) -> None:
        self._steps: queue.Queue[tuple[Callable[[], Any], Future[Any]] | None] = (
            queue.Queue()
        )
        self._atomic: Any = None
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            while (item := self._steps.get()) is not None:
                step, future = item
                try:
                    future.set_result(step())
                except BaseException as e:  # handed to the test
                    future.set_exception(e)
        finally:
            connections.close_all()

    def do(self, step: Callable[[], T]) -> T:
        """Run ``step`` in this session's thread; its result or error."""
        future: Future[T] = Future()
        self._steps.put((step, future))
        return future.result(timeout=TIMEOUT)

    def begin(self) -> None:
        self._atomic = transaction.atomic()
        self.do(self._atomic.__enter__)

    def commit(self) -> None:
        self.do(lambda: self._atomic.__exit__(None, None, None))

    def rollback(self) -> None:
        def rollback() -> None:
            transaction.set_rollback(True)
            self._atomic.__exit__(None, None, None)

        self.do(rollback)

    def pid(self) -> int:
        def pid() -> int:
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_backend_pid()")
                return int(cursor.fetchone()[0])

        return self.do(pid)

    def close(self) -> None:
        self._steps.put(None)
        self._thread.join(TIMEOUT)


@pytest.fixture
def sessions() -> Iterator[Callable[[], Session]]:
    """Open sessions on demand; all closed at the end of the test."""
    opened: list[Session] = []

    def new() -> Session:
        opened.append(Session())
        return opened[-1]

    yield new
    for session in opened:
        session.close()
