"""Event schema snapshots: normalized schemas, differences, file names.

The command that writes and checks them: tests/test_schemas_command.py.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import msgspec
import pytest

from django_eventlog import DomainEvent
from django_eventlog.event_schemas import (
    BadSnapshot,
    differences,
    dump,
    event_schema,
    read,
    snapshot,
    snapshot_file_name,
)


@dataclass(frozen=True)
class Label:
    """A label."""

    title: str = "none"


class Titled(DomainEvent):
    """Has a field called title, and one called description."""

    type_name = "tests.schemas.titled"
    title: Annotated[str, msgspec.Meta(description="the title", examples=["x"])]
    description: Label = Label("x")


def test_renaming_the_python_class_is_not_a_change() -> None:
    # A class's own definition is named after it in msgspec's schema.
    class Before(DomainEvent):
        type_name = "tests.schemas.renamed_class.before"
        amount: int

    class After(DomainEvent):
        type_name = "tests.schemas.renamed_class.after"
        amount: int

    assert msgspec.json.schema(Before) != msgspec.json.schema(After)
    assert event_schema(Before) == event_schema(After)
    assert differences(event_schema(Before), event_schema(After)) == []


def test_annotation_keywords_are_dropped_but_fields_and_defaults_so_named_kept() -> (
    None
):
    schema = event_schema(Titled)
    assert schema["$defs"]["(event)"] == {
        "type": "object",
        "properties": {
            "title": {"type": "string"},
            "description": {"$ref": "#/$defs/Label", "default": {"title": "x"}},
        },
        "required": ["title"],
    }
    assert schema["$defs"]["Label"] == {
        "type": "object",
        "properties": {"title": {"type": "string", "default": "none"}},
        "required": [],
    }


# File names


@pytest.mark.parametrize(
    ("type_name", "file_name"),
    [
        ("payment.captured", "payment.captured.v1.json"),
        ("Opened", "Opened.v1.json"),
        ("a/b\\c", "a%2Fb%5Cc.v1.json"),
        ("x y:z*?", "x%20y%3Az%2A%3F.v1.json"),
        ("100%~", "100%25%7E.v1.json"),
        ("é", "%C3%A9.v1.json"),
        ("..", "...v1.json"),
        ("con", "%63on.v1.json"),
        ("NUL.created", "%4EUL.created.v1.json"),
        ("console", "console.v1.json"),
    ],
)
def test_a_type_name_gives_a_file_name_every_filesystem_takes(
    type_name: str, file_name: str
) -> None:
    assert snapshot_file_name(type_name, 1) == file_name


def test_long_type_names_are_cut_and_stay_apart() -> None:
    names = ["é" * 200, "é" * 199 + "e", "a" * 200, "a" * 199 + "b", "%" * 200]
    files = [snapshot_file_name(name, 32767) for name in names]
    assert len(set(files)) == len(names)
    for file in files:
        assert len(file.encode()) <= 255
        assert re.fullmatch(r"[A-Za-z0-9._%~-]+\.v32767\.json", file)
        assert re.fullmatch(r"(?:[^%]|%[0-9A-F]{2})*~[0-9a-f]{16}\.v32767\.json", file)


# Differences


def event(fields: dict[str, Any], **nested: dict[str, Any]) -> dict[str, Any]:
    """A normalized schema of an event with ``fields``, all required, and
    ``nested`` definitions."""
    own = {"type": "object", "properties": fields, "required": sorted(fields)}
    return {"$ref": "#/$defs/(event)", "$defs": {"(event)": own, **nested}}


EMPTY = {"type": "object", "properties": {}, "required": []}


def test_differences_name_nested_types_added_and_removed() -> None:
    old = event({"card": {"$ref": "#/$defs/Card"}}, Card=EMPTY)
    new = event({"card": {"$ref": "#/$defs/Payment"}}, Payment=EMPTY)
    assert differences(old, new) == [
        'field \'card\' type changed: {"$ref":"#/$defs/Card"} -> '
        '{"$ref":"#/$defs/Payment"}',
        "nested type Payment added",
        "nested type Card removed",
    ]


def test_differences_tell_true_from_1() -> None:
    # Python's 1 == True: the comparison is of the JSON text.
    assert differences(event({"a": {"enum": [1]}}), event({"a": {"enum": [True]}})) == [
        'field \'a\' type changed: {"enum":[1]} -> {"enum":[true]}'
    ]
    assert differences(event({"a": {"enum": [1]}}), event({"a": {"enum": [1]}})) == []


# Snapshot files


class Moved(DomainEvent):
    type_name = "tests.schemas.moved"
    aliases = ("tests.schemas.old_name",)
    schema_version = 2
    at: str


def test_a_snapshot_holds_type_version_aliases_and_schema(tmp_path: Path) -> None:
    content = snapshot(Moved)
    assert content == {
        "type_name": "tests.schemas.moved",
        "schema_version": 2,
        "aliases": ["tests.schemas.old_name"],
        "schema": event_schema(Moved),
    }
    assert "aliases" not in snapshot(Titled)
    path = tmp_path / "moved.json"
    path.write_text(dump(content))
    assert read(path) == content


@pytest.mark.parametrize(
    "text", ["{not json", "[]", '{"type_name": "x", "schema_version": 1}', "\xff"]
)
def test_a_file_that_is_not_a_snapshot_is_refused(tmp_path: Path, text: str) -> None:
    path = tmp_path / "bad.v1.json"
    path.write_bytes(text.encode("latin-1"))
    with pytest.raises(BadSnapshot) as caught:
        read(path)
    assert caught.value.path == path
    assert str(caught.value).startswith(f"{path} is not an event schema snapshot: ")
