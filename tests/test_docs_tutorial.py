"""The tutorial's code runs and its asserts hold, so docs/tutorial.md cannot drift.

Convention: every block fenced ```python in docs/tutorial.md is executed, in
order, in one namespace: a fresh module named ``docs_tutorial``, registered in
``sys.modules`` while the blocks run so that dataclasses and msgspec can
resolve the classes the blocks define. Settings and shell snippets are fenced
```py, ```console or ```text and are not executed. The blocks hold ``assert``
statements with the values the library must give. They run in the test
database with ``transaction=True``, so that cached reductions are written on
commit as in a real request.
"""

from __future__ import annotations

import dataclasses
import re
import sys
import traceback
import types
from pathlib import Path
from typing import Any

import pytest

TUTORIAL = Path(__file__).resolve().parent.parent / "docs" / "tutorial.md"
DISPLAY_NAME = "docs/tutorial.md"
MODULE_NAME = "docs_tutorial"

# A fence opens with 3+ backticks or tildes, indented by at most 3 spaces
# (CommonMark); the first word after it is the language.
_FENCE = re.compile(r"^ {0,3}(?P<fence>`{3,}|~{3,})\s*(?P<info>[^`]*)$")


@dataclasses.dataclass(frozen=True)
class Block:
    """One ```python block: its source and the line of its opening fence."""

    line: int
    source: str

    def code(self) -> types.CodeType:
        """Compile with line numbers that are the tutorial's own."""
        padded = "\n" * self.line + self.source
        return compile(padded, DISPLAY_NAME, "exec")


def python_blocks(text: str) -> list[Block]:
    """Return the ```python blocks of a Markdown text, in order."""
    blocks: list[Block] = []
    lines = text.splitlines()
    number = 0
    while number < len(lines):
        match = _FENCE.match(lines[number])
        number += 1
        if match is None:
            continue
        fence, opened_at = match["fence"], number
        words = match["info"].split()
        closing = re.compile(rf" {{0,3}}{re.escape(fence[0])}{{{len(fence)},}}\s*")
        body: list[str] = []
        while number < len(lines):
            line = lines[number]
            number += 1
            if closing.fullmatch(line):
                break
            body.append(line)
        else:
            raise ValueError(
                f"{DISPLAY_NAME}:{opened_at}: the fence opened here is never closed."
            )
        if words and words[0] == "python":
            blocks.append(Block(opened_at, "\n".join(body) + "\n"))
    return blocks


def _where(error: BaseException) -> str:
    """The tutorial lines in the error's traceback, innermost first."""
    frames = traceback.extract_tb(error.__traceback__)
    lines = [f"{DISPLAY_NAME}:{f.lineno}" for f in frames if f.filename == DISPLAY_NAME]
    if isinstance(error, SyntaxError) and error.filename == DISPLAY_NAME:
        lines.append(f"{DISPLAY_NAME}:{error.lineno}")
    return ", called from ".join(reversed(lines)) or "?"


def run_tutorial() -> int:
    """Execute the tutorial's ```python blocks in order; return how many ran."""
    blocks = python_blocks(TUTORIAL.read_text(encoding="utf-8"))
    module = types.ModuleType(MODULE_NAME)
    sys.modules[MODULE_NAME] = module
    failure = None
    try:
        for block in blocks:
            try:
                exec(block.code(), module.__dict__)
            except Exception as e:
                failure = (
                    f"{DISPLAY_NAME}: the python block at line {block.line} failed "
                    f"at {_where(e)}: "
                    f"{''.join(traceback.format_exception_only(e)).strip()}\n\n"
                    f"{''.join(traceback.format_exception(e)).rstrip()}"
                )
                break
    finally:
        del sys.modules[MODULE_NAME]
    if failure is not None:
        pytest.fail(failure, pytrace=False)
    return len(blocks)


@pytest.mark.django_db(transaction=True)
def test_tutorial_runs(settings: Any) -> None:
    # The projection the tutorial defines, as its settings block lists it
    # (under the module name its blocks run in).
    text = TUTORIAL.read_text(encoding="utf-8")
    assert 'EVENTLOG_PROJECTIONS = ["payments.projections.CapturedTotals"]' in text
    settings.EVENTLOG_PROJECTIONS = [f"{MODULE_NAME}.CapturedTotals"]
    assert run_tutorial() > 0


def test_tutorial_has_python_blocks_that_parse() -> None:
    blocks = python_blocks(TUTORIAL.read_text(encoding="utf-8"))
    assert blocks, f"{DISPLAY_NAME} has no ```python block: nothing is tested."
    for block in blocks:
        try:
            block.code()
        except SyntaxError as e:
            pytest.fail(
                f"{DISPLAY_NAME}: the python block at line {block.line} does not "
                f"parse: line {e.lineno}: {e.msg}",
                pytrace=False,
            )
