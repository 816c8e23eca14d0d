"""System checks of the EVENTLOG_* settings."""

from __future__ import annotations

import pytest
from django.test.utils import override_settings

from django_eventlog.checks import check_settings


def ids() -> list[str]:
    return [message.id for message in check_settings() if message.id]


def test_defaults_pass() -> None:
    assert ids() == []


@pytest.mark.parametrize(
    ("setting", "check_id"),
    [
        ("EVENTLOG_CHUNK_SIZE", "django_eventlog.E001"),
        ("EVENTLOG_PAGE_SIZE", "django_eventlog.E002"),
        ("EVENTLOG_MAX_PAGE_SIZE", "django_eventlog.E003"),
    ],
)
@pytest.mark.parametrize("value", [0, -5, "100", 1.5, True, None])
def test_non_positive_integers_are_errors(
    setting: str, check_id: str, value: object
) -> None:
    with override_settings(**{setting: value}):
        assert ids() == [check_id]


def test_page_size_above_maximum_is_an_error() -> None:
    with override_settings(EVENTLOG_PAGE_SIZE=500, EVENTLOG_MAX_PAGE_SIZE=100):
        assert ids() == ["django_eventlog.E004"]


@pytest.mark.django_db  # Django 6's own checks read the database
def test_checks_are_registered_with_django() -> None:
    from django.core import checks

    with override_settings(EVENTLOG_CHUNK_SIZE=0):
        found = [m.id for m in checks.run_checks()]
    assert "django_eventlog.E001" in found


@pytest.mark.parametrize("value", [1, 0, "yes", None])
def test_write_behind_must_be_a_bool(value: object) -> None:
    with override_settings(EVENTLOG_CACHE_WRITE_BEHIND=value):
        assert ids() == ["django_eventlog.E013"]


@pytest.mark.parametrize("value", [True, False])
def test_write_behind_bools_pass(value: bool) -> None:
    with override_settings(EVENTLOG_CACHE_WRITE_BEHIND=value):
        assert ids() == []
