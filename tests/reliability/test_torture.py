"""Reliability ("torture") runs: many worker processes on real PostgreSQL and Redis.

Every test here is marked ``postgresql`` and ``torture``. By default each run
puts about 8 seconds of load on the database and the whole file takes well
under a minute; ``EVENTLOG_TORTURE_SECONDS`` sets the seconds of load per run,
``EVENTLOG_TORTURE_WORKERS`` the number of worker processes (default 8) and
``EVENTLOG_TORTURE_SEED`` the random seed (printed with the figures)::

    EVENTLOG_DB=postgresql EVENTLOG_TORTURE_SECONDS=120 pytest -m torture

Workers are processes started with the "spawn" method, so none inherits the
parent's database or Redis connections. Each runs ``django.setup()`` with
testproject.settings against pytest-django's test database (whose name the
parent passes explicitly), keeps its own connection, mixes ``create_log``,
``append`` with fresh and stale states, ``reduce`` through the cache,
transactions that commit or roll back, and retries with idempotency keys, and
writes every operation with its outcome to a JSON file. The parent then holds
the records against what the database stores (see ``check_run``):

* every log's indices run from 0 without a gap, and no key is stored twice;
* every write that reported success is stored at the index it returned, with
  its key and payload, and every stored event is one that a write reported
  (so no write that reported an error was stored);
* every ``ConcurrentAppend`` names an index another event holds, every
  ``IdempotentReplay`` names the event holding the key, which is the same
  request (docs/concepts.md, "Replay or conflict": equal and on the same log
  for an append; equal, event 0 and on the given log, if any, for a create;
  every log has one kind), every ``IdempotencyConflict`` names it and is not,
  and the event named was written by an operation that had started by then;
* every reduction a worker got equals a cold fold of the stored events up to
  its index, applies each index once, and includes every event whose write
  had returned before the reduce started;
* every cached reduction left in Redis equals a cold fold of the database.

The figures of each run are printed (whatever pytest's capture) and appended
to artifacts/reliability.txt.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import multiprocessing
import os
import random
import subprocess
import sys
import threading
import time
import traceback
import uuid
from bisect import bisect_left
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import django
import msgspec
import pytest
from django.db import InterfaceError, OperationalError, connection, transaction
from django.test.utils import override_settings

from django_eventlog import (
    ConcurrentAppend,
    DomainEvent,
    IdempotencyConflict,
    IdempotentReplay,
    LogNotFound,
    LogState,
    NeverCache,
)
from tests.conftest import redis_cache
from tests.domain import Account, Deposited, Opened
from tests.redis_server import RedisServer, free_port

try:
    import psycopg
except ImportError:  # an install without PostgreSQL: every test here is deselected
    psycopg = None  # type: ignore[assignment]

if TYPE_CHECKING:
    from django_eventlog.models import LogManager

# No model is imported at module level: spawned workers import this module
# before they call django.setup().

pytestmark = [
    pytest.mark.postgresql,
    pytest.mark.torture,
    pytest.mark.django_db(transaction=True),
]

ROOT = Path(__file__).resolve().parents[2]
REPORT = ROOT / "artifacts" / "reliability.txt"
KIND = "torture"
SEEDED_LOGS = 20  # created by the parent before the workers start
FUTURE_LOGS = 20  # ids the workers race to create with create_log(log_id=...)
RACED_LOGS = 4  # created by every worker at once, under one key each
SHARED_KEYS = 64  # keys every worker appends under (same event, mostly)
STARTUP_TIMEOUT = 120.0  # seconds for all workers to be ready
OP_TIMEOUT = 30.0  # no operation, retries included, may take longer
JOIN_GRACE = 90.0  # seconds past the load a worker may take to finish
REDIS_DOWN_SECONDS = 1.5
PG_DOWN_SECONDS = 1.0
DB_ERRORS = ("django.db.utils.OperationalError", "django.db.utils.InterfaceError")
# When the server goes away between the last FETCH of reduce()'s server-side
# cursor and its CLOSE, Django's cursor_iter closes the cursor outside its
# error wrapping; reduce() wraps that itself, so the restart run is strict:
# no psycopg error may reach a caller unwrapped.
ALLOW_UNWRAPPED_DRIVER_ERRORS = False
_CONNECTION_ERRORS: tuple[type[Exception], ...] = (OperationalError, InterfaceError)
if psycopg is not None:
    _CONNECTION_ERRORS += (psycopg.OperationalError, psycopg.InterfaceError)

T = TypeVar("T")
Record = dict[str, Any]


def load_seconds() -> float:
    value = os.environ.get("EVENTLOG_TORTURE_SECONDS", "8")
    try:
        seconds = float(value)
    except ValueError:
        pytest.fail(f"EVENTLOG_TORTURE_SECONDS must be a number, got {value!r}")
    if seconds <= 0:
        pytest.fail(f"EVENTLOG_TORTURE_SECONDS must be positive, got {value!r}")
    return seconds


def worker_count() -> int:
    value = os.environ.get("EVENTLOG_TORTURE_WORKERS", "8")
    if not value.isdigit() or int(value) < 2:
        pytest.fail(f"EVENTLOG_TORTURE_WORKERS must be an integer >= 2, got {value!r}")
    return int(value)


def run_seed() -> int:
    value = os.environ.get("EVENTLOG_TORTURE_SEED")
    return int(value) if value else random.SystemRandom().randrange(10**9)


# The aggregate: it remembers the indices it applied, so that an event applied
# twice (or skipped) by a cached reduction shows.


class Ledger(Account):
    """tests.domain.Account under a name of its own in the cache."""

    aggregate_name = "tests.torture.Ledger"


class ColdLedger(Ledger):
    """The same fold, never cached: every reduce reads the whole log."""

    aggregate_name = "tests.torture.ColdLedger"
    cache_policy = NeverCache()


# Workers


@dataclass(frozen=True)
class WorkerConfig:
    worker: int
    env: dict[str, str | None]  # environment for django.setup(); None unsets
    seconds: float
    seed: int
    prefix: str  # of this run's idempotency keys
    seeded: list[str]  # logs that exist before the start
    future: list[str]  # ids to create with create_log(log_id=...)
    raced: list[str]  # ids every worker creates at the start, one key each
    out: str  # the JSON file of the worker's records
    weights: dict[str, int]
    key_share: float  # share of writes that carry an idempotency key
    retry_db_errors: bool  # retry on OperationalError/InterfaceError
    # Django settings the worker sets after django.setup()
    settings: dict[str, Any] = field(default_factory=dict)


TORTURE_WEIGHTS = {
    "create": 8,
    "fresh": 28,
    "stale": 12,
    "reduce": 18,
    "retry": 10,
    "conflict": 6,
    "shared": 10,
    "transaction": 8,
}
# Against a restarting server: keyed writes only, so that every write whose
# outcome was lost can be retried safely.
RESTART_WEIGHTS = {"create": 6, "fresh": 50, "stale": 10, "reduce": 20, "retry": 14}

_LIBRARY_ERRORS = (ConcurrentAppend, IdempotentReplay, IdempotencyConflict, LogNotFound)


class _Rollback(Exception):
    pass


class _WarningCounter(logging.Handler):
    """Counts django_eventlog's warnings (the fail-open cache's) in a worker."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.count = 0
        self.samples: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.count += 1
        if len(self.samples) < 3:
            self.samples.append(record.getMessage()[:200])


def _event_json(event: DomainEvent) -> dict[str, Any]:
    return {"type": event.type_name, "payload": msgspec.to_builtins(event)}


def _error_fields(error: Exception) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "type": f"{type(error).__module__}.{type(error).__qualname__}"
    }
    for name in ("log_id", "idempotency_key", "event_index"):
        if hasattr(error, name):
            value = getattr(error, name)
            fields[name] = str(value) if isinstance(value, uuid.UUID) else value
    if isinstance(error, psycopg.Error):
        fields["unwrapped"] = True  # the driver's, not django.db's
    if not isinstance(error, _LIBRARY_ERRORS):
        fields["message"] = (
            str(error).strip().splitlines()[0][:300] if str(error) else ""
        )
        if not isinstance(error, (OperationalError, InterfaceError)):
            # Where it came from, to report it.
            fields["where"] = [
                f"{Path(frame.filename).name}:{frame.lineno} {frame.name}"
                for frame in traceback.extract_tb(error.__traceback__)[-6:]
            ]
            context = error.__context__
            if context is not None:
                fields["during"] = (
                    f"{type(context).__module__}.{type(context).__name__}"
                )
    return fields


class Torturer:
    """One worker's operations, each recorded with its outcome."""

    def __init__(self, config: WorkerConfig) -> None:
        from django_eventlog.models import Log

        self.logs: LogManager = Log.objects
        self.config = config
        self.rng = random.Random(config.seed)
        self.records: list[Record] = []
        self.counter = 0
        self.seeded = [uuid.UUID(x) for x in config.seeded]
        self.future = [uuid.UUID(x) for x in config.future]
        self.mine: list[uuid.UUID] = []
        # States seen, with the record that produced them; they go stale.
        self.states: list[tuple[LogState, str]] = []
        # Keyed writes sent earlier (not rolled back), to send again.
        self.keyed: list[tuple[Record, DomainEvent]] = []

    # Helpers

    def next_id(self) -> str:
        self.counter += 1
        return f"{self.config.worker}.{self.counter}"

    def amount(self) -> int:
        # Unique across workers and operations, so every event can be told apart.
        return (self.config.worker + 1) * 10**9 + self.counter

    def key(self, share: float | None = None) -> str | None:
        share = self.config.key_share if share is None else share
        if self.rng.random() < share:
            return f"{self.config.prefix}{self.config.worker}.{self.counter}"
        return None

    def record(self, op: str, kind: str, **fields: Any) -> Record:
        return {"id": self.next_id(), "op": op, "kind": kind, **fields}

    def remember(self, state: LogState, origin: str) -> None:
        self.states.append((state, origin))
        if len(self.states) > 200:
            self.states.pop(self.rng.randrange(len(self.states)))

    def pool(self) -> list[uuid.UUID]:
        return self.seeded + self.future + self.mine[-20:]

    def call(self, rec: Record, action: Callable[[], T]) -> T | None:
        """Run ``action``, record its outcome; retry lost outcomes if asked."""
        result = self._attempt(rec, action)
        if rec["outcome"] != "db_error":
            return result
        # The outcome is unknown: send the same request again (same state,
        # event and key), first as is, then after closing the broken connection
        # as Django's request cycle does (close_if_unusable_or_obsolete).
        first, attempts = rec, 1
        while True:
            if time.monotonic() - first["t0"] > OP_TIMEOUT:
                return None  # unresolved: the parent reports it
            closed = attempts > 1
            if closed:
                connection.close_if_unusable_or_obsolete()
                time.sleep(0.1)
            attempts += 1
            again = {
                key: value
                for key, value in first.items()
                if key not in {"id", "t0", "t1", "outcome", "error", "result"}
            }
            again.update(id=self.next_id(), chain=first["id"], closed_before=closed)
            result = self._attempt(again, action)
            if again["outcome"] != "db_error":
                return result

    def _attempt(self, rec: Record, action: Callable[[], T]) -> T | None:
        result: T | None = None
        rec["t0"] = time.monotonic()
        try:
            result = action()
        except _LIBRARY_ERRORS as e:
            rec["outcome"] = type(e).__name__
            rec["error"] = _error_fields(e)
        except _CONNECTION_ERRORS as e:
            rec["outcome"] = "db_error" if self.config.retry_db_errors else "unexpected"
            rec["error"] = _error_fields(e)
            if not self.config.retry_db_errors:
                connection.close_if_unusable_or_obsolete()
        except Exception as e:
            rec["outcome"] = "unexpected"
            rec["error"] = _error_fields(e)
            connection.close_if_unusable_or_obsolete()
        else:
            rec["outcome"] = "ok"
            if isinstance(result, LogState) and rec["op"] != "reduce":
                rec["result"] = {"log": str(result.log_id), "next": result.next_index}
        rec["t1"] = time.monotonic()
        self.records.append(rec)
        return result

    def reduce(self, log_id: uuid.UUID, kind: str) -> Any:
        rec = self.record("reduce", kind, log=str(log_id))
        reduction = self.call(rec, lambda: self.logs.reduce(log_id, Ledger))
        if reduction is not None:
            aggregate = reduction.aggregate
            through = reduction.through_index
            # (the last attempt's record, when a lost outcome was retried)
            self.records[-1]["result"] = {
                "through": through,
                "owner": aggregate.owner,
                "balance": aggregate.balance,
                # The indices themselves only when they are wrong (they are long).
                "indices": None
                if aggregate.indices == list(range(through + 1))
                else aggregate.indices,
            }
            self.remember(reduction, rec["id"])
        return reduction

    def send_create(
        self, kind: str, event: Opened, log_id: uuid.UUID | None, key: str | None
    ) -> Record:
        rec = self.record(
            "create",
            kind,
            log=None if log_id is None else str(log_id),
            index=0,
            event=_event_json(event),
            key=key,
        )
        state = self.call(
            rec,
            lambda: self.logs.create_log(
                event, kind=KIND, log_id=log_id, idempotency_key=key
            ),
        )
        if state is not None:
            self.remember(state, rec["id"])
            if log_id is None:
                self.mine.append(state.log_id)
        return rec

    def send_append(
        self,
        kind: str,
        state: LogState,
        event: Deposited,
        key: str | None,
        origin: str | None = None,
    ) -> Record:
        rec = self.record(
            "append",
            kind,
            log=str(state.log_id),
            index=state.next_index,
            event=_event_json(event),
            key=key,
            state_from=origin,
        )
        new_state = self.call(
            rec, lambda: self.logs.append(state, event, idempotency_key=key)
        )
        if new_state is not None:
            self.remember(new_state, rec["id"])
        return rec

    # Operations

    def race_create(self) -> None:
        """Every worker creates the same logs under the same keys at once."""
        for i, log_id in enumerate(self.config.raced):
            self.counter += 1
            self.send_create(
                "raced",
                Opened(owner=f"raced-{i}"),
                uuid.UUID(log_id),
                f"{self.config.prefix}raced-{i}",
            )
        self.seeded += [uuid.UUID(x) for x in self.config.raced]

    def op_create(self) -> None:
        self.counter += 1
        event = Opened(owner=f"w{self.config.worker}.{self.counter}")
        explicit = self.rng.random() < 0.5
        log_id = self.rng.choice(self.future) if explicit else None
        key = self.key()
        rec = self.send_create("explicit" if explicit else "new", event, log_id, key)
        if key is not None:
            self.keyed.append((rec, event))

    def op_fresh(self) -> None:
        reduction = self.reduce(self.rng.choice(self.pool()), "before-append")
        if reduction is None:
            return
        self.counter += 1
        event = Deposited(amount=self.amount())
        key = self.key()
        rec = self.send_append("fresh", reduction, event, key)
        if key is not None:
            self.keyed.append((rec, event))

    def op_stale(self) -> None:
        if not self.states:
            self.op_fresh()
            return
        state, origin = self.rng.choice(self.states)
        self.counter += 1
        event = Deposited(amount=self.amount())
        key = self.key(self.config.key_share / 2 if self.config.key_share < 1 else 1)
        rec = self.send_append("stale", state, event, key, origin)
        if key is not None:
            self.keyed.append((rec, event))

    def op_reduce(self) -> None:
        self.reduce(self.rng.choice(self.pool()), "read")

    def op_retry(self, *, same_event: bool = True) -> None:
        """Send an earlier keyed write again: the same event, or another one."""
        if not self.keyed:
            self.op_fresh()
            return
        original, event = self.rng.choice(self.keyed)
        self.counter += 1
        kind = "retry" if same_event else "conflict"
        if isinstance(event, Opened):
            if not same_event:
                event = Opened(owner=f"{event.owner}~{self.counter}")
            log_id = None if original["log"] is None else uuid.UUID(original["log"])
            self.send_create(kind, event, log_id, original["key"])
        else:
            assert isinstance(event, Deposited)
            if not same_event:
                event = Deposited(amount=self.amount())
            state = LogState(uuid.UUID(original["log"]), original["index"])
            origin = original.get("state_from")
            self.send_append(kind, state, event, original["key"], origin)

    def op_conflict(self) -> None:
        self.op_retry(same_event=False)

    def op_shared(self) -> None:
        """Append under a key every worker uses, mostly with the same event."""
        k = self.rng.randrange(SHARED_KEYS)
        log_id = self.seeded[k % SEEDED_LOGS] if self.seeded else None
        if log_id is None:
            self.op_fresh()
            return
        reduction = self.reduce(log_id, "before-append")
        if reduction is None:
            return
        self.counter += 1
        same = self.rng.random() < 0.85
        event = Deposited(amount=-(k + 1) if same else -self.amount())
        self.send_append("shared", reduction, event, f"{self.config.prefix}shared-{k}")

    def op_transaction(self) -> None:
        """Reduce, append and reduce again in one transaction; commit or roll back."""
        log_id = self.rng.choice(self.seeded + self.mine[-20:])
        self.counter += 1
        event = Deposited(amount=self.amount())
        key = self.key()
        commit = self.rng.random() < 0.5
        rec = self.record(
            "append",
            "transaction",
            log=str(log_id),
            event=_event_json(event),
            key=key,
            commit=commit,
        )
        rec["t0"] = time.monotonic()
        try:
            with transaction.atomic():
                reduction = self.reduce(log_id, "in-transaction")
                if reduction is None:
                    raise _Rollback
                rec["index"] = reduction.next_index
                state = self.logs.append(reduction, event, idempotency_key=key)
                rec["result"] = {"log": str(state.log_id), "next": state.next_index}
                again = self.logs.reduce(log_id, Ledger)
                rec["inner_ok"] = (
                    again.through_index == reduction.next_index
                    and again.aggregate.balance
                    == reduction.aggregate.balance + event.amount
                )
                if not commit:
                    raise _Rollback
        except _Rollback:
            rec["outcome"] = "rolled_back" if "result" in rec else "skipped"
            if "result" in rec:
                # A state ahead of the log: appending with it must not leave a gap.
                self.remember(LogState(log_id, rec["result"]["next"]), rec["id"])
        except _LIBRARY_ERRORS as e:
            rec["outcome"] = type(e).__name__
            rec["error"] = _error_fields(e)
        except Exception as e:
            rec["outcome"] = "unexpected"
            rec["error"] = _error_fields(e)
            connection.close_if_unusable_or_obsolete()
        else:
            rec["outcome"] = "ok"
            self.remember(LogState(log_id, rec["result"]["next"]), rec["id"])
            if key is not None:
                self.keyed.append((rec, event))
        rec["t1"] = time.monotonic()
        if rec["outcome"] != "skipped":
            self.records.append(rec)

    def run(self, deadline: float, faults_over: Any) -> None:
        """Operate until ``deadline`` and the parent's faults are over."""
        operations = {
            "create": self.op_create,
            "fresh": self.op_fresh,
            "stale": self.op_stale,
            "reduce": self.op_reduce,
            "retry": self.op_retry,
            "conflict": self.op_conflict,
            "shared": self.op_shared,
            "transaction": self.op_transaction,
        }
        names = list(self.config.weights)
        weights = [self.config.weights[name] for name in names]
        self.race_create()
        cap = deadline + JOIN_GRACE / 2
        while time.monotonic() < deadline or (
            not faults_over.is_set() and time.monotonic() < cap
        ):
            operations[self.rng.choices(names, weights)[0]]()


def torture_worker(config: WorkerConfig, barrier: Any, faults_over: Any) -> None:
    """A worker process: set up Django, wait for the others, then operate."""
    for name, value in config.env.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
    django.setup()
    # Through override_settings: the library keeps settings until Django
    # signals a change.
    override_settings(**config.settings).enable()
    from django_eventlog import cache_stats

    counter = _WarningCounter()
    eventlog_logger = logging.getLogger("django_eventlog")
    eventlog_logger.handlers = [counter]
    eventlog_logger.propagate = False
    torturer = Torturer(config)
    connection.ensure_connection()
    barrier.wait(timeout=STARTUP_TIMEOUT)
    started = time.monotonic()
    try:
        torturer.run(started + config.seconds, faults_over)
    finally:
        connection.close()
        result = {
            "worker": config.worker,
            "pid": os.getpid(),
            "started": started,
            "records": torturer.records,
            "cache": dataclasses.asdict(cache_stats()),
            "warnings": counter.count,
            "warning_samples": counter.samples,
        }
        Path(config.out).write_text(json.dumps(result))


def run_workers(
    configs: list[WorkerConfig], during: Callable[[float], None] | None = None
) -> list[dict[str, Any]]:
    """Start the workers, release them together, run ``during``, collect them."""
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(len(configs) + 1)
    # Workers run for their seconds of load and, past them, until ``during``
    # (the faults) has returned, so that recovery shows in every run.
    faults_over = context.Event()
    processes = [
        context.Process(
            target=torture_worker,
            args=(config, barrier, faults_over),
            name=f"torture-worker-{config.worker}",
            daemon=True,
        )
        for config in configs
    ]
    for process in processes:
        process.start()
    try:
        try:
            barrier.wait(timeout=STARTUP_TIMEOUT)
        except threading.BrokenBarrierError:
            codes = [process.exitcode for process in processes]
            pytest.fail(f"the workers did not all start (exit codes {codes})")
        started = time.monotonic()
        try:
            if during is not None:
                during(started)
        finally:
            faults_over.set()
        deadline = started + max(config.seconds for config in configs) + JOIN_GRACE
        for process in processes:
            process.join(max(0.0, deadline - time.monotonic()))
        hung = [process.name for process in processes if process.is_alive()]
        assert not hung, (
            f"workers still running {JOIN_GRACE:.0f} s after the load: {hung}"
        )
        failed = [(p.name, p.exitcode) for p in processes if p.exitcode != 0]
        assert not failed, f"workers failed (their stderr is above): {failed}"
    finally:
        for process in processes:
            if process.is_alive():
                process.kill()
                process.join(10)
            if not process.is_alive():
                process.close()
    return [json.loads(Path(config.out).read_text()) for config in configs]


def worker_configs(
    *,
    count: int,
    env: dict[str, str | None],
    seconds: float,
    seed: int,
    directory: Path,
    seeded: list[str],
    weights: dict[str, int],
    key_share: float,
    retry_db_errors: bool = False,
    settings: dict[str, Any] | None = None,
) -> list[WorkerConfig]:
    rng = random.Random(seed)
    prefix = f"t{seed}-"
    future = [str(uuid.uuid4()) for _ in range(FUTURE_LOGS)]
    raced = [str(uuid.uuid4()) for _ in range(RACED_LOGS)]
    return [
        WorkerConfig(
            worker=i,
            env=env,
            seconds=seconds,
            seed=rng.randrange(2**32),
            prefix=prefix,
            seeded=seeded,
            future=future,
            raced=raced,
            out=str(directory / f"worker-{i}.json"),
            weights=weights,
            key_share=key_share,
            retry_db_errors=retry_db_errors,
            settings=settings or {},
        )
        for i in range(count)
    ]


def django_env(
    settings_dict: dict[str, Any], redis_url: str | None
) -> dict[str, str | None]:
    """The environment under which testproject.settings uses this database."""
    return {
        "DJANGO_SETTINGS_MODULE": "testproject.settings",
        "DJANGO_DEBUG": "0",  # no query log
        "EVENTLOG_DB": "postgresql",
        "PGHOST": str(settings_dict["HOST"] or "127.0.0.1"),
        "PGPORT": str(settings_dict["PORT"] or "5432"),
        "PGUSER": str(settings_dict["USER"] or "postgres"),
        "PGPASSWORD": str(settings_dict["PASSWORD"] or ""),
        "PGDATABASE": str(settings_dict["NAME"]),
        "PGCONNECT_TIMEOUT": "5",
        "REDIS_URL": redis_url,
    }


# What the database stores, and the check of the records against it


@dataclass(frozen=True)
class Stored:
    log: str
    index: int
    type: str
    payload: dict[str, Any]
    key: str | None


def stored_by_orm() -> tuple[set[str], list[Stored]]:
    from django_eventlog.models import Event, Log

    logs = {
        str(pk) for pk in Log.objects.filter(kind=KIND).values_list("id", flat=True)
    }
    rows = Event.objects.filter(log__kind=KIND).values_list(
        "log_id", "index", "type", "payload", "idempotency_key"
    )
    return logs, [Stored(str(row[0]), row[1], row[2], row[3], row[4]) for row in rows]


def stored_by_psycopg(conninfo: dict[str, Any]) -> tuple[set[str], list[Stored]]:
    with psycopg.connect(**conninfo, autocommit=True) as conn:
        logs = {
            str(row[0])
            for row in conn.execute(
                "SELECT id FROM django_eventlog_log WHERE kind = %s", [KIND]
            )
        }
        rows = conn.execute(
            "SELECT e.log_id, e.index, e.type, e.payload, e.idempotency_key "
            "FROM django_eventlog_event e "
            "JOIN django_eventlog_log l ON l.id = e.log_id WHERE l.kind = %s",
            [KIND],
        ).fetchall()
    return logs, [Stored(str(r[0]), r[1], r[2], r[3], r[4]) for r in rows]


def chain_of(rec: Record) -> str:
    """The id of the first attempt of a write retried after a lost outcome."""
    return str(rec.get("chain", rec["id"]))


def identity(event: dict[str, Any], key: str | None) -> tuple[str, str, str | None]:
    return event["type"], json.dumps(event["payload"], sort_keys=True), key


def stored_identity(stored: Stored) -> tuple[str, str, str | None]:
    return identity({"type": stored.type, "payload": stored.payload}, stored.key)


def same_request(rec: Record, stored: Stored) -> bool:
    """Whether the write ``rec`` replays ``stored``, which holds its key."""
    if stored_identity(stored) != identity(rec["event"], rec["key"]):
        return False
    if rec["op"] == "create":  # every log of a run has the kind KIND
        return stored.index == 0 and rec["log"] in (None, stored.log)
    return bool(stored.log == rec["log"])


def fold(events: list[Stored]) -> list[tuple[str, int]]:
    """(owner, balance) after each index: the oracle, independent of the library."""
    owner, balance, figures = "", 0, []
    for event in events:
        if event.type == Opened.type_name:
            owner = event.payload["owner"]
        elif event.type == Deposited.type_name:
            balance += event.payload["amount"]
        figures.append((owner, balance))
    return figures


@dataclass
class Verdict:
    violations: list[str] = field(default_factory=list)
    counts: Counter[str] = field(default_factory=Counter)
    prefixes: dict[str, list[tuple[str, int]]] = field(default_factory=dict)
    events: int = 0
    logs: int = 0
    longest: int = 0
    dump: Path | None = None

    def fail(self, message: str) -> None:
        self.violations.append(message)


def check_run(
    records: list[Record], logs: set[str], events: list[Stored], *, db_errors: bool
) -> Verdict:
    """Hold every recorded outcome against the stored events (module docstring)."""
    verdict = Verdict(logs=len(logs), events=len(events))
    fail = verdict.fail
    at: dict[tuple[str, int], Stored] = {}
    by_key: dict[str, Stored] = {}
    per_log: dict[str, list[Stored]] = defaultdict(list)
    for event in events:
        if (event.log, event.index) in at:
            fail(f"two events at {event.log}[{event.index}]")
        at[event.log, event.index] = event
        if event.key is not None:
            if event.key in by_key:
                fail(f"idempotency key {event.key!r} stored twice")
            by_key[event.key] = event
        per_log[event.log].append(event)
        if event.log not in logs:
            fail(f"event {event.log}[{event.index}] of no log")
    for log_id in logs:
        in_order = sorted(per_log[log_id], key=lambda event: event.index)
        indices = [event.index for event in in_order]
        if indices != list(range(len(indices))):
            fail(f"log {log_id} has indices {indices[:20]}... (not 0..n-1)")
        if not indices:
            fail(f"log {log_id} has no event 0")
        verdict.prefixes[log_id] = fold(in_order)
        verdict.longest = max(verdict.longest, len(in_order))

    by_id = {rec["id"]: rec for rec in records}
    chains: dict[str, list[Record]] = defaultdict(list)
    for rec in records:
        chains[chain_of(rec)].append(rec)

    def started(rec: Record) -> float:
        return float(by_id[chain_of(rec)]["t0"])

    # Which write put each stored event there: the write that reported success,
    # or (after a lost outcome) the write whose retry was answered as a replay.
    claims: dict[tuple[str, int], Record] = {}
    uncertain: dict[tuple[str, int], Record] = {}
    for rec in records:
        if rec["op"] == "reduce" or rec["outcome"] not in {"ok", "IdempotentReplay"}:
            continue
        if rec["outcome"] == "IdempotentReplay":
            chain = chains[chain_of(rec)]
            if not any(r["outcome"] == "db_error" for r in chain):
                continue
            error = rec["error"]
            uncertain.setdefault((error["log_id"], error["event_index"]), rec)
            continue
        result = rec["result"]
        target = (result["log"], rec["index"])
        if result["next"] != rec["index"] + 1:
            fail(f"{rec['id']}: {rec['op']} at {rec['index']} returned {result}")
        if rec["log"] is not None and result["log"] != rec["log"]:
            fail(f"{rec['id']}: {rec['op']} on {rec['log']} returned {result}")
        stored = at.get(target)
        if stored is None:
            fail(f"{rec['id']}: {rec['op']} reported success at {target}, not stored")
        elif stored_identity(stored) != identity(rec["event"], rec["key"]):
            fail(f"{rec['id']}: {target} holds {stored}, not what it reported {rec}")
        if target in claims:
            fail(f"{rec['id']} and {claims[target]['id']} both report {target}")
        claims[target] = rec
    for target in at:
        if target not in claims and target not in uncertain:
            fail(f"{target} is stored but no write reported it")
    writers = {**uncertain, **claims}

    # Per log, (return time, index) of the writes that reported success.
    returned: dict[str, list[tuple[float, int]]] = defaultdict(list)
    for (log_id, index), rec in claims.items():
        returned[log_id].append((rec["t1"], index))
    settled: dict[str, tuple[list[float], list[int]]] = {}
    for log_id, pairs in returned.items():
        pairs.sort()
        times, highest, top = [], [], -1
        for t1, index in pairs:
            top = max(top, index)
            times.append(t1)
            highest.append(top)
        settled[log_id] = (times, highest)

    def committed_before(log_id: str, moment: float) -> int:
        """The highest index whose write had returned before ``moment``."""
        times, highest = settled.get(log_id, ([], []))
        position = bisect_left(times, moment)
        return highest[position - 1] if position else -1

    def named_by(rec: Record, stored: Stored | None, what: str) -> None:
        if stored is None:
            return
        writer = writers.get((stored.log, stored.index))
        if writer is not None and started(writer) > rec["t1"]:
            fail(
                f"{rec['id']}: {what} names {stored.log}[{stored.index}], written later"
            )

    counts = verdict.counts
    for rec in records:
        outcome = rec["outcome"]
        counts[f"{rec['op']} {outcome}"] += 1
        counts[outcome] += 1
        counts["operations"] += 1
        error = rec.get("error", {})
        if outcome == "unexpected":
            fail(f"{rec['id']}: {rec['op']} ({rec['kind']}) raised {error}")
            continue
        if outcome == "db_error":
            unwrapped = bool(error.get("unwrapped"))
            counts["unwrapped driver errors"] += unwrapped
            allowed = unwrapped and ALLOW_UNWRAPPED_DRIVER_ERRORS
            if not db_errors or not (error["type"] in DB_ERRORS or allowed):
                fail(f"{rec['id']}: {rec['op']} failed with {error}")
            continue
        if rec["op"] == "reduce":
            log_id = rec["log"]
            if outcome == "LogNotFound":
                writer = writers.get((log_id, 0))
                if writer is not None and writer["t1"] < rec["t0"]:
                    fail(f"{rec['id']}: LogNotFound for {log_id}, created before")
                continue
            if outcome != "ok":
                fail(f"{rec['id']}: reduce answered {outcome}")
                continue
            result = rec["result"]
            through = result["through"]
            prefix = verdict.prefixes.get(log_id, [])
            if not 0 <= through < len(prefix):
                fail(
                    f"{rec['id']}: reduced {log_id} through {through} of {len(prefix)}"
                )
                continue
            if (result["owner"], result["balance"]) != prefix[through]:
                fail(f"{rec['id']}: reduction {result} != cold fold {prefix[through]}")
            if result["indices"] is not None:
                fail(f"{rec['id']}: reduction applied indices {result['indices']}")
            if through < committed_before(log_id, rec["t0"]):
                fail(f"{rec['id']}: stale reduction through {through} of {log_id}")
            counts["reductions checked"] += 1
            continue
        # Writes
        log_id, at_index = rec["log"], rec.get("index", -1)
        mine = identity(rec["event"], rec["key"])
        if rec.get("inner_ok") is False:
            fail(f"{rec['id']}: reduce inside the transaction missed its own append")
        if outcome == "ok":
            continue
        if outcome == "rolled_back":
            stored = at.get((log_id, at_index))
            if stored is not None and stored_identity(stored) == mine:
                fail(f"{rec['id']}: rolled back but stored at {log_id}[{at_index}]")
            continue
        if outcome == "ConcurrentAppend":
            if log_id is None:
                fail(f"{rec['id']}: ConcurrentAppend for a new log id")
                continue
            if error["log_id"] != log_id:
                fail(f"{rec['id']}: ConcurrentAppend names {error['log_id']}")
            stored = at.get((log_id, at_index))
            writer = writers.get((log_id, at_index))
            # Taken: another event holds the index, written by an operation
            # that had started before this one ended.
            taken = (
                stored is not None
                and stored_identity(stored) != mine
                and (writer is None or started(writer) <= rec["t1"])
            )
            # Or the state was ahead of the log (it came from a transaction
            # that rolled back): the event before the index was not there yet.
            origin = by_id.get(rec.get("state_from") or "")
            previous = writers.get((log_id, at_index - 1))
            ahead = (
                origin is not None
                and origin["outcome"] == "rolled_back"
                and at_index > 0
                and (previous is None or previous["t1"] >= rec["t0"])
            )
            if ahead and not taken:
                counts["ConcurrentAppend (state ahead)"] += 1
            elif not taken:
                fail(
                    f"{rec['id']}: ConcurrentAppend ({rec['kind']}) at "
                    f"{log_id}[{at_index}], which holds {stored}, written by "
                    f"{writer['id'] if writer else None}"
                )
            continue
        if outcome in {"IdempotentReplay", "IdempotencyConflict"}:
            stored = by_key.get(rec["key"])
            named = (error["log_id"], error["event_index"])
            if error["idempotency_key"] != rec["key"]:
                fail(f"{rec['id']}: {outcome} names key {error['idempotency_key']}")
            if stored is None or (stored.log, stored.index) != named:
                fail(f"{rec['id']}: {outcome} names {named}, the key is on {stored}")
            elif same_request(rec, stored) != (outcome == "IdempotentReplay"):
                fail(f"{rec['id']}: {outcome} for {rec['event']}, stored {stored}")
            named_by(rec, stored, outcome)
            continue
        if outcome == "LogNotFound":
            writer = writers.get((log_id, 0))
            if writer is not None and writer["t1"] < rec["t0"]:
                fail(f"{rec['id']}: LogNotFound for {log_id}, created before")
            continue
        fail(f"{rec['id']}: unexpected outcome {outcome}")

    for chain_id, chain in chains.items():
        if chain[-1]["outcome"] == "db_error":
            fail(f"{chain_id}: still failing after {len(chain)} attempts")
        duration = chain[-1]["t1"] - chain[0]["t0"]
        counts["longest operation ms"] = max(
            counts["longest operation ms"], round(duration * 1000)
        )
        if duration > OP_TIMEOUT + 5:
            fail(f"{chain_id}: took {duration:.1f} s")
    counts["writes stored"] = len(at)
    return verdict


def check_cache(verdict: Verdict) -> tuple[int, int]:
    """Hold every cached reduction, then a reduce through the cache, against the
    cold fold; return (entries found, logs reduced)."""
    from django_eventlog import caching
    from django_eventlog.models import Log

    entries = 0
    for log_id, prefix in sorted(verdict.prefixes.items()):
        lookup = caching.read(Ledger, uuid.UUID(log_id))
        if lookup.outcome == "error":
            verdict.fail(f"cached reduction of {log_id} could not be read")
        cached = lookup.reduction
        if cached is not None:
            entries += 1
            through = cached.through_index
            aggregate = cached.aggregate
            if not 0 <= through < len(prefix):
                verdict.fail(f"cache holds {log_id} through {through} of {len(prefix)}")
            elif (aggregate.owner, aggregate.balance) != prefix[through] or (
                aggregate.indices != list(range(through + 1))
            ):
                verdict.fail(
                    f"cache holds {cached} for {log_id}, cold fold {prefix[through]}"
                )
        warm = Log.objects.reduce(log_id, Ledger)
        cold = Log.objects.reduce(log_id, ColdLedger)
        figures = (cold.aggregate.owner, cold.aggregate.balance)
        if cold.through_index != len(prefix) - 1 or figures != prefix[-1]:
            verdict.fail(f"cold reduce of {log_id} {cold} != {prefix[-1]}")
        if (warm.through_index, dataclasses.astuple(warm.aggregate)) != (
            cold.through_index,
            dataclasses.astuple(cold.aggregate),
        ):
            verdict.fail(f"reduce through the cache of {log_id} {warm} != {cold}")
    return entries, len(verdict.prefixes)


# Reporting


def report(capsys: pytest.CaptureFixture[str], title: str, lines: list[str]) -> None:
    """Print the figures past pytest's capture and append them to the report."""
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
    block = "\n".join([f"==== {title} ({stamp}) ====", *lines, ""])
    with capsys.disabled():
        sys.stdout.write("\n" + block)
        sys.stdout.flush()
    REPORT.parent.mkdir(exist_ok=True)
    with REPORT.open("a", encoding="utf-8") as f:
        f.write(block + "\n")


def versions() -> str:
    with connection.cursor() as cursor:
        cursor.execute("SHOW server_version")
        row = cursor.fetchone()
    pg = str(row[0]).split()[0] if row else "?"
    python = sys.version.split()[0]
    return f"PostgreSQL {pg}, Django {django.get_version()}, Python {python}"


def figure_lines(
    verdict: Verdict, results: list[dict[str, Any]], seconds: float, seed: int
) -> list[str]:
    counts = verdict.counts
    cache = Counter[str]()
    warnings = 0
    for result in results:
        cache.update(result["cache"])
        warnings += result["warnings"]
    per_second = counts["operations"] / seconds
    return [
        versions(),
        f"workers                {len(results)} processes (spawn), "
        f"{seconds:g} s of load, seed {seed}",
        f"operations             {counts['operations']} ({per_second:.0f}/s): "
        f"create_log {sum(v for k, v in counts.items() if k.startswith('create '))}, "
        f"append {sum(v for k, v in counts.items() if k.startswith('append '))}, "
        f"reduce {sum(v for k, v in counts.items() if k.startswith('reduce '))}",
        f"successes              {counts['ok']} ({counts['create ok']} creates, "
        f"{counts['append ok']} appends, {counts['reduce ok']} reductions)",
        f"ConcurrentAppend       {counts['ConcurrentAppend']}"
        f" ({counts['ConcurrentAppend (state ahead)']} for a state ahead of the log)",
        f"IdempotentReplay       {counts['IdempotentReplay']}",
        f"IdempotencyConflict    {counts['IdempotencyConflict']}",
        f"LogNotFound            {counts['LogNotFound']}",
        f"rolled back            {counts['rolled_back']} (appends in transactions)",
        f"database errors        {counts['db_error']}",
        f"stored                 {verdict.logs} logs, {verdict.events} events "
        f"(longest log {verdict.longest})",
        f"reductions checked     {counts['reductions checked']} against a cold fold",
        f"cache (workers)        hits {cache['hits']}, misses {cache['misses']}, "
        f"errors {cache['errors']}, writes {cache['writes']}; "
        f"{warnings} warnings logged",
        f"longest operation      {counts['longest operation ms']} ms",
    ]


def violation_lines(verdict: Verdict) -> list[str]:
    lines = [f"invariant violations   {len(verdict.violations)}"]
    lines += [f"  ! {message}" for message in verdict.violations[:20]]
    if verdict.dump is not None:
        lines.append(f"records and stored events of this run: {verdict.dump}")
    return lines


def dump_failure(
    verdict: Verdict, records: list[Record], logs: set[str], events: list[Stored]
) -> None:
    """Keep what a failed check saw, to look into it after the run."""
    if not verdict.violations:
        return
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    path = REPORT.parent / f"torture-failure-{stamp}-{os.getpid()}.json"
    path.parent.mkdir(exist_ok=True)
    data = {
        "violations": verdict.violations,
        "records": records,
        "logs": sorted(logs),
        "events": [dataclasses.asdict(event) for event in events],
    }
    path.write_text(json.dumps(data))
    verdict.dump = path


# Fixtures


def seed_logs(prefix: str) -> tuple[list[str], list[Record]]:
    """Create the logs every worker starts from, recorded like workers' writes."""
    from django_eventlog.models import Log

    ids, records = [], []
    for i in range(SEEDED_LOGS):
        event = Opened(owner=f"seed-{i}")
        key = f"{prefix}seed-{i}" if i % 2 else None
        t0 = time.monotonic()
        state = Log.objects.create_log(event, kind=KIND, idempotency_key=key)
        ids.append(str(state.log_id))
        records.append(
            {
                "id": f"seed.{i}",
                "op": "create",
                "kind": "seed",
                "log": str(state.log_id),
                "index": 0,
                "event": _event_json(event),
                "key": key,
                "t0": t0,
                "t1": time.monotonic(),
                "outcome": "ok",
                "result": {"log": str(state.log_id), "next": 1},
            }
        )
    return ids, records


@pytest.fixture
def point_cache_at(settings: Any) -> Callable[[str], None]:
    """Make the parent read cached reductions from the workers' Redis."""

    def point(url: str) -> None:
        settings.CACHES = {**settings.CACHES, "eventlog": redis_cache(url)}
        settings.EVENTLOG_CACHE_ALIAS = "eventlog"

    return point


def fault_seconds() -> float:
    """Load of a run with faults: enough to see the fault and the recovery."""
    return max(load_seconds(), 5.0)


def torture_run(
    tmp_path: Path,
    redis_url: str,
    seconds: float,
    during: Callable[[float], None] | None = None,
    settings: dict[str, Any] | None = None,
) -> tuple[Verdict, list[dict[str, Any]], float, int]:
    seed = run_seed()
    seeded, seed_records = seed_logs(f"t{seed}-")
    configs = worker_configs(
        count=worker_count(),
        env=django_env(connection.settings_dict, redis_url),
        seconds=seconds,
        seed=seed,
        directory=tmp_path,
        seeded=seeded,
        weights=TORTURE_WEIGHTS,
        key_share=0.5,
        settings=settings,
    )
    results = run_workers(configs, during)
    records = seed_records + [rec for result in results for rec in result["records"]]
    logs, events = stored_by_orm()
    verdict = check_run(records, logs, events, db_errors=False)
    dump_failure(verdict, records, logs, events)
    return verdict, results, seconds, seed


def test_torture_run(
    tmp_path: Path,
    redis_url: str,
    point_cache_at: Callable[[str], None],
    capsys: pytest.CaptureFixture[str],
) -> None:
    point_cache_at(redis_url)
    verdict, results, seconds, seed = torture_run(tmp_path, redis_url, load_seconds())
    entries, reduced = check_cache(verdict)
    from django.core.cache import caches

    from django_eventlog.caching import cache_key

    caches["eventlog"].delete_many(
        [cache_key(Ledger, uuid.UUID(log_id)) for log_id in verdict.prefixes]
    )
    report(
        capsys,
        "torture run: worker processes on one PostgreSQL database and Redis",
        [
            *figure_lines(verdict, results, seconds, seed),
            f"cached reductions      {entries} in Redis at the end, each equal to a "
            f"cold fold; {reduced} logs reduced warm and cold, equal",
            *violation_lines(verdict),
        ],
    )
    assert verdict.violations == []
    assert verdict.counts["operations"] > 0


def test_redis_stopped_and_restarted_mid_run(
    tmp_path: Path,
    point_cache_at: Callable[[str], None],
    capsys: pytest.CaptureFixture[str],
) -> None:
    server = RedisServer(port=free_port())
    try:
        server.start()
    except RuntimeError as e:
        pytest.fail(str(e))
    point_cache_at(server.url)
    outage: dict[str, float] = {}

    def stop_and_restart(started: float) -> None:
        time.sleep(fault_seconds() * 0.35)
        outage["down"] = time.monotonic() - started
        server.stop()
        time.sleep(REDIS_DOWN_SECONDS)
        server.start()
        outage["up"] = time.monotonic() - started
        time.sleep(1.0)  # at least this much load after the restart

    try:
        # With the default cool-off (30 s) a worker rightly skips a cache
        # that failed again and again for longer than this run lasts after
        # the restart; a short one lets the run see caching come back.
        verdict, results, seconds, seed = torture_run(
            tmp_path,
            server.url,
            fault_seconds(),
            during=stop_and_restart,
            settings={"EVENTLOG_CACHE_BREAKER_COOLOFF": 0.3},
        )
        entries, reduced = check_cache(verdict)
    finally:
        server.stop()
    cache_errors = sum(result["cache"]["errors"] for result in results)
    cache_writes = sum(result["cache"]["writes"] for result in results)
    report(
        capsys,
        "faults: Redis stopped and restarted during a torture run",
        [
            *figure_lines(verdict, results, seconds, seed),
            f"Redis (port {server.port}) stopped at {outage['down']:.1f} s, "
            f"started again at {outage['up']:.1f} s (empty: no persistence)",
            f"checked                no operation raised a cache error "
            f"({verdict.counts['unexpected']} unexpected outcomes); "
            f"{cache_errors} cache errors were counted and logged instead",
            f"cached reductions      {entries} in Redis after the restart, each equal "
            f"to a cold fold; {reduced} logs reduced warm and cold, equal",
            *violation_lines(verdict),
        ],
    )
    assert verdict.violations == []
    assert cache_errors > 0, "no worker noticed the outage"
    assert cache_writes > 0
    assert entries > 0, "nothing was cached after Redis came back"


# pg_terminate_backend in the middle of a write


def conninfo(settings_dict: dict[str, Any]) -> dict[str, Any]:
    return {
        "host": settings_dict["HOST"] or "127.0.0.1",
        "port": int(settings_dict["PORT"] or 5432),
        "user": settings_dict["USER"] or "postgres",
        "password": settings_dict["PASSWORD"] or None,
        "dbname": settings_dict["NAME"],
    }


def describe(outcome: object) -> str:
    if isinstance(outcome, IdempotentReplay):
        return f"IdempotentReplay naming {outcome.log_id}[{outcome.event_index}]"
    if isinstance(outcome, Exception):
        first = str(outcome).strip().splitlines()[0] if str(outcome) else ""
        return f"{type(outcome).__module__}.{type(outcome).__qualname__}: {first}"
    return repr(outcome)


@pytest.mark.parametrize(
    ("operation", "locked"),
    [("create_log", "log"), ("create_log", "event"), ("append", "event")],
)
def test_backend_terminated_in_the_middle_of_a_write(
    operation: str, locked: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from django_eventlog.models import Event, Log

    table = (Log if locked == "log" else Event)._meta.db_table
    key = f"terminated-{uuid.uuid4()}"
    log_id = uuid.uuid4()
    state: LogState | None = None
    if operation == "append":
        state = Log.objects.create_log(Opened(owner="victim"), kind=KIND)
        log_id = state.log_id
    event: DomainEvent = (
        Opened(owner="victim") if state is None else Deposited(amount=7)
    )

    def write() -> LogState:
        if state is None:
            assert isinstance(event, Opened)
            return Log.objects.create_log(
                event, kind=KIND, log_id=log_id, idempotency_key=key
            )
        assert isinstance(event, Deposited)
        return Log.objects.append(state, event, idempotency_key=key)

    labels = ["terminated", "again, as is", "after connection.close()", "again"]
    box: dict[str, Any] = {}
    ready = threading.Event()

    def victim() -> None:
        try:
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_backend_pid()")
                row = cursor.fetchone()
            box["pid"] = row[0] if row else None
            ready.set()
            outcomes: list[object] = []
            for label in labels:
                if label.startswith("after"):
                    connection.close()
                try:
                    outcomes.append(write())
                except Exception as e:
                    outcomes.append(e)
            box["outcomes"] = outcomes
        except BaseException as e:
            box["crash"] = e
            ready.set()
        finally:
            connection.close()

    params = conninfo(connection.settings_dict)
    thread = threading.Thread(target=victim)
    with (
        psycopg.connect(**params) as locker,
        psycopg.connect(**params, autocommit=True) as monitor,
    ):
        locker.execute(f'LOCK TABLE "{table}" IN ACCESS EXCLUSIVE MODE')
        thread.start()
        assert ready.wait(30), "the writer thread did not start"
        pid = box.get("pid")
        assert pid is not None, box
        deadline = time.monotonic() + 30
        while True:
            row = monitor.execute(
                "SELECT state, wait_event_type, query FROM pg_stat_activity "
                "WHERE pid = %s",
                [pid],
            ).fetchone()
            if row is not None and row[0] == "active" and row[1] == "Lock":
                break
            assert time.monotonic() < deadline, f"the write never waited: {row}"
            time.sleep(0.01)
        waiting_on = str(row[2]).split("(")[0].strip()
        monitor.execute("SELECT pg_terminate_backend(%s)", [pid])
        # Release the lock only once the backend is gone.
        while monitor.execute(
            "SELECT 1 FROM pg_stat_activity WHERE pid = %s", [pid]
        ).fetchone():
            assert time.monotonic() < deadline, "the backend outlived its termination"
            time.sleep(0.01)
        locker.rollback()
    thread.join(60)
    assert not thread.is_alive(), "the writer hung"
    assert "crash" not in box, box.get("crash")
    outcomes = box["outcomes"]

    first = outcomes[0]
    assert isinstance(first, (OperationalError, InterfaceError)), describe(first)
    orphans = list(Log.objects.exclude(events__index=0).values_list("id", flat=True))
    stored = list(
        Event.objects.filter(idempotency_key=key).values_list("log_id", "index")
    )
    successes = [i for i, o in enumerate(outcomes) if isinstance(o, LogState)]
    index = 0 if state is None else state.next_index
    report(
        capsys,
        f"faults: pg_terminate_backend during {operation} ({table} locked)",
        [
            f"the write waited on the lock in: {waiting_on} ...; its backend was "
            "terminated, then the lock released",
            *(
                f"{label:<26} -> {describe(o)}"
                for label, o in zip(labels, outcomes, strict=True)
            ),
            f"checked                logs without event 0: {len(orphans)}; events "
            f"with the key: {len(stored)} at {[(str(s[0]), s[1]) for s in stored]}",
        ],
    )
    assert orphans == []
    assert stored == [(log_id, index)]
    assert len(successes) == 1, [describe(o) for o in outcomes]
    # Before the success: only connection errors; after it: replays of it.
    for outcome in outcomes[1 : successes[0]]:
        assert isinstance(outcome, (OperationalError, InterfaceError)), describe(
            outcome
        )
    assert outcomes[successes[0]] == LogState(log_id, index + 1)
    for outcome in outcomes[successes[0] + 1 :]:
        assert isinstance(outcome, IdempotentReplay), describe(outcome)
        assert (outcome.log_id, outcome.event_index) == (log_id, index)
    # A write after the lost one, in autocommit, reuses the broken connection
    # unless the caller closes it; create_log's transaction closes it itself.
    if operation == "append":
        assert isinstance(outcomes[1], (OperationalError, InterfaceError))


# A PostgreSQL restart


@pytest.fixture
def private_postgres() -> Iterator[dict[str, str]]:
    """A throwaway cluster of scripts/postgres.sh with the schema migrated."""
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith("PG")
        and name not in {"EVENTLOG_PG_DIR", "EVENTLOG_PG_PORT"}
    }
    started = subprocess.run(
        ["bash", str(ROOT / "scripts" / "postgres.sh"), "start"],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    if started.returncode == 3:
        pytest.fail(
            "The PostgreSQL restart test needs PostgreSQL server binaries (initdb, "
            "pg_ctl) to run a cluster of its own, and none were found:\n"
            + started.stderr
        )
    if started.returncode != 0:
        pytest.fail(f"scripts/postgres.sh start failed:\n{started.stderr}")
    cluster: dict[str, str] = {}
    for line in started.stdout.splitlines():
        if line.startswith("export ") and "=" in line:
            name, _, value = line.removeprefix("export ").partition("=")
            cluster[name] = value
    try:
        migrate = subprocess.run(
            [sys.executable, "manage.py", "migrate", "django_eventlog", "-v", "0"],
            cwd=ROOT,
            env={**env, **cluster, "EVENTLOG_DB": "postgresql", "DJANGO_DEBUG": "0"},
            capture_output=True,
            text=True,
            timeout=180,
            check=False,
        )
        assert migrate.returncode == 0, migrate.stderr
        yield cluster
    finally:
        subprocess.run(
            [
                "bash",
                str(ROOT / "scripts" / "postgres.sh"),
                "stop",
                cluster["EVENTLOG_PG_DIR"],
            ],
            env=env,
            capture_output=True,
            timeout=120,
            check=False,
        )


def test_postgresql_restarted_mid_run(
    tmp_path: Path,
    private_postgres: dict[str, str],
    capsys: pytest.CaptureFixture[str],
) -> None:
    cluster = private_postgres
    seconds, seed = fault_seconds(), run_seed()
    settings_dict = {
        "HOST": cluster["PGHOST"],
        "PORT": cluster["PGPORT"],
        "USER": cluster["PGUSER"],
        "PASSWORD": "",
        "NAME": cluster["PGDATABASE"],
    }
    configs = worker_configs(
        count=min(4, worker_count()),
        env=django_env(settings_dict, None),
        seconds=seconds,
        seed=seed,
        directory=tmp_path,
        seeded=[],
        weights=RESTART_WEIGHTS,
        key_share=1.0,
        retry_db_errors=True,
    )
    restart: dict[str, Any] = {}

    def restart_postgres(started: float) -> None:
        time.sleep(seconds * 0.35)
        restart["begin"] = time.monotonic()
        done = subprocess.run(
            [
                "bash",
                str(ROOT / "scripts" / "postgres.sh"),
                "restart",
                cluster["EVENTLOG_PG_DIR"],
            ],
            env={**os.environ, "EVENTLOG_PG_DOWN_SECONDS": str(PG_DOWN_SECONDS)},
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        restart["end"] = time.monotonic()
        restart["started"] = started
        restart["returncode"] = done.returncode
        restart["stderr"] = done.stderr
        time.sleep(1.0)  # at least this much load after the restart

    results = run_workers(configs, restart_postgres)
    assert restart["returncode"] == 0, restart["stderr"]
    records = [rec for result in results for rec in result["records"]]
    logs, events = stored_by_psycopg(
        conninfo({**settings_dict, "PORT": int(cluster["PGPORT"])})
    )
    verdict = check_run(records, logs, events, db_errors=True)
    dump_failure(verdict, records, logs, events)

    errors = Counter(
        f"{rec['error']['type']}: {rec['error'].get('message', '')}"
        + (f" (from {rec['op']})" if rec["error"].get("unwrapped") else "")
        for rec in records
        if rec["outcome"] == "db_error"
    )
    retried_as_is = Counter(
        "ok" if rec["outcome"] != "db_error" else "failed again"
        for rec in records
        if "chain" in rec and not rec["closed_before"]
    )
    lost = [
        rec
        for rec in records
        if "chain" in rec and rec["outcome"] == "IdempotentReplay"
    ]
    recovered = []
    for result in results:
        after = [
            rec["t0"] - restart["end"]
            for rec in result["records"]
            if rec["outcome"] == "ok" and rec["t0"] > restart["end"]
        ]
        recovered.append(min(after) if after else None)
    chains = {rec["chain"] for rec in records if "chain" in rec}
    report(
        capsys,
        "faults: PostgreSQL restarted during a run (private cluster)",
        [
            *(
                line
                for i, line in enumerate(figure_lines(verdict, results, seconds, seed))
                if i in {1, 2, 3, 4, 5, 7, 9, 10, 11}
            ),
            f"restart                scripts/postgres.sh restart (fast shutdown, "
            f"{PG_DOWN_SECONDS:g} s down) from "
            f"{restart['begin'] - restart['started']:.1f} s "
            f"to {restart['end'] - restart['started']:.1f} s",
            f"operations that failed {len(chains)}, every one retried with the same "
            f"key until it resolved; {len(lost)} had committed "
            "(answered IdempotentReplay)",
            *(f"  {count:>4} x {message}" for message, count in errors.most_common(8)),
            f"unwrapped driver errors {verdict.counts['unwrapped driver errors']} "
            "(psycopg's own, not django.db's: reduce's server-side cursor CLOSE)",
            f"retry as is (no close) {dict(retried_as_is)}",
            "retry after close      connection.close_if_unusable_or_obsolete(), "
            "then the same call: reconnects",
            "recovered              first success per worker "
            + ", ".join("never" if r is None else f"{r:.2f} s" for r in recovered)
            + " after the restart",
            f"longest operation      {verdict.counts['longest operation ms']} ms "
            "(retries included)",
            *violation_lines(verdict),
        ],
    )
    assert verdict.violations == []
    assert all(r is not None for r in recovered), "a worker never recovered"
    assert {rec["worker"] for rec in results} == set(range(len(configs)))
    failed_workers = {
        rec["id"].split(".")[0] for rec in records if rec["outcome"] == "db_error"
    }
    assert len(failed_workers) == len(configs), "the restart missed some workers"
    # Only connection errors: django.db's (and, see above, the driver's).
    assert all(
        message.startswith(("django.db.utils.", "psycopg.")) for message in errors
    ), errors
