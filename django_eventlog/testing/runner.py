"""Django's test runner, letting test databases be flushed.

Set it in the settings your tests run with::

    TEST_RUNNER = "django_eventlog.testing.runner.DiscoverRunner"

or call :func:`~django_eventlog.testing.allow_flush` from your own runner.
"""

from __future__ import annotations

from typing import Any

from django.test import runner

from . import allow_flush

__all__ = ["DiscoverRunner"]


class DiscoverRunner(runner.DiscoverRunner):
    """``django.test.runner.DiscoverRunner`` that calls ``allow_flush()``.

    Without it, the store's triggers refuse the ``flush`` that empties the
    test database after each ``TransactionTestCase`` test.
    """

    def setup_test_environment(self, **kwargs: Any) -> None:
        allow_flush()
        super().setup_test_environment(**kwargs)
