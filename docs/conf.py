"""Sphinx configuration of the django-eventlogs documentation.

Build with ``make docs`` (warnings are errors). What the build needs is the
package and ``requirements/docs.txt`` (``pip install . -r requirements/docs.txt``;
Read the Docs installs the same, see ``.readthedocs.yaml``). The API reference
is generated from docstrings, so Django is set up with the demo project's
settings first.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "testproject.settings")
os.environ.setdefault("EVENTLOG_DB", "sqlite")

import django  # noqa: E402

django.setup()

project = "django-eventlogs"
author = "django-eventlogs developers"
copyright = "2026, django-eventlogs developers"

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.intersphinx",
    "sphinx.ext.viewcode",
]
source_suffix = {".md": "markdown", ".rst": "restructuredtext"}
exclude_patterns = ["_build"]
myst_enable_extensions = ["colon_fence", "deflist"]
myst_heading_anchors = 3

html_theme = "furo"
html_title = "django-eventlogs"

autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_default_options = {"members": True, "show-inheritance": True}
# Django's own docstrings (Model.save, ...) are not this library's API.
autodoc_inherit_docstrings = False
# Docs are built offline: no intersphinx inventories are fetched.
intersphinx_mapping: dict[str, tuple[str, str | None]] = {}
