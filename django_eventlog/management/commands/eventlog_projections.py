"""Run projections and subscribers, and look after them.

``run`` runs them until SIGTERM or SIGINT (``--once``: until caught up);
``status`` shows each one's position, lag, state and last error; ``rebuild``
replays one from the start; ``retry`` resumes a failed one; ``skip`` moves a
failed one past the single event it failed on, on record. See
``docs/read-side.md``.
"""

from __future__ import annotations

import gc
import getpass
import signal
import time
import uuid
from types import FrameType
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from django_eventlog import feed_queries, projection_control, projection_locks
from django_eventlog.event_context import event_context
from django_eventlog.exceptions import EventLogError
from django_eventlog.management.progress import Progress
from django_eventlog.positions import parse_position
from django_eventlog.projection_runs import ProjectionRun
from django_eventlog.projection_status import BEHIND_CAP, statuses
from django_eventlog.projections import (
    Projection,
    load_projections,
    projections_database,
)
from django_eventlog.runner import Runner

# Exit status of `status` when a projection is failed.
FAILED = 1


class Command(BaseCommand):
    help = (
        "Run the projections and subscribers of EVENTLOG_PROJECTIONS and look "
        "after them. 'run [NAME ...]' runs them (all by default) until SIGTERM or "
        "SIGINT, which finish the batch at hand, commit and exit 0; with --once, "
        "until each has handled what the feed delivers now. Any number of "
        "runners may run on PostgreSQL: each projection is run by one of them at "
        "a time, and another takes over within seconds when it dies. 'status' "
        "prints each projection's position, events and seconds behind, state, "
        "last error and, when the lag is held back by a long transaction, which "
        "one; exits 1 if one is failed. 'rebuild NAME' clears the read model "
        "(the projection's reset()) and replays every event. 'retry NAME' "
        "resumes a failed projection from the event it failed on. 'skip NAME "
        "--position P' moves a failed projection past that one event, recording "
        "who skipped it and why."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        commands = parser.add_subparsers(dest="action", required=True)
        run = commands.add_parser("run", help="run projections")
        run.add_argument("names", nargs="*", metavar="NAME")
        run.add_argument("--once", action="store_true", help="catch up, then exit")
        status = commands.add_parser("status", help="show each projection")
        status.add_argument("names", nargs="*", metavar="NAME")
        rebuild = commands.add_parser("rebuild", help="replay one from the start")
        rebuild.add_argument("name", metavar="NAME")
        retry = commands.add_parser("retry", help="resume a failed projection")
        retry.add_argument("name", metavar="NAME")
        skip = commands.add_parser("skip", help="skip the event a projection failed on")
        skip.add_argument("name", metavar="NAME")
        skip.add_argument(
            "--position", required=True, help="the failed event's position"
        )
        skip.add_argument("--reason", default="", help="why, for the record")
        skip.add_argument(
            "--by",
            default=None,
            help="who skips it, for the record (default: user:<login name>)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        # What the projections' handlers write says who: this command, in
        # this run (and which event caused it, and that event's correlation
        # where it has one: see event_context.Handling).
        with event_context(
            actor="system:eventlog_projections", correlation_id=uuid.uuid4().hex
        ):
            self._handle(options)

    def _handle(self, options: dict[str, Any]) -> None:
        action = options["action"]
        if action in ("run", "rebuild"):
            # A long run allocates records by the million: leave what lives
            # now (Django, the project's modules) out of the garbage
            # collector's full passes, which would walk it all again and
            # again (about a tenth of a catch-up's time).
            gc.freeze()
        try:
            if action == "run":
                self._run(options["names"] or None, once=options["once"])
            elif action == "status":
                self._status(options["names"] or None)
            elif action == "rebuild":
                self._rebuild(options["name"])
            elif action == "retry":
                self._retry(options["name"])
            else:
                self._skip(options)
        except EventLogError as e:
            raise CommandError(str(e)) from e

    def _run(self, names: list[str] | None, *, once: bool) -> None:
        runner = Runner(names)

        def stop(signum: int, frame: FrameType | None) -> None:
            runner.stop()

        previous = {
            sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT)
        }
        try:
            handled = runner.run(once=once)
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        for name, count in handled.items():
            self.stdout.write(f"{name}: {count} events handled")

    def _status(self, names: list[str] | None) -> None:
        found = statuses(projections_database(), names)
        if not found:
            self.stdout.write("No projections: EVENTLOG_PROJECTIONS is empty.")
            return
        failed = False
        for status in found:
            behind = (
                f"{status.behind}+"
                if status.behind >= BEHIND_CAP
                else str(status.behind)
            )
            lag = (
                ""
                if status.seconds_behind is None
                else f", {status.seconds_behind:.1f} s behind"
            )
            where = status.position or "the start"
            runner = (
                "" if status.runner_pid is None else f", run by pid {status.runner_pid}"
            )
            note = "" if status.configured else " (not in EVENTLOG_PROJECTIONS)"
            self.stdout.write(
                f"{status.name}: {status.state}{note}, at {where}, "
                f"{status.handled} handled, {behind} events behind{lag}{runner}"
            )
            if status.state == "failed":
                failed = True
                last = status.last_error.strip().splitlines()[-1:] or [""]
                self.stdout.write(
                    f"  failed on the event at {status.error_position} (log "
                    f"{status.error_log_id}, index {status.error_index}): {last[0]}"
                )
            if status.held_by is not None:
                holder = status.held_by
                self.stdout.write(
                    f"  held back by transaction of pid {holder.pid}, open "
                    f"{holder.seconds:.0f} s, {holder.state}: {holder.query!r}"
                )
        if failed:
            raise SystemExit(FAILED)

    def _rebuild(self, name: str) -> None:
        [projection] = load_projections([name])
        if type(projection).reset is Projection.reset:
            raise CommandError(
                f"{name} cannot be rebuilt: {type(projection).__qualname__} does "
                "not implement reset(), which clears its read model."
            )
        using = projections_database()
        projection_control.reset_for_rebuild(using, name, projection.reset)
        self.stdout.write(f"{name}: read model reset; replaying every event.")
        run = ProjectionRun(projection, using)
        total = _total(using, run)
        progress = Progress(self, total, unit="events", verb="Replayed")
        with projection_locks.locked(using, name) as mine:
            if mine:
                done = 0
                while True:
                    outcome = run.step()
                    done += outcome.handled
                    progress.update(done)
                    if outcome.failed:
                        raise CommandError(
                            f"{name} failed during the rebuild: see "
                            "`eventlog_projections status`."
                        )
                    if outcome.caught_up:
                        break
            else:
                # A runner has it: it replays; follow its checkpoint.
                self.stdout.write(f"{name} is run by another process; following it.")
                while (checkpoint := run.checkpoint()).state == "rebuilding":
                    progress.update(checkpoint.handled)
                    time.sleep(0.5)
                done = checkpoint.handled
        progress.finish(done)
        self.stdout.write(f"{name}: rebuilt, {done} events handled.")

    def _retry(self, name: str) -> None:
        load_projections([name])
        if projection_control.retry(projections_database(), name):
            self.stdout.write(f"{name}: resumed from the event it failed on.")
        else:
            raise CommandError(f"{name} is not failed: nothing to retry.")

    def _skip(self, options: dict[str, Any]) -> None:
        name = options["name"]
        load_projections([name])
        parse_position(options["position"], "--position")
        by = options["by"] or f"user:{getpass.getuser()}"
        skipped = projection_control.skip(
            projections_database(),
            name,
            options["position"],
            by=by,
            reason=options["reason"],
        )
        self.stdout.write(
            f"{name}: skipped the event at {skipped.position} (log {skipped.log_id}, "
            f"index {skipped.index}, {skipped.type}), recorded as skipped by {by}."
        )


def _total(using: str, run: ProjectionRun) -> int:
    """The events a rebuild will replay (what the feed holds now, up to the
    cap of ``status``)."""
    count, _ = feed_queries.behind(
        using, parse_position(None), run.kinds, run.types, BEHIND_CAP
    )
    return count
