"""Check the event store: contiguous indices, decodable events, no empty logs.

The events are read in one streamed pass, ordered by log and index; the logs
without events in one more query (``NOT EXISTS``). Nothing is held in memory
per log or per event (the decoding report counts per type and version), so
the command runs in constant memory whatever the size of the store, and it
only reads: it can run against a live database.
"""

from __future__ import annotations

import uuid
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import connections, models, router
from django.utils.connection import ConnectionDoesNotExist

from django_eventlog import queries, sql
from django_eventlog.conf import conf
from django_eventlog.events import event_class
from django_eventlog.exceptions import (
    EventDecodingError,
    InvalidArgument,
    UnknownEventType,
)
from django_eventlog.management.decoding_report import (
    LISTED_FAILURES,
    UNKNOWN_TYPE,
    DecodingReport,
)
from django_eventlog.management.progress import Progress, plain
from django_eventlog.models import Event, Log
from django_eventlog.records import RecordDecoder
from django_eventlog.triggers import trigger_problems
from django_eventlog.validation import parse_log_id

# Runs over at least this many logs show their progress on stderr.
PROGRESS_MIN_LOGS = 10_000

# Exit statuses.
PROBLEMS_FOUND = 1
USAGE_ERROR = 2


class Command(BaseCommand):
    help = (
        "Check the event store and report every problem on a line of its own, "
        "'log <id> index <n>: <problem>': indices not contiguous from 0 (a "
        "missing index, a log not starting at 0, a duplicate), events that do "
        "not decode with the current classes and upcasters (a stored type no "
        "imported DomainEvent class claims; a stored schema version with no "
        "upcaster to the next, or whose upcaster raised; a payload that does "
        "not fit its class), and logs without events. Decoding failures are "
        f"listed one by one only for the first {LISTED_FAILURES} of each stored "
        "type and "
        "version (a class change can fail millions of events); every one is "
        "counted. On PostgreSQL and SQLite it also checks that the triggers of "
        "the logs and events tables exist and are enabled, and reports one that "
        "is not ('table <name>: trigger ...') with the SQL that restores it. "
        "After the scan, a table gives per stored type name and schema version "
        "how many events decode and how many fail, and the class (and its "
        "version) they are read as; below it, for each type and version with "
        "failures, the first failure's reason and the positions of the first "
        f"{LISTED_FAILURES}. "
        "Checks every log, or the given LOG_IDs and/or the logs of one --kind. "
        "Only reads, streaming the events table in one ordered pass in constant "
        "memory, so it can run on a live database; runs over many logs show "
        "their progress on stderr. Event classes (and upcasters) are known only "
        "once their module is imported: import the modules that define your "
        "events in your AppConfig.ready(), or every event of theirs is reported "
        "as of an unknown type, and the types are listed after the count. Ends "
        "with 'Checked N logs and M events: K problems.' and exits with status 0 "
        "when there are none, 1 when there are, 2 when the command was used "
        "wrongly (a malformed or missing LOG_ID, an unknown --database)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "log_ids",
            nargs="*",
            metavar="LOG_ID",
            help="Check only these logs (UUIDs). Default: every log.",
        )
        parser.add_argument(
            "--kind", help="Check only the logs of this kind (with LOG_IDs: both)."
        )
        parser.add_argument(
            "--database",
            help=(
                "Database alias to check. Default: the one the database routers "
                "read events from."
            ),
        )

    def handle(self, *args: Any, **options: Any) -> None:
        self.verbosity: int = options["verbosity"]
        using: str = options["database"] or router.db_for_read(Event)
        try:
            connections[using]
        except ConnectionDoesNotExist:
            raise CommandError(
                f"No database {using!r} in DATABASES.", returncode=USAGE_ERROR
            ) from None
        log_ids = [_parse_log_id(value) for value in options["log_ids"]]
        kind: str | None = options["kind"]

        logs = Log.objects.using(using).all()
        if log_ids:
            self._check_exist(using, log_ids)
            logs = logs.filter(pk__in=log_ids)
        if kind is not None:
            logs = logs.filter(kind=kind)

        total = 0
        if self.verbosity >= 1:
            total = logs.count()
            if total == 0 and kind is not None:
                self.stderr.write(
                    f"None of the given logs is of kind {kind!r}."
                    if log_ids
                    else f"No logs of kind {kind!r} to check.",
                    plain,
                )
        self.progress = Progress(self, total if total >= PROGRESS_MIN_LOGS else 0)

        self.problems = 0
        self.report = DecodingReport()
        self._check_triggers(using)
        logs_checked, events = self._check_events(using, log_ids, kind)
        logs_checked += self._check_empty_logs(logs)
        self.progress.finish(logs_checked)

        noun = "problem" if self.problems == 1 else "problems"
        if self.verbosity >= 1:
            for line in self.report.lines():
                self.stdout.write(line)
            unlisted = self.report.unlisted
            only_counted = f", {unlisted} of them counted in the table only"
            self.stdout.write(
                f"Checked {logs_checked} {'log' if logs_checked == 1 else 'logs'} "
                f"and {events} {'event' if events == 1 else 'events'}: "
                f"{self.problems} {noun}{only_counted if unlisted else ''}.",
                None if self.problems else self.style.SUCCESS,
            )
            unknown_types = self.report.unknown_types()
            if unknown_types:
                names = ", ".join(
                    f"{name!r} ({count})" for name, count in unknown_types.items()
                )
                self.stdout.write(
                    f"Types no imported DomainEvent class claims: {names}. "
                    "Import the modules that define them in your "
                    "AppConfig.ready(), so that every process registers them; "
                    "or restore the classes (or their type_name)."
                )
        if self.problems:
            raise CommandError(
                f"{self.problems} {noun} found in the event store.",
                returncode=PROBLEMS_FOUND,
            )

    def _check_triggers(self, using: str) -> None:
        """Report a missing or disabled trigger of the store, with its repair."""
        for problem, restore in trigger_problems(using):
            self.problems += 1
            self.stdout.write(f"{problem}. Restore it with:\n{restore}")

    def _check_exist(self, using: str, log_ids: list[uuid.UUID]) -> None:
        found = set(
            Log.objects.using(using).filter(pk__in=log_ids).values_list("pk", flat=True)
        )
        missing = [str(log_id) for log_id in log_ids if log_id not in found]
        if missing:
            raise CommandError(
                f"No log has the id {', '.join(missing)}.", returncode=USAGE_ERROR
            )

    def _check_events(
        self, using: str, log_ids: list[uuid.UUID], kind: str | None
    ) -> tuple[int, int]:
        """Check every event in one pass; return the counts of logs and events."""
        rows = queries.scan_rows(using, log_ids, kind, conf.EVENTLOG_CHUNK_SIZE)
        decode = RecordDecoder(using)
        logs = events = 0
        current: uuid.UUID | None = None
        expected = 0
        for log_id, row in rows:
            events += 1
            if log_id != current:
                if current is not None:
                    logs += 1
                    self.progress.update(logs)
                current, expected = log_id, 0
            index = row[0]
            if index != expected:
                self._report(log_id, index, _index_problem(index, expected))
            expected = max(expected, index + 1)
            self._decode(decode, log_id, row)
        if current is not None:
            logs += 1
            self.progress.update(logs)
        return logs, events

    def _decode(self, decode: RecordDecoder, log_id: uuid.UUID, row: sql.Row) -> None:
        """Decode one event and count it; report it when it fails and is one
        of the first few failures of its type and version."""
        index, type_name, version = row[0], row[1], row[9]
        try:
            decode(log_id, row)
        except UnknownEventType:
            reason = UNKNOWN_TYPE
            problem = f"unknown event type {type_name!r}: {UNKNOWN_TYPE}"
        except Exception as e:
            cls = event_class(type_name)
            reason = e.reason if isinstance(e, EventDecodingError) else str(e)
            reason = reason or type(e).__name__
            stored = "" if version in (None, 1) else f" stored at version {version}"
            problem = (
                f"{type_name!r} payload{stored} does not decode into "
                f"{cls.__module__}.{cls.__qualname__}: {reason}"
            )
        else:
            self.report.add_decoded(type_name, version)
            return
        if self.report.add_failed(type_name, version, log_id, index, reason):
            self._report(log_id, index, problem)
        else:
            # Counted in the table only: a class change can fail millions.
            self.problems += 1

    def _check_empty_logs(self, logs: models.QuerySet[Log]) -> int:
        """Report the logs without events; return how many there are."""
        empty = (
            logs.filter(~models.Exists(Event.objects.filter(log=models.OuterRef("pk"))))
            .order_by("pk")
            .values_list("pk", "kind")
        )
        count = 0
        for log_id, kind in empty.iterator(chunk_size=conf.EVENTLOG_CHUNK_SIZE):
            count += 1
            self._report(log_id, None, f"{kind!r} log has no events")
        return count

    def _report(self, log_id: uuid.UUID, index: int | None, problem: str) -> None:
        self.problems += 1
        where = f"log {log_id}" if index is None else f"log {log_id} index {index}"
        self.progress.clear()
        self.stdout.write(f"{where}: {problem}")
        self.progress.redraw()


def _parse_log_id(value: str) -> uuid.UUID:
    try:
        return parse_log_id(value)
    except InvalidArgument as e:
        raise CommandError(str(e), returncode=USAGE_ERROR) from None


def _index_problem(index: int, expected: int) -> str:
    if index < expected:
        return f"duplicate index {index}"
    if index == expected + 1:
        missing = f"index {expected} is missing"
    else:
        missing = f"indices {expected} to {index - 1} are missing"
    if expected == 0:
        return f"the log starts at index {index}, not 0: {missing}"
    return f"gap: {missing}"
