"""The public names and how they import."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

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


def test_the_benchmark_peer_is_never_a_runtime_dependency() -> None:
    # eventsourcing is only in the contributors' requirements/bench.txt, in no
    # requirement of the package (extras included: tests/test_packaging.py
    # checks the built metadata), and nothing the app imports, admin and
    # commands included, pulls it in.
    root = Path(__file__).parent.parent
    bench = (root / "requirements" / "bench.txt").read_text()
    assert re.search(r"^eventsourcing\b", bench, re.MULTILINE), bench
    pyproject = (root / "pyproject.toml").read_text()
    assert '"msgspec>=' in pyproject
    assert "eventsourcing" not in pyproject
    code = (
        "import django, os, sys, pkgutil, importlib\n"
        "os.environ['DJANGO_SETTINGS_MODULE'] = 'testproject.settings'\n"
        "django.setup()\n"
        "import django_eventlog\n"
        "path, prefix = django_eventlog.__path__, 'django_eventlog.'\n"
        "for m in pkgutil.walk_packages(path, prefix):\n"
        "    importlib.import_module(m.name)\n"
        "assert 'eventsourcing' not in sys.modules, 'eventsourcing was imported'\n"
        "print('ok')\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False
    )
    assert result.stdout.strip() == "ok", result.stderr
