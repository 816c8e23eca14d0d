"""Benchmark typed JSON decoding and encoding of event-shaped data.

django-eventlog stores events as JSON and turns them back into typed, frozen
dataclasses when a log is read. Reading is far more frequent than writing, so
the codec library was chosen by *decode* speed. This script measures, in one
run and on the same bytes:

* ``msgspec``: ``msgspec.json.Decoder(type=Event).decode(data)`` and
  ``msgspec.json.encode(event)``;
* ``pydantic`` v2: ``TypeAdapter(Event).validate_json(data)`` and
  ``TypeAdapter(Event).dump_json(event)``;
* ``json`` (baseline): stdlib ``json.loads(data)`` into a plain dict and
  ``json.dumps(dict)``. This is untyped: the floor of doing nothing typed.

Before timing, every candidate is checked to produce an equal result (decoded
objects equal the original event; encoded bytes decode back to it), so the
libraries are compared on the same work.

Run from the repository root::

    python benchmarks/event_codec.py            # N=50_000 calls per timing
    python benchmarks/event_codec.py --quick    # N=2_000, for CI
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import decimal
import enum
import gc
import json
import platform
import statistics
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from typing import TypeVar

import msgspec
import pydantic

T = TypeVar("T")

DEFAULT_NUMBER = 50_000
QUICK_NUMBER = 2_000
DEFAULT_REPEATS = 5

BASELINE = "json"
TYPED_LIBRARIES = ("msgspec", "pydantic")


# ---------------------------------------------------------------------------
# Event shapes
# ---------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Captured:
    """Small event: two scalar fields."""

    amount: int
    statement_descriptor: str


class Currency(enum.Enum):
    EUR = "EUR"
    USD = "USD"
    GBP = "GBP"


@dataclasses.dataclass(frozen=True)
class Party:
    name: str
    country: str
    vat_registered: bool


@dataclasses.dataclass(frozen=True)
class LineItem:
    sku: str
    quantity: int
    unit_price: decimal.Decimal


@dataclasses.dataclass(frozen=True)
class InvoiceIssued:
    """Rich event: one field of every type an event is expected to use."""

    sequence: int
    reference: str
    is_test: bool
    exchange_rate: float
    total: decimal.Decimal
    issued_at: datetime.datetime
    due_on: datetime.date
    invoice_id: uuid.UUID
    currency: Currency
    customer: Party
    lines: list[LineItem]
    counters: dict[str, int]
    discount_percent: int | None


def make_small() -> Captured:
    return Captured(amount=12_345, statement_descriptor="ACME*ORDER 8812")


def make_rich() -> InvoiceIssued:
    lines = [
        LineItem(
            sku=f"SKU-{i:04d}", quantity=i + 1, unit_price=decimal.Decimal("19.99")
        )
        for i in range(5)
    ]
    return InvoiceIssued(
        sequence=42,
        reference="INV-2024-000042",
        is_test=False,
        exchange_rate=1.0873,
        total=decimal.Decimal("299.85"),
        issued_at=datetime.datetime(
            2024, 5, 17, 9, 30, 15, 123456, tzinfo=datetime.timezone.utc
        ),
        due_on=datetime.date(2024, 6, 16),
        invoice_id=uuid.UUID("6f1c2a9e-3b7d-4c1e-9a51-2d8f0e4b7c63"),
        currency=Currency.EUR,
        customer=Party(name="Example GmbH", country="DE", vat_registered=True),
        lines=lines,
        counters={"reminders_sent": 0, "views": 3, "downloads": 1},
        discount_percent=None,
    )


# ---------------------------------------------------------------------------
# Candidates
# ---------------------------------------------------------------------------


def timed_loop(fn: Callable[[T], object], arg: T) -> Callable[[int], float]:
    """Return a function that calls ``fn(arg)`` ``number`` times.

    The returned function reports the total seconds taken. The loop is the
    same for every candidate, so its small per-call overhead is shared alike.
    """

    def run(number: int) -> float:
        iterations = range(number)
        start = time.perf_counter()
        for _ in iterations:
            fn(arg)
        return time.perf_counter() - start

    return run


@dataclasses.dataclass(frozen=True)
class Case:
    """One timed operation of one library on one event shape."""

    shape: str
    operation: str
    library: str
    run: Callable[[int], float]


def _json_dumps_bytes(obj: object) -> bytes:
    # Compact separators, as msgspec and pydantic emit; bytes, as they return.
    return json.dumps(obj, separators=(",", ":")).encode()


def check(actual: object, expected: object, what: str) -> None:
    """Fail unless ``actual`` equals ``expected`` and has the same type.

    A plain ``assert`` would be skipped under ``python -O``; this is not.
    """
    if type(actual) is not type(expected) or actual != expected:
        raise AssertionError(f"{what}: got {actual!r}, expected {expected!r}")


def build_cases(
    shape: str, event: T, event_type: type[T]
) -> tuple[list[Case], list[Case]]:
    """Build and verify the decode and encode cases for one event shape."""
    data = msgspec.json.encode(event)
    as_dict = msgspec.to_builtins(event)

    msgspec_decoder = msgspec.json.Decoder(type=event_type)
    adapter = pydantic.TypeAdapter(event_type)

    # Decoders must all read the same bytes into a value equal to the original.
    check(msgspec_decoder.decode(data), event, "msgspec decode")
    check(adapter.validate_json(data), event, "pydantic decode")
    check(json.loads(data), as_dict, "json decode")

    # Encoders must all produce JSON that decodes back to the original event.
    check(msgspec_decoder.decode(msgspec.json.encode(event)), event, "msgspec encode")
    check(msgspec_decoder.decode(adapter.dump_json(event)), event, "pydantic encode")
    check(msgspec_decoder.decode(_json_dumps_bytes(as_dict)), event, "json encode")

    decode: list[Case] = [
        Case(shape, "decode", BASELINE, timed_loop(json.loads, data)),
        Case(shape, "decode", "msgspec", timed_loop(msgspec_decoder.decode, data)),
        Case(shape, "decode", "pydantic", timed_loop(adapter.validate_json, data)),
    ]
    encode: list[Case] = [
        Case(shape, "encode", BASELINE, timed_loop(_json_dumps_bytes, as_dict)),
        Case(shape, "encode", "msgspec", timed_loop(msgspec.json.encode, event)),
        Case(shape, "encode", "pydantic", timed_loop(adapter.dump_json, event)),
    ]
    return decode, encode


# ---------------------------------------------------------------------------
# Timing and report
# ---------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Result:
    shape: str
    operation: str
    library: str
    median_us: float
    ratio: float


def median_seconds(cases: Sequence[Case], number: int, repeats: int) -> list[float]:
    """Median seconds per call of each case.

    Repeats are interleaved (case A, B, C, A, B, C, ...) so that drift in
    machine load affects all candidates alike. As in ``timeit``, the garbage
    collector is disabled while timing.
    """
    samples: list[list[float]] = [[] for _ in cases]
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        for _ in range(repeats):
            for case, case_samples in zip(cases, samples, strict=True):
                case_samples.append(case.run(number) / number)
    finally:
        if gc_was_enabled:
            gc.enable()
    return [statistics.median(s) for s in samples]


def measure(cases: Sequence[Case], number: int, repeats: int) -> list[Result]:
    for case in cases:  # warm-up: caches, lazy imports, branch predictors
        case.run(max(1, number // 10))
    medians = median_seconds(cases, number, repeats)
    baseline = {
        (c.shape, c.operation): m
        for c, m in zip(cases, medians, strict=True)
        if c.library == BASELINE
    }
    return [
        Result(
            shape=c.shape,
            operation=c.operation,
            library=c.library,
            median_us=m * 1e6,
            ratio=m / baseline[(c.shape, c.operation)],
        )
        for c, m in zip(cases, medians, strict=True)
    ]


def format_table(results: Sequence[Result]) -> str:
    header = ("shape", "operation", "library", "median µs/op", "vs json")
    rows = [
        (r.shape, r.operation, r.library, f"{r.median_us:.3f}", f"{r.ratio:.2f}x")
        for r in results
    ]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    numeric = {3, 4}

    def line(cells: Sequence[str]) -> str:
        return "  ".join(
            cell.rjust(w) if i in numeric else cell.ljust(w)
            for i, (cell, w) in enumerate(zip(cells, widths, strict=True))
        ).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(header), rule, *(line(row) for row in rows)])


def fastest_typed_decoder(results: Sequence[Result]) -> str:
    """One line naming the fastest typed decoder and its speed-up per shape."""
    per_shape: dict[str, dict[str, float]] = {}
    for r in results:
        if r.operation == "decode" and r.library in TYPED_LIBRARIES:
            per_shape.setdefault(r.shape, {})[r.library] = r.median_us

    winners = {
        shape: min(times, key=times.__getitem__) for shape, times in per_shape.items()
    }
    parts = []
    for shape, times in per_shape.items():
        winner = winners[shape]
        (other,) = (lib for lib in TYPED_LIBRARIES if lib != winner)
        parts.append(
            f"{times[other] / times[winner]:.2f}x faster than {other} on {shape}"
        )

    if len(set(winners.values())) == 1:
        (winner,) = set(winners.values())
        return f"Fastest typed decoder: {winner} ({', '.join(parts)})"
    split = ", ".join(f"{w} on {s}" for s, w in winners.items())
    return f"Fastest typed decoder differs by shape: {split} ({', '.join(parts)})"


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=(
            "Compare typed JSON decode/encode speed of msgspec and pydantic on "
            "event-shaped dataclasses, against stdlib json into a dict."
        )
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"N={QUICK_NUMBER} calls per timing instead of {DEFAULT_NUMBER} (for CI)",
    )
    parser.add_argument(
        "-n",
        "--number",
        type=int,
        default=None,
        help="calls per timing (overrides --quick)",
    )
    parser.add_argument(
        "-r",
        "--repeats",
        type=int,
        default=DEFAULT_REPEATS,
        help=f"timings per case; the median is reported (default {DEFAULT_REPEATS})",
    )
    args = parser.parse_args(argv)
    if args.number is None:
        args.number = QUICK_NUMBER if args.quick else DEFAULT_NUMBER
    if args.number < 1 or args.repeats < 1:
        parser.error("--number and --repeats must be positive")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    number: int = args.number
    repeats: int = args.repeats

    small_decode, small_encode = build_cases("small", make_small(), Captured)
    rich_decode, rich_encode = build_cases("rich", make_rich(), InvoiceIssued)
    cases: list[Case] = [
        *small_decode,
        *small_encode,
        *rich_decode,
        *rich_encode,
    ]

    print(
        f"python {platform.python_version()} ({platform.python_implementation()}), "
        f"msgspec {msgspec.__version__}, pydantic {pydantic.VERSION}"
    )
    print(
        f"date {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M UTC}, "
        f"machine {platform.machine()}, N={number}, median of {repeats} repeats"
    )
    print()
    results = measure(cases, number, repeats)
    print(format_table(results))
    print(
        "vs json = median time / json median time for the same shape and "
        "operation (below 1.00x: faster than the untyped baseline)"
    )
    print()
    print(fastest_typed_decoder(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
