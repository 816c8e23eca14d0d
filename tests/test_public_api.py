"""The public names and how they import."""

from __future__ import annotations

import subprocess
import sys

import pytest

import django_eventlog
from django_eventlog import models


def test_every_public_name_imports_from_the_package() -> None:
    for name in django_eventlog.__all__:
        assert getattr(django_eventlog, name) is not None, name
    assert django_eventlog.Log is models.Log
    assert django_eventlog.Event is models.Event
    assert issubclass(django_eventlog.InvalidArgument, django_eventlog.EventLogError)


def test_importing_the_package_does_not_load_models() -> None:
    # A settings module may import events and errors before apps are ready.
    code = (
        "import django_eventlog, sys\n"
        "from django_eventlog import DomainEvent, ConcurrentAppend, Reduction\n"
        "assert 'django_eventlog.models' not in sys.modules\n"
        "class Early(DomainEvent):\n"
        "    value: int\n"
        "print(Early(1))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "Early(value=1)"


def test_unknown_attributes_raise_attribute_error() -> None:
    with pytest.raises(AttributeError, match="Nope"):
        django_eventlog.Nope  # noqa: B018
