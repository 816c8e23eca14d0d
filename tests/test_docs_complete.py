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


README = (ROOT / "README.md").read_text()


def project_urls() -> dict[str, str]:
    """``[project.urls]`` of pyproject.toml (no tomllib on Python 3.10)."""
    pyproject = (ROOT / "pyproject.toml").read_text()
    table = re.search(r"^\[project\.urls\]\n(.*?)(?:^\[|\Z)", pyproject, re.M | re.S)
    assert table is not None
    return dict(re.findall(r'^(\w+) = "([^"]+)"$', table.group(1), re.M))


def docs_site() -> str:
    """Where the documentation's pages are published: ``<site>page.html``."""
    return project_urls()["Documentation"] + "en/latest/"


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
    assert command_names() == [
        "eventlog_clear_cache",
        "eventlog_projections",
        "eventlog_schemas",
        "eventlog_verify",
    ]
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
    """The section "What the database guarantees" of a page, links to the
    documentation site made relative to docs/ as its pages write them."""
    start = re.search(r"^#+ What the database guarantees\n", text, re.MULTILINE)
    assert start is not None
    end = re.search(
        r"^#+ |^`python manage.py eventlog_verify`", text[start.end() :], re.M
    )
    section = text[start.end() : start.end() + end.start() if end else None]
    site = re.escape(docs_site())
    return re.sub(rf"\]\({site}([\w/-]+)\.html", r"](\1.md", section).strip()


def rules(section: str) -> list[str]:
    """The rules a section states: the bold start of each guarantee."""
    return [
        " ".join(rule.split())
        for rule in re.findall(r"^- \*\*(.+?)\*\*", section, re.M | re.S)
    ]


def test_the_readme_and_the_docs_state_the_same_guarantees() -> None:
    readme = guarantees(README)
    docs = guarantees(page("reliability.md"))
    assert readme == docs
    assert len(rules(docs)) >= 6
    # The README's copy links to the documentation site, not to docs/.
    assert docs_site() in README.split("## What the database guarantees")[1]


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


# The README is also the package's page on the package index.


def test_the_project_urls_are_stated_once_and_the_readme_uses_them() -> None:
    urls = project_urls()
    source = "https://github.com/django-eventlogs/django-eventlogs"
    assert urls == {
        "Documentation": "https://django-eventlogs.readthedocs.io/",
        "Source": source,
        "Changelog": f"{source}/blob/main/CHANGELOG.md",
        "Issues": f"{source}/issues",
    }
    links = re.findall(r"\]\(([^)\s]+)\)", README)
    assert set(urls.values()) <= set(links)


def test_every_readme_link_is_absolute_and_leads_somewhere() -> None:
    # A relative link breaks on the package index's page.
    urls = project_urls()
    links = re.findall(r"\]\(([^)\s]+)\)|<([a-z]+:[^>\s]+)>", README)
    targets = [markdown or auto for markdown, auto in links]
    assert len(targets) >= 10
    assert [t for t in targets if not t.startswith("https://")] == []
    for target in targets:
        url, _, anchor = target.partition("#")
        if url.startswith(docs_site()):
            name = url.removeprefix(docs_site())
            assert name.endswith(".html"), target
            docs_page = DOCS / (name.removesuffix(".html") + ".md")
            assert docs_page.is_file(), target
            if anchor:
                headings = re.findall(r"^#+ (.+)$", docs_page.read_text(), re.M)
                slugs = {re.sub(r"[^\w]+", "-", h.lower()).strip("-") for h in headings}
                assert anchor in slugs, target
        elif url.startswith(urls["Source"] + "/blob/main/"):
            path = url.removeprefix(urls["Source"] + "/blob/main/")
            assert (ROOT / path).is_file(), target
        else:
            assert url in urls.values(), target


def test_the_readme_names_the_package_and_its_import_name() -> None:
    assert "\npip install django-eventlogs\n" in README
    assert "The import name is `django_eventlog`." in " ".join(README.split())
    assert "django-eventlog[" not in README


def test_the_contributor_set_up_is_one_click_from_the_readme() -> None:
    contributing = (ROOT / "CONTRIBUTING.md").read_text()
    link = project_urls()["Source"] + "/blob/main/CONTRIBUTING.md"
    assert f"]({link})" in README
    set_up = contributing.split("## Set-up\n", 1)[1].split("\n## ", 1)[0]
    commands = re.findall(r"^make \w+", set_up, re.M)
    assert commands == ["make demo", "make test"]
