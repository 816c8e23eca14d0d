"""The documentation in docs/ names everything a project can configure or call."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import django_eventlog
from django_eventlog import checks
from django_eventlog.conf import DEFAULTS

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"


def page(name: str) -> str:
    return (DOCS / name).read_text()


def mentioned(name: str, text: str) -> bool:
    """``name`` appears as a whole word (not as part of a longer name)."""
    return re.search(rf"(?<![\w.]){re.escape(name)}(?!\w)", text) is not None


def check_ids() -> list[str]:
    source = Path(checks.__file__).read_text()
    return sorted(set(re.findall(r"django_eventlog\.[EW]\d{3}", source)))


def command_names() -> list[str]:
    folder = Path(django_eventlog.__file__).parent / "management" / "commands"
    return sorted(p.stem for p in folder.glob("*.py") if not p.stem.startswith("_"))


def test_what_is_checked_exists() -> None:
    # Guards against a test that passes because it looks at nothing.
    assert len(DEFAULTS) >= 9
    assert len(check_ids()) >= 13
    assert command_names() == ["eventlog_clear_cache", "eventlog_verify"]
    assert len(django_eventlog.__all__) >= 25


@pytest.mark.parametrize("setting", sorted(DEFAULTS))
def test_every_setting_is_documented_with_its_default(setting: str) -> None:
    text = page("settings.md")
    assert mentioned(setting, text), f"{setting} is missing from docs/settings.md"
    default = DEFAULTS[setting]
    shown = f'"{default}"' if isinstance(default, str) else repr(default)
    lines = [line for line in text.splitlines() if mentioned(setting, line)]
    assert any(shown in line for line in lines), (
        f"no line of docs/settings.md gives {setting} with its default {shown}"
    )


@pytest.mark.parametrize("check_id", check_ids())
def test_every_system_check_is_documented(check_id: str) -> None:
    assert mentioned(check_id, page("checks.md")), f"{check_id} is not in checks.md"


@pytest.mark.parametrize("command", command_names())
def test_every_management_command_is_documented(command: str) -> None:
    assert mentioned(command, page("commands.md")), f"{command} is not in commands.md"


@pytest.mark.parametrize("name", django_eventlog.__all__)
def test_every_public_name_is_in_the_api_reference(name: str) -> None:
    assert mentioned(name, page("api.md")), f"{name} is not in docs/api.md"


def test_every_page_is_in_the_table_of_contents() -> None:
    index = page("index.md")
    pages = sorted(p.stem for p in DOCS.glob("*.md") if p.stem != "index")
    missing = [p for p in pages if not re.search(rf"^{p}$", index, re.MULTILINE)]
    assert missing == []


# What the database guarantees: one text, every rule attacked by a test.


def guarantees(text: str) -> str:
    """The section "What the database guarantees" of a page, links made
    relative to docs/."""
    start = re.search(r"^#+ What the database guarantees\n", text, re.MULTILINE)
    assert start is not None
    end = re.search(
        r"^#+ |^`python manage.py eventlog_verify`", text[start.end() :], re.M
    )
    section = text[start.end() : start.end() + end.start() if end else None]
    return section.replace("](docs/", "](").strip()


def rules(section: str) -> list[str]:
    """The rules a section states: the bold start of each guarantee."""
    return [
        " ".join(rule.split())
        for rule in re.findall(r"^- \*\*(.+?)\*\*", section, re.M | re.S)
    ]


def test_the_readme_and_the_docs_state_the_same_guarantees() -> None:
    readme = guarantees((ROOT / "README.md").read_text())
    docs = guarantees(page("reliability.md"))
    assert readme == docs
    assert len(rules(docs)) >= 6


def test_every_guarantee_is_attacked_from_outside_the_library() -> None:
    from tests import test_database_guarantees as attacks

    stated = rules(guarantees(page("reliability.md")))
    attacked: dict[str, set[str]] = {}
    for name, test in vars(attacks).items():
        if name.startswith("test_") and callable(test):
            doc = " ".join((test.__doc__ or "").split())
            sentences = re.findall(r"\S.*?\.(?= |$)", doc)
            assert sentences, f"{name} names no rule"
            for sentence in sentences:
                assert sentence in stated, f"{name}: {sentence!r} is not a stated rule"
                attacked.setdefault(sentence, set()).add(name.rsplit("_", 1)[-1])
    # Each rule through the ORM and from a connection Django did not open.
    assert {
        rule: attacked.get(rule, set()) >= {"orm", "outside"} for rule in stated
    } == dict.fromkeys(stated, True)
