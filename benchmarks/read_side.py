"""The read side's speed: catching up a projection, and the lag of a running one.

* **Catch-up**: an atomic no-op projection (``catch_up()``) over 1,000,000
  events, against a raw psycopg scan of the same rows in feed order (the
  limit) and the ``eventsourcing`` library reading the same number of events
  from its notification log (the peer), in turns; then where ours spends its
  time (``_read_catchup.py``).
* **Lag**: 4 writer processes append at full speed for 30 s while
  ``manage.py eventlog_projections run`` runs one projection; from each
  append's commit to the commit of the batch that handled it; and the
  runner's statements per second when nothing is written (``_read_lag.py``).

Run ``make bench`` (it runs this after ``eventstores.py``), or with the
PostgreSQL server's variables set: ``python benchmarks/read_side.py
[--quick]``. See ``README.md`` here.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [p for p in (str(ROOT), str(ROOT / "benchmarks")) if p not in sys.path]

from _shared import table, throwaway_database  # noqa: E402
from eventstores import conninfo, describe, progress, server, setup_django  # noqa: E402

KINDS = ("ours", "raw", "peer")


@dataclass(frozen=True)
class Sizes:
    events: int  # catch-up
    write_seconds: float  # lag
    idle_seconds: float  # the idle runner's statements


FULL = Sizes(1_000_000, 30, 10)
QUICK = Sizes(20_000, 5, 2)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (CI)")
    parser.add_argument(
        "-r", "--repeats", type=int, default=3, help="catch-up repeats (at least 3)"
    )
    parser.add_argument(
        "--only",
        default="CL",
        help="C: catch-up, L: lag (default: both)",
    )
    args = parser.parse_args(argv)
    if args.repeats < 3:
        parser.error("--repeats must be at least 3")
    if not args.only or set(args.only) - set("CL"):
        parser.error("--only takes C and L")
    return args


def fmt(value: float) -> str:
    return f"{value:,.0f}" if value >= 100 else f"{value:.3g}"


class Report:
    def __init__(self) -> None:
        self.sections: list[str] = []
        self.targets: list[tuple[str, str, str]] = []

    def target(self, text: str, met: bool, figure: str) -> None:
        self.targets.append((text, "yes" if met else "NO", figure))

    def text(self) -> str:
        head = {
            **describe(),
            "timing": "catch-up: median of repeats, the readers taking turns, "
            "each repeat starting with another",
        }
        lines = [table([("run", "value"), *head.items()])]
        for section in self.sections:
            lines += ["", section]
        lines += ["", table([("target", "met", "figure"), *self.targets])]
        return "\n".join(lines)


def catch_up(sizes: Sizes, repeats: int, report: Report) -> None:
    import _read_catchup as c

    events, logs = sizes.events, c.logs_of(sizes.events)
    params = server()
    peer = c.Peer(params)
    try:
        progress(f"catch-up: loading {events:,} events into ours and the peer")
        loaded = c.load(events, logs), peer.load(events, logs)
        # As `eventlog_projections run` does at its start, for the three
        # readers alike: what lives now stays out of the full collections.
        gc.freeze()
        readers: dict[str, Callable[[], float]] = {
            "ours": lambda: c.ours(events),
            "raw": lambda: c.raw(conninfo(params), events),
            "peer": lambda: peer.read(events),
        }
        samples: dict[str, list[float]] = {kind: [] for kind in KINDS}
        for n in range(repeats):
            for kind in KINDS[n % 3 :] + KINDS[: n % 3]:
                samples[kind].append(readers[kind]())
            progress(f"  repeat {n + 1}/{repeats} done")
    finally:
        peer.close()
    rate = {kind: statistics.median(values) for kind, values in samples.items()}
    spread = {
        kind: (max(values) - min(values)) / 2 / rate[kind]
        for kind, values in samples.items()
    }
    progress("catch-up: where ours spends its time")
    spent = c.breakdown(events)
    big = c.bigger_batches(events, 5000)
    rows = [("reader", "events/s", "+-", "ours/it", "what it does")]
    what = {
        "ours": f"catch_up() of an atomic no-op projection, batches of {c.PAGE}",
        "raw": f"psycopg keyset pages of {c.PAGE} in feed order, json.loads",
        "peer": f"eventsourcing notification log, pages of {c.PAGE}, to_domain_event",
    }
    for kind in KINDS:
        rows.append(
            (
                kind,
                fmt(rate[kind]),
                f"{spread[kind]:.0%}",
                f"{rate['ours'] / rate[kind]:.2f}x",
                what[kind],
            )
        )
    parts = [
        ("feed page: query and fetch (feed_queries.page)", spent["page"]),
        ("kinds of the page's logs (log_kinds.kinds_of)", spent["kinds"]),
        ("payload -> Credited (msgspec)", spent["payload"]),
        ("rest of FeedRecord (UUID, recorded_at, position)", spent["record"]),
        ("rest: transactions, checkpoint, handler", spent["rest"]),
        ("total of this catch-up", spent["total"]),
        ("pass 2: the library's page query", spent["library page"]),
        ("pass 2: the same pages, a bare scan in text", spent["bare"]),
        ("catch-up with batch_size = 5000 (one run)", 1e6 / big),
    ]
    report.sections += [
        f"Catch-up of {events:,} events ({logs:,} logs; loaded in "
        f"{loaded[0]:.1f} s, peer {loaded[1]:.1f} s)",
        table(rows),
        "+-: half the range of the repeats over the median. ours/it: how many "
        "times faster ours is. The three read in this one process, after "
        "gc.freeze() (as eventlog_projections run does).",
        f"The peer reads at {rate['peer'] / rate['raw']:.2f}x the raw scan: 3x "
        f"the peer, {3 * rate['peer']:,.0f} events/s, would be "
        f"{3 * rate['peer'] / rate['raw']:.2f}x the raw scan.",
        "",
        "Where ours spends its time (one more catch-up, timed inside; us per event)",
        table([("part", "us/event"), *((p, f"{us:.2f}") for p, us in parts)]),
    ]
    report.target(
        "catch-up >= 100,000 events/s",
        rate["ours"] >= 100_000,
        f"{rate['ours']:,.0f}/s",
    )
    report.target(
        "catch-up >= 0.5x raw",
        rate["ours"] / rate["raw"] >= 0.5,
        f"{rate['ours'] / rate['raw']:.2f}x",
    )
    report.target(
        "catch-up >= 3x peer",
        rate["ours"] / rate["peer"] >= 3,
        f"{rate['ours'] / rate['peer']:.2f}x",
    )


def lag(sizes: Sizes, report: Report) -> None:
    import _read_lag

    seconds = sizes.write_seconds
    progress(f"lag: {_read_lag.WORKERS} writers for {seconds:g} s, one runner")
    with tempfile.TemporaryDirectory() as tmp:
        found = _read_lag.run(server(), seconds, sizes.idle_seconds, Path(tmp) / "lag")
    rows = [
        ("figure", "value"),
        ("events written (and handled)", f"{found['events']:,.0f}"),
        ("events/s written", fmt(found["events/s"])),
        ("lag p50, ms", f"{found['p50']:.1f}"),
        ("lag p99, ms", f"{found['p99']:.1f}"),
        ("lag max, ms", f"{found['max']:.1f}"),
        ("lag min, ms", f"{found['min']:.1f}"),
        (
            f"idle runner, statements/s (over {sizes.idle_seconds:g} s)",
            f"{found['idle']:.1f}",
        ),
        ("idle runner on an empty feed, statements/s", f"{found['idle_empty']:.1f}"),
    ]
    report.sections += [
        f"Lag: {_read_lag.WORKERS} writer processes for {seconds:g} s "
        "(logs of 10 events, one append per transaction), one runner",
        table(rows),
        "Lag: from time.time() after the append's commit (in the writer) to "
        "time.time() after the commit of the runner's batch that handled it. "
        "Statements: transactions of the database (pg_stat_database), "
        "the runner alone connected; each is counted when the backend "
        "reports, at most once a second.",
    ]
    report.target("lag p99 <= 250 ms", found["p99"] <= 250, f"{found['p99']:.0f} ms")


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    sizes = QUICK if args.quick else FULL
    setup_django()
    report = Report()
    if "L" in args.only:
        with throwaway_database():
            lag(sizes, report)
    if "C" in args.only:
        with throwaway_database():
            catch_up(sizes, args.repeats, report)
    print(report.text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
