"""The long-running suites: every test in this folder is marked ``reliability``.

Deselect them with ``-m "not reliability"`` (``make test-fast`` does); the
full suites (``make test``, CI) run them.
"""

from __future__ import annotations

from pathlib import Path

import pytest

HERE = Path(__file__).parent


# Before the mark plugin's own hook, which deselects by -m.
@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.path.is_relative_to(HERE):
            item.add_marker(pytest.mark.reliability)
