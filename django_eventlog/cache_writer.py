"""The write-behind thread: cached reductions written after the commit.

With ``EVENTLOG_CACHE_WRITE_BEHIND = True``, :mod:`django_eventlog.caching`
hands each committed write to :func:`submit`, which runs it on one
background thread per process, in commit order.

Internal to the package but for :func:`wait_for_cache_writes`, which is
public (``django_eventlog.wait_for_cache_writes``).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout

__all__ = ["submit", "wait_for_cache_writes"]


class _Writer:
    """One background thread per process that writes cached reductions in
    the order they were committed (EVENTLOG_CACHE_WRITE_BEHIND)."""

    def __init__(self) -> None:
        self.pid = os.getpid()
        self.executor = ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="django_eventlog cache writer"
        )

    def submit(self, store: Callable[[], None]) -> None:
        self.executor.submit(store)


_writer_lock = threading.Lock()
_current_writer: _Writer | None = None


def _writer() -> _Writer:
    global _current_writer
    with _writer_lock:
        # A forked child (a pre-forking server's worker) has no thread: start one.
        if _current_writer is None or _current_writer.pid != os.getpid():
            _current_writer = _Writer()
        return _current_writer


def wait_for_cache_writes(timeout: float | None = None) -> bool:
    """Wait until the background writes submitted so far are done.

    Only matters with ``EVENTLOG_CACHE_WRITE_BEHIND = True`` (in tests, say,
    before looking at the cache). Returns False if ``timeout`` seconds passed
    first.
    """
    with _writer_lock:
        writer = _current_writer
    if writer is None or writer.pid != os.getpid():
        return True
    done = writer.executor.submit(lambda: None)
    try:
        done.result(timeout)
    except FutureTimeout:
        return False
    return True


def submit(store: Callable[[], None]) -> None:
    """Run ``store`` on this process's writer thread, after those before it."""
    _writer().submit(store)
