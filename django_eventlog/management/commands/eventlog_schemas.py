"""Keep JSON Schema snapshots of event classes, as makemigrations keeps models'.

Without ``--check`` it writes the snapshot of each class's current
``schema_version`` that has none yet, and never overwrites one: a class
that differs from the snapshot of its own version changed without a
version bump. ``--check`` writes nothing and fails on that, on a version
without a snapshot, and on a version without an upcaster from the one
before: run it in CI.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from django.apps import AppConfig, apps
from django.core.management.base import BaseCommand, CommandError, CommandParser

from django_eventlog import event_schemas
from django_eventlog.event_schemas import BadSnapshot, Comparison
from django_eventlog.events import DomainEvent, registered_event_classes
from django_eventlog.upcasting import upcaster_versions

# Exit statuses.
PROBLEMS_FOUND = 1
USAGE_ERROR = 2


class Command(BaseCommand):
    help = (
        "Write the JSON Schema snapshot of each event class's current "
        "schema_version into the eventschemas/ folder of its app, one file "
        "per type name and version, as makemigrations writes migrations. An "
        "existing snapshot is never overwritten: a class that differs from "
        "the snapshot of its own version is reported, naming type, version and "
        "field, and the command exits with status 1 (raise schema_version and "
        "register an upcaster). With --check it writes nothing and exits with "
        "status 1 when a class differs from its snapshot, when a class's "
        "current version has no snapshot, or when a version has no upcaster "
        "to the next. Titles, descriptions, examples and the Python class's "
        "name are not part of a snapshot: they do not change decoding. "
        "Checks every installed app, or only the given APP_LABELs; classes "
        "outside any installed app are skipped and listed. Event classes are "
        "known only once their module is imported (import them in your "
        "AppConfig.ready()). Exits with status 2 for an app label that is "
        "not installed."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "app_labels",
            nargs="*",
            metavar="APP_LABEL",
            help="Only the event classes of these apps. Default: every app.",
        )
        parser.add_argument(
            "--check",
            action="store_true",
            help=(
                "Write nothing; exit with status 1 if a snapshot is missing or "
                "out of date, or an upcaster is missing."
            ),
        )

    def handle(self, *args: Any, **options: Any) -> None:
        self.verbosity: int = options["verbosity"]
        check: bool = options["check"]
        labels: list[str] = options["app_labels"]
        chosen = {_app(label) for label in labels}
        classes: list[tuple[type[DomainEvent], AppConfig]] = []
        outside: list[type[DomainEvent]] = []
        for cls in registered_event_classes():
            app = event_schemas.app_of(cls)
            if app is None:
                outside.append(cls)
            elif not labels or app in chosen:
                classes.append((cls, app))

        self.problems = 0
        written: list[Path] = []
        for cls, app in classes:
            comparison = self._compare(cls, app)
            if comparison is None:
                continue
            if comparison.found is None:
                if check:
                    self._report(
                        f"{_named(cls)} has no snapshot "
                        f"({_shown(comparison.path)}): run manage.py "
                        "eventlog_schemas to write it."
                    )
                else:
                    written.append(_write(comparison))
            elif comparison.differences:
                self._report_differences(comparison)
            if check:
                self._check_upcasters(cls)

        if not labels and outside and self.verbosity >= 1:
            self.stdout.write(
                f"Skipped {len(outside)} event "
                f"{'class' if len(outside) == 1 else 'classes'} outside any "
                "installed app: "
                + ", ".join(
                    f"{cls.__module__}.{cls.__qualname__} ({cls.type_name!r})"
                    for cls in outside
                )
                + "."
            )
        self._finish(len(classes), written)

    def _compare(self, cls: type[DomainEvent], app: AppConfig) -> Comparison | None:
        """Compare ``cls`` with its snapshot; None after reporting why not."""
        try:
            return event_schemas.compare(cls, event_schemas.snapshot_dir(app))
        except BadSnapshot as e:
            self._report(
                f"{_named(cls)}: {_shown(e.path)} is not an event schema "
                f"snapshot ({e.reason}). Restore it from version control, or "
                "delete it and run manage.py eventlog_schemas."
            )
        except (TypeError, ValueError) as e:
            self._report(f"{_named(cls)}: msgspec gives no JSON Schema for it: {e}")
        return None

    def _report_differences(self, comparison: Comparison) -> None:
        cls = comparison.cls
        assert comparison.found is not None
        version = cls.schema_version
        lines = "".join(f"\n  {change}" for change in comparison.differences)
        self._report(
            f"{_named(cls)} differs from its snapshot "
            f"{_shown(comparison.found)}:{lines}\n"
            f"  Raise {cls.__qualname__}.schema_version to {version + 1} and "
            f"register an upcaster from version {version}; or, if version "
            f"{version} was never released, delete the snapshot and run "
            "manage.py eventlog_schemas again."
        )

    def _check_upcasters(self, cls: type[DomainEvent]) -> None:
        have = set(upcaster_versions(cls.type_name))
        for version in range(1, cls.schema_version):
            if version not in have:
                self._report(
                    f"{_named(cls)} has no upcaster from version {version} to "
                    f"{version + 1}: register one with "
                    f"@upcaster({cls.__qualname__}, from_version={version})."
                )

    def _report(self, problem: str) -> None:
        self.problems += 1
        self.stdout.write(problem)

    def _finish(self, types: int, written: list[Path]) -> None:
        if self.verbosity >= 1:
            for path in written:
                self.stdout.write(f"Wrote {_shown(path)}")
        if self.problems:
            noun = "problem" if self.problems == 1 else "problems"
            raise CommandError(
                f"{self.problems} {noun} with event schema snapshots.",
                returncode=PROBLEMS_FOUND,
            )
        if self.verbosity >= 1:
            summary = f"{types} event {'type' if types == 1 else 'types'}"
            if written:
                count = len(written)
                summary += (
                    f": wrote {count} {'snapshot' if count == 1 else 'snapshots'}"
                )
            else:
                summary += ", all snapshots match"
            self.stdout.write(summary + ".", self.style.SUCCESS)


def _app(label: str) -> AppConfig:
    try:
        return apps.get_app_config(label)
    except LookupError:
        raise CommandError(
            f"No installed app with label {label!r}.", returncode=USAGE_ERROR
        ) from None


def _write(comparison: Comparison) -> Path:
    path = comparison.path
    path.parent.mkdir(exist_ok=True)
    # Bytes: the same file on every platform (no CRLF on Windows).
    path.write_bytes(event_schemas.dump(comparison.current).encode())
    return path


def _named(cls: type[DomainEvent]) -> str:
    return f"{cls.type_name!r} version {cls.schema_version}"


def _shown(path: Path) -> str:
    """Return ``path`` relative to the working directory when it is inside."""
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return os.fspath(path)
