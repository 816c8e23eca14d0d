"""How the stored events decode, per type name and stored schema version.

``eventlog_verify`` counts every event it decodes here and prints the
table after its scan. Memory is bounded by the number of (type name,
version) pairs in the store, whatever the number of events: a count of
decoded and of failed events each, and the positions of the first
:data:`LISTED_FAILURES` failures.
"""

from __future__ import annotations

import uuid
from collections import Counter

from django_eventlog.events import event_class
from django_eventlog.exceptions import UnknownEventType

__all__ = ["LISTED_FAILURES", "UNKNOWN_TYPE", "DecodingReport"]

#: Failures of one type and version listed by position; the rest are counted.
LISTED_FAILURES = 5
#: Why an event whose type no class claims does not decode.
UNKNOWN_TYPE = "no imported DomainEvent class claims it"

HEADER = ("type", "version", "decoded", "failed", "read as")
# Numbers are right-aligned.
NUMERIC = (False, True, True, True, False)


class Failures:
    """The events of one type and version that do not decode."""

    __slots__ = ("count", "first", "reason")

    def __init__(self, reason: str) -> None:
        self.count = 0
        #: Positions (log id, index) of the first ones, in scan order.
        self.first: list[tuple[uuid.UUID, int]] = []
        #: Why the first one does not decode.
        self.reason = reason


class DecodingReport:
    """Counts of decoded and failed events per (type name, stored version)."""

    def __init__(self) -> None:
        self.decoded: Counter[tuple[str, int]] = Counter()
        self.failures: dict[tuple[str, int], Failures] = {}

    def add_decoded(self, type_name: str, version: int | None) -> None:
        """Count an event that decodes (``version`` as stored: None is 1)."""
        self.decoded[type_name, 1 if version is None else version] += 1

    def add_failed(
        self,
        type_name: str,
        version: int | None,
        log_id: uuid.UUID,
        index: int,
        reason: str,
    ) -> bool:
        """Count an event that does not decode; return whether it is one of
        the first :data:`LISTED_FAILURES` of its type and version, the ones
        listed by position."""
        key = (type_name, 1 if version is None else version)
        failures = self.failures.get(key)
        if failures is None:
            failures = self.failures[key] = Failures(reason)
        failures.count += 1
        if len(failures.first) < LISTED_FAILURES:
            failures.first.append((log_id, index))
            return True
        return False

    @property
    def unlisted(self) -> int:
        """How many failures are counted but not listed by position."""
        return sum(f.count - len(f.first) for f in self.failures.values())

    def unknown_types(self) -> dict[str, int]:
        """The stored type names no class claims, with their event counts."""
        found: Counter[str] = Counter()
        for (type_name, _), failures in self.failures.items():
            if _read_as(type_name) is None:
                found[type_name] += failures.count
        return dict(sorted(found.items()))

    def lines(self) -> list[str]:
        """The table, one row per type and version, then the failures of
        each row that has some: the first one's reason and positions."""
        keys = sorted(self.decoded.keys() | self.failures.keys())
        if not keys:
            return []
        rows = [HEADER]
        for type_name, version in keys:
            failures = self.failures.get((type_name, version))
            rows.append(
                (
                    type_name,
                    str(version),
                    str(self.decoded[type_name, version]),
                    str(0 if failures is None else failures.count),
                    _read_as(type_name) or UNKNOWN_TYPE,
                )
            )
        widths = [max(len(row[column]) for row in rows) for column in range(5)]
        lines = ["Events by stored type and schema version:"]
        for row in rows:
            cells = [
                cell.rjust(width) if numeric else cell.ljust(width)
                for cell, width, numeric in zip(row, widths, NUMERIC, strict=True)
            ]
            lines.append("  ".join(cells).rstrip())
        for (type_name, version), failures in sorted(self.failures.items()):
            lines.append(
                f"{type_name!r} version {version}: {failures.count} failed. "
                f"First failure: {failures.reason}"
            )
            lines.extend(f"  log {log_id} index {i}" for log_id, i in failures.first)
            if failures.count > len(failures.first):
                lines.append(f"  and {failures.count - len(failures.first)} more")
        return lines


def _read_as(type_name: str) -> str | None:
    """The class events stored under ``type_name`` decode into, with its
    version (and current name, for an alias); None when no class claims it."""
    try:
        cls = event_class(type_name)
    except UnknownEventType:
        return None
    read_as = f"{cls.__module__}.{cls.__qualname__} version {cls.schema_version}"
    if cls.type_name != type_name:
        read_as += f" (an alias: read as {cls.type_name!r})"
    return read_as
