"""Snapshots of event classes' JSON Schemas, kept next to the code.

A snapshot is the JSON Schema msgspec derives from an event class
(``msgspec.json.schema``), normalized so that only what changes decoding
counts: titles, descriptions and examples (docstrings, ``Meta`` notes) are
dropped, and the class's own definition gets a fixed name, so renaming the
Python class while keeping its ``type_name`` changes nothing. One file per
type name and ``schema_version`` in the ``eventschemas/`` folder of the
class's app, as ``migrations/`` holds models' history.
``manage.py eventlog_schemas`` is the user of this module.
"""

from __future__ import annotations

import hashlib
import json
import string
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec
from django.apps import AppConfig, apps

from .events import DomainEvent
from .exceptions import EventLogError

__all__ = [
    "ROOT",
    "SNAPSHOT_DIR",
    "BadSnapshot",
    "Comparison",
    "app_of",
    "compare",
    "differences",
    "dump",
    "event_schema",
    "read",
    "snapshot",
    "snapshot_dir",
    "snapshot_file_name",
]

#: The folder of an app that holds its event classes' snapshots.
SNAPSHOT_DIR = "eventschemas"
#: The name of an event class's own definition in a normalized schema: not
#: one msgspec gives (those are class names), so no nested type can hold it.
ROOT = "(event)"

# Notes for readers, not constraints: they never change what decodes.
_ANNOTATIONS = frozenset({"title", "description", "examples"})
# Keywords whose value is data (a default, allowed values), kept verbatim:
# a default may be an object with a "title" key.
_DATA = frozenset({"default", "const", "enum"})
# Keywords whose value maps names (fields, definitions) to schemas: the
# names are kept, whatever they are ("title" may be a field).
_NAMED_SCHEMAS = frozenset(
    {"properties", "$defs", "definitions", "patternProperties", "dependentSchemas"}
)
_DEFS_REF = "#/$defs/"
_SAFE = frozenset(string.ascii_letters + string.digits + "._-")
# Device names Windows reserves whatever follows their first dot.
_RESERVED = frozenset(
    {"CON", "PRN", "AUX", "NUL"}
    | {f"{device}{n}" for device in ("COM", "LPT") for n in range(1, 10)}
)
# Room for the longest ".v32767.json" within the 255 bytes filesystems
# allow, and for a deep checkout within Windows' 260-character paths.
_STEM_MAX = 100
_DIGEST_LENGTH = 16


class BadSnapshot(EventLogError, ValueError):
    """A snapshot file cannot be read: not JSON, or not a snapshot's shape."""

    def __init__(self, path: Path, reason: str) -> None:
        self.path = path
        self.reason = reason
        super().__init__(f"{path} is not an event schema snapshot: {reason}")


def event_schema(cls: type[DomainEvent]) -> dict[str, Any]:
    """Return the normalized JSON Schema of ``cls``'s stored JSON.

    Raises ``TypeError`` or ``ValueError`` (msgspec's) for a field type
    msgspec has no schema for.
    """
    raw = msgspec.json.schema(cls)
    own = raw.get("$ref", "")
    own_name = own[len(_DEFS_REF) :] if own.startswith(_DEFS_REF) else None
    if own_name not in raw.get("$defs", {}):
        own_name = None
    schema: dict[str, Any] = _normalized(raw, own_name)
    return schema


def _normalized(node: Any, own: str | None) -> Any:
    """Return ``node`` without annotations, the definition ``own`` renamed
    :data:`ROOT`."""
    if isinstance(node, list):
        return [_normalized(item, own) for item in node]
    if not isinstance(node, dict):
        return node
    normal: dict[str, Any] = {}
    for key, value in node.items():
        if key in _ANNOTATIONS:
            continue
        if key in _DATA:
            normal[key] = value
        elif key == "$ref" and own is not None and value == _DEFS_REF + own:
            normal[key] = _DEFS_REF + ROOT
        elif key in _NAMED_SCHEMAS and isinstance(value, dict):
            normal[key] = {
                (ROOT if key == "$defs" and name == own else name): _normalized(
                    schema, own
                )
                for name, schema in value.items()
            }
        else:
            normal[key] = _normalized(value, own)
    return normal


def snapshot(cls: type[DomainEvent]) -> dict[str, Any]:
    """Return the snapshot of ``cls`` at its current ``schema_version``."""
    content: dict[str, Any] = {
        "type_name": cls.type_name,
        "schema_version": cls.schema_version,
        "schema": event_schema(cls),
    }
    if cls.aliases:
        content["aliases"] = list(cls.aliases)
    return content


def dump(content: dict[str, Any]) -> str:
    """Return a snapshot as the text of its file: stable, so diffs are small."""
    return json.dumps(content, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def read(path: Path) -> dict[str, Any]:
    """Return the snapshot in ``path``; raise :class:`BadSnapshot` if it is none."""
    try:
        content = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise BadSnapshot(path, str(e)) from e
    if not (
        isinstance(content, dict)
        and isinstance(content.get("type_name"), str)
        and isinstance(content.get("schema_version"), int)
        and isinstance(content.get("schema"), dict)
    ):
        raise BadSnapshot(
            path, "expected an object with type_name, schema_version and schema"
        )
    return content


def snapshot_file_name(type_name: str, version: int) -> str:
    """Return the file name of the snapshot of ``type_name`` at ``version``.

    Any type name gives a name every filesystem takes: characters other
    than ASCII letters, digits, ``.``, ``_`` and ``-`` are percent-escaped
    (their UTF-8 bytes), a Windows device name gets its first letter
    escaped, and a name that would be longer than fits is cut and ends in
    ``~`` and a digest of the whole (``~`` is always escaped otherwise, so
    no two type names share a file name).
    """
    stem = "".join(char if char in _SAFE else _escaped(char) for char in type_name)
    if stem.split(".", 1)[0].upper() in _RESERVED:
        stem = _escaped(stem[0]) + stem[1:]
    if len(stem) > _STEM_MAX:
        digest = hashlib.sha256(type_name.encode("utf-8", "surrogatepass"))
        kept = stem[: _STEM_MAX - _DIGEST_LENGTH - 1]
        # Never keep part of an escape.
        percent = kept.rfind("%", len(kept) - 2)
        if percent != -1:
            kept = kept[:percent]
        stem = f"{kept}~{digest.hexdigest()[:_DIGEST_LENGTH]}"
    return f"{stem}.v{version}.json"


def _escaped(char: str) -> str:
    return "".join(f"%{byte:02X}" for byte in char.encode("utf-8", "surrogatepass"))


def app_of(cls: type[DomainEvent]) -> AppConfig | None:
    """Return the installed app whose package holds ``cls``'s module, if any."""
    return apps.get_containing_app_config(cls.__module__)


def snapshot_dir(app_config: AppConfig) -> Path:
    """Return the folder of ``app_config``'s snapshots."""
    return Path(app_config.path) / SNAPSHOT_DIR


@dataclass(frozen=True)
class Comparison:
    """An event class against its snapshot at its current version."""

    cls: type[DomainEvent]
    #: The snapshot the class has now, to write if ``found`` is None.
    current: dict[str, Any]
    #: Where the snapshot of its current type name goes.
    path: Path
    #: The snapshot file found (under the type name or an alias), or None.
    found: Path | None
    #: What differs from the found snapshot, one phrase each.
    differences: tuple[str, ...]


def compare(cls: type[DomainEvent], directory: Path) -> Comparison:
    """Compare ``cls`` with its snapshot in ``directory``.

    The snapshot of the current version is looked up under the type name,
    then under each alias: a type renamed with an alias keeps the
    snapshots its versions had under the old name. Raises
    :class:`BadSnapshot` for an unreadable snapshot file, and msgspec's
    ``TypeError`` or ``ValueError`` for a class without a JSON Schema.
    """
    current = snapshot(cls)
    version = cls.schema_version
    path = directory / snapshot_file_name(cls.type_name, version)
    for name in (cls.type_name, *cls.aliases):
        candidate = directory / snapshot_file_name(name, version)
        if candidate.is_file():
            found = read(candidate)["schema"]
            changes = tuple(differences(found, current["schema"]))
            return Comparison(cls, current, path, candidate, changes)
    return Comparison(cls, current, path, None, ())


def differences(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """Name what differs between two normalized schemas, one phrase each.

    Fields of the event are named by field name; a nested type (another
    dataclass or Struct, an Enum) by its definition name.
    """
    found: list[str] = []
    old_defs, new_defs = old.get("$defs", {}), new.get("$defs", {})
    if _canonical(_without(old, "$defs")) != _canonical(_without(new, "$defs")):
        found.append(
            f"schema changed: {_canonical(_without(old, '$defs'))} -> "
            f"{_canonical(_without(new, '$defs'))}"
        )
    # The event's own fields first, then nested types, removed ones last.
    names = dict.fromkeys([ROOT, *new_defs, *old_defs])
    for name in (n for n in names if n in old_defs or n in new_defs):
        where = "" if name == ROOT else f"nested type {name}: "
        if name not in new_defs:
            found.append(f"nested type {name} removed")
        elif name not in old_defs:
            found.append(f"nested type {name} added")
        else:
            found.extend(where + d for d in _definition(old_defs[name], new_defs[name]))
    return found


def _definition(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """Name what differs between two versions of one object definition."""
    found: list[str] = []
    old_fields, new_fields = old.get("properties", {}), new.get("properties", {})
    old_required = set(old.get("required", ()))
    new_required = set(new.get("required", ()))
    for name in [*new_fields, *(n for n in old_fields if n not in new_fields)]:
        field = f"field {name!r}"
        if name not in new_fields:
            found.append(f"{field} removed")
            continue
        if name not in old_fields:
            found.append(
                f"{field} added ({_presence(new_fields[name], name in new_required)})"
            )
            continue
        before, after = old_fields[name], new_fields[name]
        if _canonical(_without(before, "default")) != _canonical(
            _without(after, "default")
        ):
            found.append(
                f"{field} type changed: {_canonical(_without(before, 'default'))} "
                f"-> {_canonical(_without(after, 'default'))}"
            )
        if _default(before) != _default(after):
            found.append(
                f"{field} default changed: {_default(before)} -> {_default(after)}"
            )
        if (name in old_required) != (name in new_required):
            found.append(
                f"{field} is now {'required' if name in new_required else 'optional'}"
            )
    rest = ("properties", "required")
    if _canonical(_without(old, *rest)) != _canonical(_without(new, *rest)):
        found.append(
            f"changed: {_canonical(_without(old, *rest))} -> "
            f"{_canonical(_without(new, *rest))}"
        )
    return found


def _presence(schema: dict[str, Any], required: bool) -> str:
    return "required" if required else f"default {_default(schema)}"


def _default(schema: dict[str, Any]) -> str:
    return _canonical(schema["default"]) if "default" in schema else "none"


def _without(schema: dict[str, Any], *keys: str) -> dict[str, Any]:
    return {key: value for key, value in schema.items() if key not in keys}


def _canonical(value: Any) -> str:
    # Compared as text: in Python 1 == 1.0 == True, in a schema they differ.
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
