"""The published package: what its wheel and sdist hold, and that the README's
quick start and the docs build work from them alone.

The sdist and the wheel are built as a release would build them
(``python -m build``: the sdist, then the wheel from the sdist), without build
isolation so that no build backend is fetched (requirements/dev.txt has
setuptools and build). The wheel is then installed in a fresh virtualenv,
with the docs' requirements and nothing else of this checkout.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import tarfile
from collections.abc import Mapping
from email.message import Message
from email.parser import Parser
from pathlib import Path
from zipfile import ZipFile

import pytest

pytestmark = pytest.mark.packaging

ROOT = Path(__file__).resolve().parent.parent
APP = ROOT / "django_eventlog"
NAME = "django-eventlogs"
README = (ROOT / "README.md").read_text()


def run(
    args: list[str | Path], *, cwd: Path = ROOT, env: Mapping[str, str] | None = None
) -> str:
    result = subprocess.run(
        [str(arg) for arg in args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )
    assert result.returncode == 0, f"{args}\n{result.stdout}\n{result.stderr}"
    return result.stdout


def clean_env() -> dict[str, str]:
    """This process's environment less what points at this checkout's set-up
    (settings, servers, virtualenv), as a user's machine would have it."""
    dropped = ("DJANGO_", "EVENTLOG_", "PG", "REDIS_", "PYTHON", "VIRTUAL_ENV")
    return {k: v for k, v in os.environ.items() if not k.startswith(dropped)}


def shipped_files() -> list[str]:
    """What the app must ship besides its modules: migrations, templates,
    py.typed (paths from the repository root)."""
    files = [
        *(APP / "migrations").glob("0*.py"),
        *(p for p in (APP / "templates").rglob("*") if p.is_file()),
        APP / "py.typed",
    ]
    return sorted(str(p.relative_to(ROOT)) for p in files)


def project_urls() -> list[str]:
    """``[project.urls]`` as Project-URL metadata lines."""
    pyproject = (ROOT / "pyproject.toml").read_text()
    table = re.search(r"^\[project\.urls\]\n(.*?)(?:^\[|\Z)", pyproject, re.M | re.S)
    assert table is not None
    urls = re.findall(r'^(\w+) = "([^"]+)"$', table.group(1), re.M)
    return [f"{label}, {url}" for label, url in urls]


def check_metadata(metadata: Message) -> None:
    assert metadata["Name"] == NAME
    assert metadata["License-Expression"] == "MIT"
    assert metadata.get_all("License-File") == ["LICENSE"]
    urls = metadata.get_all("Project-URL")
    assert urls == project_urls()
    assert len(urls) == 4
    assert metadata["Description-Content-Type"] == "text/markdown"
    description = metadata.get_payload()
    assert isinstance(description, str)
    assert description.strip() == README.strip()
    # Contributors' tools are not published as extras.
    assert metadata.get_all("Provides-Extra") == ["postgresql", "redis", "testing"]
    requirements = metadata.get_all("Requires-Dist") or []
    assert any(r.startswith("Django") for r in requirements), requirements
    assert not any(r.startswith("eventsourcing") for r in requirements)


@pytest.fixture(scope="module")
def dists(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The sdist and the wheel, built from a copy of the checkout (the build
    writes an egg-info folder into its source)."""
    tmp = tmp_path_factory.mktemp("dists")
    source = tmp / "source"
    ignored = shutil.ignore_patterns(
        ".git", ".venv*", "build", "dist", "*.egg-info", "__pycache__", ".*_cache",
        ".hypothesis", "_build", "artifacts", "*.sqlite3",
    )  # fmt: skip
    shutil.copytree(ROOT, source, ignore=ignored)
    out = tmp / "dist"
    run([sys.executable, "-m", "build", "--no-isolation", "--outdir", out, source])
    (sdist,) = out.glob("*.tar.gz")
    (wheel,) = out.glob("*.whl")
    return sdist, wheel


@pytest.fixture(scope="module")
def venv(dists: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh virtualenv with the wheel and requirements/docs.txt."""
    venv = tmp_path_factory.mktemp("venv") / "venv"
    run([sys.executable, "-m", "venv", venv])
    python = venv / "bin" / "python"
    _, wheel = dists
    docs = ROOT / "requirements" / "docs.txt"
    pip: list[str | Path] = [
        python,
        "-m",
        "pip",
        "install",
        "-q",
        "--disable-pip-version-check",
    ]
    run([*pip, wheel, "-r", docs], env=clean_env())
    return venv


def test_the_wheel_holds_the_app_its_data_and_license(dists: tuple[Path, Path]) -> None:
    _, wheel = dists
    assert wheel.name == "django_eventlogs-0.1.0.dev0-py3-none-any.whl"
    dist_info = "django_eventlogs-0.1.0.dev0.dist-info"
    with ZipFile(wheel) as archive:
        names = set(archive.namelist())
        metadata = Parser().parsestr(archive.read(f"{dist_info}/METADATA").decode())
        license_text = archive.read(f"{dist_info}/licenses/LICENSE").decode()
    assert {name.split("/")[0] for name in names} == {"django_eventlog", dist_info}
    shipped = shipped_files()
    assert len(shipped) >= 8
    assert set(shipped) <= names
    assert "django_eventlog/management/commands/eventlog_verify.py" in names
    assert license_text == (ROOT / "LICENSE").read_text()
    assert license_text.startswith("MIT License\n")
    check_metadata(metadata)


def test_the_sdist_holds_the_sources_readme_and_license(
    dists: tuple[Path, Path],
) -> None:
    sdist, _ = dists
    assert sdist.name == "django_eventlogs-0.1.0.dev0.tar.gz"
    top = "django_eventlogs-0.1.0.dev0"
    with tarfile.open(sdist) as archive:
        names = {name.removeprefix(f"{top}/") for name in archive.getnames()}
        pkg_info = archive.extractfile(f"{top}/PKG-INFO")
        assert pkg_info is not None
        metadata = Parser().parsestr(pkg_info.read().decode())
    assert {"LICENSE", "README.md", "pyproject.toml"} <= names
    assert set(shipped_files()) <= names
    check_metadata(metadata)


def quick_start() -> tuple[list[str], list[str], str]:
    """The README's quick start: the settings, the command, the code."""
    section = README.split("\n## Quick start\n", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"^```(\w+)\n(.*?)^```$", section, re.M | re.S)
    assert [language for language, _ in blocks] == ["python", "console", "python"]
    (_, settings), (_, command), (_, code) = blocks
    namespace: dict[str, list[object]] = {}
    exec(settings, namespace)
    apps = [app for app in namespace["INSTALLED_APPS"] if app is not ...]
    assert all(isinstance(app, str) for app in apps)
    words = shlex.split(command)
    assert words[:2] == ["python", "manage.py"], command
    return [str(app) for app in apps], words[2:], code


HARNESS = """\
import django
from django.conf import settings
import django_eventlog

print(django_eventlog.__file__)
settings.configure(
    INSTALLED_APPS={apps!r},
    DATABASES={{
        "default": {{"ENGINE": "django.db.backends.sqlite3", "NAME": "db.sqlite3"}}
    }},
    USE_TZ=True,
)
django.setup()
from django.core.management import call_command

call_command(*{command!r}, verbosity=0)
# The README's code:
"""


def test_the_readme_quick_start_runs_on_the_installed_wheel(
    venv: Path, tmp_path: Path
) -> None:
    assert "\npip install django-eventlogs\n" in README
    apps, command, code = quick_start()
    assert apps == ["django_eventlog"]
    assert command == ["migrate"]
    shown = re.findall(r"^\s*print\(.*\)  # (.+)$", code, re.M)
    assert shown == ["Payment(authorized=10000, captured=4000)", "True"]
    script = tmp_path / "quick_start.py"
    script.write_text(HARNESS.format(apps=apps, command=command) + code)
    output = run([venv / "bin" / "python", script], cwd=tmp_path, env=clean_env())
    imported_from, *printed = output.splitlines()
    # The installed wheel, not this checkout.
    assert Path(imported_from).is_relative_to(venv), imported_from
    assert printed == shown


def test_the_docs_build_with_the_package_and_requirements_docs_alone(
    venv: Path, tmp_path: Path
) -> None:
    html = tmp_path / "html"
    sphinx: list[str | Path] = [
        venv / "bin" / "sphinx-build",
        "-W",
        "--keep-going",
        "-q",
    ]
    run([*sphinx, "-b", "html", ROOT / "docs", html], env=clean_env())
    assert (html / "api.html").is_file()
    assert "LogFactory" in (html / "api.html").read_text()
    assert "eventlog_sync_cache_writes" in (html / "api.html").read_text()
