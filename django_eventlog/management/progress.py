"""A progress bar on stderr for the commands that run long: a bar on a
terminal, else a line every tenth of the way."""

from __future__ import annotations

from django.core.management.base import BaseCommand

__all__ = ["Progress", "plain"]

#: Without a terminal, a progress line every tenth of the way.
PROGRESS_LINES = 10
#: Width of the bar drawn on a terminal.
BAR_WIDTH = 30


class Progress:
    """``unit`` done out of ``total``, on stderr: a bar on a terminal, else
    lines ("<verb> 5/10 <unit> (50%)"). A ``total`` of 0 shows nothing.
    """

    def __init__(
        self,
        command: BaseCommand,
        total: int,
        *,
        unit: str = "logs",
        verb: str = "Checked",
    ) -> None:
        self.unit, self.verb = unit, verb
        self.out = command.stderr
        self.total = total
        self.tty = total > 0 and command.stderr.isatty()
        # A terminal bar is redrawn about 200 times, lines written 10 times.
        self.step = max(1, total // (200 if self.tty else PROGRESS_LINES))
        self.done = 0
        self.shown = False

    def update(self, done: int) -> None:
        self.done = done
        if self.total and done % self.step == 0 and done < self.total:
            self._show()

    def finish(self, done: int) -> None:
        self.done = done
        if self.total:
            self._show()
            if self.tty:
                self.out.write("", plain)
                self.shown = False

    def clear(self) -> None:
        if self.tty and self.shown:
            self.out.write("\r\x1b[K", plain, ending="")
            self.out.flush()

    def redraw(self) -> None:
        if self.tty and self.shown:
            self._show()

    def _show(self) -> None:
        done = min(self.done, self.total)
        filled = BAR_WIDTH * done // self.total
        percent = 100 * done // self.total
        text = (
            f"[{'#' * filled}{'.' * (BAR_WIDTH - filled)}] "
            f"{done}/{self.total} {self.unit} ({percent}%)"
        )
        if self.tty:
            self.out.write(f"\r{text}", plain, ending="")
            self.out.flush()
            self.shown = True
        else:
            self.out.write(
                f"{self.verb} {done}/{self.total} {self.unit} ({percent}%)", plain
            )


def plain(text: str) -> str:
    """No style: stderr is red on a terminal otherwise."""
    return text
