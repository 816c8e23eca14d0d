"""The demo's commands say who wrote their events: a system actor and one
correlation id per run (issue 17)."""

from __future__ import annotations

import json
import re
from io import StringIO
from typing import Any

import pytest
from django.core.management import call_command

from django_eventlog import Event, current_metadata

pytestmark = pytest.mark.django_db

HEX_ID = re.compile(r"correlation id ([0-9a-f]{32})\b")


def run(command: str, **options: Any) -> tuple[str, str]:
    """Run ``command``; return its output and the correlation id it printed."""
    out = StringIO()
    call_command(command, stdout=out, no_color=True, **options)
    text = out.getvalue()
    match = HEX_ID.search(text)
    assert match is not None, text
    return text, match[1]


def metadata_of_events(since: int) -> set[tuple[Any, ...]]:
    """The distinct metadata of the events stored after the id ``since``."""
    return set(
        Event.objects.filter(id__gt=since).values_list(
            "actor", "correlation_id", "causation_id", "extra"
        )
    )


def last_event_id() -> int:
    return Event.objects.order_by("-id").values_list("id", flat=True).first() or 0


@pytest.mark.django_db(transaction=True)  # cache entries are written on commit
def test_the_walkthrough_writes_as_its_actor_one_correlation_per_run() -> None:
    before = last_event_id()
    text, first = run("payment_walkthrough")
    assert metadata_of_events(before) == {
        ("system:payment_walkthrough", first, None, None)
    }
    # The events it prints carry it too.
    events = json.loads(text[text.index("[") :])
    assert len(events) == 4
    assert {json.dumps(e["metadata"], sort_keys=True) for e in events} == {
        json.dumps(
            {
                "actor": "system:payment_walkthrough",
                "correlation_id": first,
                "causation_id": None,
                "extra": {},
            },
            sort_keys=True,
        )
    }

    middle = last_event_id()
    _, second = run("payment_walkthrough")
    assert second != first
    assert metadata_of_events(middle) == {
        ("system:payment_walkthrough", second, None, None)
    }
    assert Event.objects.filter(correlation_id=first).count() == 4
    assert Event.objects.filter(correlation_id=second).count() == 4
    # The context ends with the command.
    assert not current_metadata()


def test_the_seed_writes_as_its_actor_one_correlation_per_run() -> None:
    text, first = run("seed_payments", count=5)
    seeded = Event.objects.count()
    assert seeded > 5  # each payment's request and its decision at least
    assert metadata_of_events(0) == {("system:seed_payments", first, None, None)}
    assert "Written by system:seed_payments under correlation id" in text

    middle = last_event_id()
    _, second = run("seed_payments", count=5, force=True)
    assert second != first
    assert metadata_of_events(middle) == {("system:seed_payments", second, None, None)}
    assert Event.objects.filter(correlation_id=first).count() == seeded
    assert Event.objects.count() - seeded == (
        Event.objects.filter(correlation_id=second).count()
    )
    assert not current_metadata()


def test_a_seed_that_does_nothing_prints_no_correlation_id() -> None:
    call_command("seed_payments", count=3, stdout=StringIO())
    events = Event.objects.count()
    out = StringIO()
    call_command("seed_payments", count=3, stdout=out)
    assert "not seeding again" in out.getvalue()
    assert HEX_ID.search(out.getvalue()) is None
    assert Event.objects.count() == events
