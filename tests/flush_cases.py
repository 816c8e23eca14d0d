"""TransactionTestCase tests for Django's own test runner.

Not collected by pytest: ``test_testing_helpers`` runs them with
``manage.py test``, with and without ``allow_flush()``. The second test
passes only if the flush after the first emptied the tables.
"""

from __future__ import annotations

from django.test import TransactionTestCase

from django_eventlog import Log
from tests.domain import Opened


class FlushedBetweenTests(TransactionTestCase):
    def test_1_writes_a_log(self) -> None:
        Log.objects.create_log(Opened("ada"), kind="account")
        assert Log.objects.count() == 1

    def test_2_starts_from_empty_tables(self) -> None:
        assert Log.objects.count() == 0
        Log.objects.create_log(Opened("bob"), kind="account")
        assert Log.objects.count() == 1
