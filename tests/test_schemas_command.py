"""manage.py eventlog_schemas: JSON Schema snapshots of event classes.

Each test installs an app of its own, written into ``tmp_path`` (an
``events.py`` the test writes and reloads to change its classes), so the
snapshots land in that app's real ``eventschemas/`` folder. Type names
start with the app's name: the registry of event classes is global.
"""

from __future__ import annotations

import importlib
import io
import json
import re
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import msgspec
import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from django_eventlog.event_schemas import snapshot_file_name
from tests.domain import Opened

HEADER = """\
import dataclasses
from typing import Annotated, Any

from msgspec import Meta

from django_eventlog import DomainEvent, upcaster
"""

CAPTURED = """
class Captured(DomainEvent):
    type_name = "APP.captured"
    amount: int
    descriptor: str = "-"
"""


def with_field(source: str, line: str) -> str:
    """Return ``source`` with a field declared before the one with a default."""
    return source.replace(
        '    descriptor: str = "-"', f'    {line}\n    descriptor: str = "-"'
    )


@dataclass
class App:
    """An installed app in a temporary folder; ``APP`` in sources is its name."""

    name: str
    folder: Path

    def define(self, source: str) -> ModuleType:
        """Write ``source`` as the app's events.py and (re)import it."""
        text = HEADER + textwrap.dedent(source).replace("APP", self.name)
        (self.folder / "events.py").write_text(text, encoding="utf-8")
        module = f"{self.name}.events"
        if module in sys.modules:
            return importlib.reload(sys.modules[module])
        return importlib.import_module(module)

    def file(self, type_name: str, version: int = 1) -> Path:
        return self.folder / "eventschemas" / snapshot_file_name(type_name, version)

    def snapshots(self) -> list[str]:
        folder = self.folder / "eventschemas"
        return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


@pytest.fixture
def app(
    tmp_path: Path,
    request: pytest.FixtureRequest,
    settings: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> App:
    name = "schemaapp_" + re.sub(r"\W", "_", request.node.name)
    folder = tmp_path / name
    folder.mkdir()
    (folder / "__init__.py").write_text("")
    # Rewritten within a second, events.py must not be read from stale bytecode.
    monkeypatch.setattr(sys, "dont_write_bytecode", True)
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.invalidate_caches()
    settings.INSTALLED_APPS = [*settings.INSTALLED_APPS, name]
    return App(name, folder)


def run(*args: str) -> tuple[int, str]:
    """Run eventlog_schemas; return its exit status and its output."""
    out = io.StringIO()
    try:
        call_command("eventlog_schemas", *args, stdout=out)
    except CommandError as e:
        return e.returncode, out.getvalue() + str(e)
    return 0, out.getvalue()


# Writing


def test_writes_each_type_s_snapshot_into_its_app_s_folder(app: App) -> None:
    app.define(
        CAPTURED
        + """
class Refunded(DomainEvent):
    '''Money back.'''
    type_name = "APP.refunded"
    amount: Annotated[int, Meta(ge=1, title="Amount", description="cents")]
"""
    )
    status, out = run(app.name)
    assert status == 0
    assert app.snapshots() == [
        f"{app.name}.{n}.v1.json" for n in ("captured", "refunded")
    ]
    assert f"Wrote {app.file(app.name + '.captured')}" in out
    assert "2 event types: wrote 2 snapshots." in out

    text = app.file(app.name + ".refunded").read_text()
    assert text.endswith("}\n")
    assert json.loads(text) == {
        "type_name": f"{app.name}.refunded",
        "schema_version": 1,
        "schema": {
            "$ref": "#/$defs/(event)",
            "$defs": {
                "(event)": {
                    "type": "object",
                    "properties": {"amount": {"type": "integer", "minimum": 1}},
                    "required": ["amount"],
                }
            },
        },
    }
    # Pretty, with sorted keys: a change is a small diff.
    assert list(json.loads(text)) == ["schema", "schema_version", "type_name"]
    assert '\n  "type_name"' in text

    assert run(app.name) == (0, "2 event types, all snapshots match.\n")
    assert run(app.name, "--check") == (0, "2 event types, all snapshots match.\n")


def test_the_demo_s_snapshots_match_its_classes() -> None:
    status, out = run("payments", "--check")
    assert (status, out) == (0, "5 event types, all snapshots match.\n")


def test_an_existing_snapshot_of_the_same_version_is_never_overwritten(
    app: App,
) -> None:
    app.define(CAPTURED)
    run(app.name)
    before = app.file(app.name + ".captured").read_bytes()
    app.define(CAPTURED + "    currency: str = 'EUR'\n")

    status, out = run(app.name)
    assert status == 1
    assert app.file(app.name + ".captured").read_bytes() == before
    assert f"'{app.name}.captured' version 1 differs from its snapshot" in out
    assert "field 'currency' added (default \"EUR\")" in out
    raise_it = (
        "Raise Captured.schema_version to 2 and register an upcaster from version 1"
    )
    assert raise_it in out
    assert "if version 1 was never released, delete the snapshot" in out


def test_a_bumped_version_gets_a_snapshot_of_its_own_next_to_the_old(app: App) -> None:
    app.define(CAPTURED)
    run(app.name)
    v1 = app.file(app.name + ".captured").read_text()
    app.define(
        with_field(
            CAPTURED.replace("amount: int", "schema_version = 2\n    amount: int"),
            "currency: str",
        )
        + """
@upcaster(Captured, from_version=1)
def add_currency(data: dict[str, Any]) -> dict[str, Any]:
    return {**data, "currency": "EUR"}
"""
    )
    assert run(app.name, "--check")[0] == 1  # v2 has no snapshot yet
    assert run(app.name)[0] == 0
    assert app.snapshots() == [f"{app.name}.captured.v{n}.json" for n in (1, 2)]
    assert app.file(app.name + ".captured").read_text() == v1
    v2 = json.loads(app.file(app.name + ".captured", 2).read_text())
    assert v2["schema_version"] == 2
    assert v2["schema"]["$defs"]["(event)"]["required"] == ["amount", "currency"]
    assert run(app.name, "--check") == (0, "1 event type, all snapshots match.\n")


# --check: each failure, named


#: A change to CAPTURED (a field to add before the default one, a line to
#: append, a field's new declaration, or None: descriptor removed), and the
#: phrase naming it.
CHANGES: dict[str, tuple[str | None, str]] = {
    "added": ("+currency: str", "field 'currency' added (required)"),
    "added-default": (
        "    currency: str = 'EUR'\n",
        "field 'currency' added (default \"EUR\")",
    ),
    "removed": (None, "field 'descriptor' removed"),
    "type": (
        "amount: str",
        'field \'amount\' type changed: {"type":"integer"} -> {"type":"string"}',
    ),
    "constraint": (
        "amount: Annotated[int, Meta(ge=0)]",
        "field 'amount' type changed: "
        '{"type":"integer"} -> {"minimum":0,"type":"integer"}',
    ),
    "default": (
        'descriptor: str = "?"',
        'field \'descriptor\' default changed: "-" -> "?"',
    ),
    "required": ("descriptor: str", "field 'descriptor' is now required"),
}


@pytest.mark.parametrize("case", CHANGES)
def test_check_names_the_type_and_the_field_that_changed(app: App, case: str) -> None:
    change, named = CHANGES[case]
    app.define(CAPTURED)
    run(app.name)
    if change is None:
        source = CAPTURED.replace('    descriptor: str = "-"\n', "")
    elif change.startswith("+"):
        source = with_field(CAPTURED, change[1:])
    elif change.startswith("    "):
        source = CAPTURED + change
    else:
        field = change.split(":")[0]
        source = re.sub(rf"    {field}: .*\n", f"    {change}\n", CAPTURED)
    app.define(source)
    files = app.snapshots()

    status, out = run(app.name, "--check")
    assert status == 1
    assert f"'{app.name}.captured' version 1 differs from its snapshot" in out
    assert f"\n  {named}\n" in out
    assert out.endswith("1 problem with event schema snapshots.")
    assert app.snapshots() == files


def test_check_names_a_changed_nested_type_by_its_name(app: App) -> None:
    nested = """
@dataclasses.dataclass(frozen=True)
class Card:
    last4: str

class Charged(DomainEvent):
    type_name = "APP.charged"
    card: Card
"""
    app.define(nested)
    run(app.name)
    app.define(nested.replace("last4: str", "last4: str\n    brand: str"))
    status, out = run(app.name, "--check")
    assert status == 1
    assert "nested type Card: field 'brand' added (required)" in out


def test_check_fails_on_a_missing_snapshot_and_writes_nothing(app: App) -> None:
    app.define(CAPTURED)
    status, out = run(app.name, "--check")
    assert status == 1
    assert (
        f"'{app.name}.captured' version 1 has no snapshot "
        f"({app.file(app.name + '.captured')}): run manage.py eventlog_schemas"
    ) in out
    assert app.snapshots() == []


def test_check_fails_on_a_version_without_an_upcaster_from_the_one_before(
    app: App,
) -> None:
    versions = CAPTURED.replace("amount: int", "schema_version = 3\n    amount: int")
    step_2 = """
@upcaster(Captured, from_version=2)
def step_2(data: dict[str, Any]) -> dict[str, Any]:
    return data
"""
    app.define(versions + step_2)
    run(app.name)
    status, out = run(app.name, "--check")
    assert status == 1
    assert (
        f"'{app.name}.captured' version 3 has no upcaster from version 1 to 2: "
        "register one with @upcaster(Captured, from_version=1)."
    ) in out
    assert "from version 2" not in out

    app.define(versions + step_2 + step_2.replace("2", "1"))
    assert run(app.name, "--check") == (0, "1 event type, all snapshots match.\n")


# Not a change


def test_docstrings_titles_and_examples_are_not_a_change(app: App) -> None:
    app.define(CAPTURED)
    run(app.name)
    app.define(
        CAPTURED.replace(
            "    amount: int",
            "    '''A capture, documented.'''\n"
            "    amount: Annotated[int, Meta(title='Amount', description='In cents', "
            "examples=[5])]",
        )
    )
    assert "description" in json.dumps(
        msgspec.json.schema(sys.modules[f"{app.name}.events"].Captured)
    )
    assert run(app.name, "--check") == (0, "1 event type, all snapshots match.\n")


def test_a_renamed_type_keeps_the_snapshot_of_its_old_name(app: App) -> None:
    app.define(CAPTURED)
    run(app.name)
    old = f"{app.name}.captured"
    renamed = CAPTURED.replace('"APP.captured"', '"APP.payment_captured"').replace(
        "    amount", '    aliases = ("APP.captured",)\n    amount', 1
    )
    app.define(renamed)
    assert run(app.name, "--check") == (0, "1 event type, all snapshots match.\n")
    assert run(app.name)[0] == 0
    assert app.snapshots() == [f"{old}.v1.json"]

    # The old name's snapshot still holds the version to its fields.
    app.define(with_field(renamed, "currency: str"))
    status, out = run(app.name, "--check")
    assert status == 1
    assert (
        f"'{app.name}.payment_captured' version 1 differs from its snapshot "
        f"{app.file(old)}:\n  field 'currency' added (required)"
    ) in out


def test_a_type_name_with_odd_characters_round_trips(app: App) -> None:
    odd = 'APP/ünï code:*?<>|\\" 🎉 %2F ~'
    app.define(CAPTURED.replace('"APP.captured"', repr(odd)))
    type_name = odd.replace("APP", app.name)
    assert run(app.name) == (
        0,
        f"Wrote {app.file(type_name)}\n1 event type: wrote 1 snapshot.\n",
    )
    assert app.snapshots() == [snapshot_file_name(type_name, 1)]
    assert json.loads(app.file(type_name).read_text())["type_name"] == type_name
    assert run(app.name, "--check") == (0, "1 event type, all snapshots match.\n")


# Which classes, which apps


def test_classes_outside_any_installed_app_are_skipped_and_listed(app: App) -> None:
    app.define(CAPTURED)
    run(app.name)
    status, out = run("--check")
    assert status == 0
    assert f"{Opened.__module__}.Opened ('tests.opened')" in out
    assert "6 event types, all snapshots match." in out  # the demo's 5 and 1
    assert f"{app.name}.events.Captured" not in out.split("Skipped")[1]
    # Only the apps given: the others are neither checked nor listed.
    assert "Skipped" not in run(app.name, "--check")[1]


def test_only_the_given_installed_apps_are_checked(app: App) -> None:
    app.define(CAPTURED)  # no snapshot
    assert run("payments", "--check")[0] == 0
    assert run("payments")[0] == 0
    assert app.snapshots() == []
    assert run("--check")[0] == 1
    # A label of no installed app is a usage error.
    assert run("no_such_app", "--check") == (
        2,
        "No installed app with label 'no_such_app'.",
    )


def test_an_unreadable_snapshot_is_reported(app: App) -> None:
    app.define(CAPTURED)
    run(app.name)
    app.file(app.name + ".captured").write_text("{not json")
    status, out = run(app.name, "--check")
    assert status == 1
    assert f"{app.file(app.name + '.captured')} is not an event schema snapshot" in out
