"""The test suite's settings: the demo project's, plus the read models the
projection tests keep (``tests.readmodels``)."""

from testproject.settings import *  # noqa: F403
from testproject.settings import INSTALLED_APPS

INSTALLED_APPS = [*INSTALLED_APPS, "tests.readmodels"]
