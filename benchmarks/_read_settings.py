"""Settings of the projection runner that ``read_side.py`` starts: the demo
project's, running ``_read_projections.LagProjection``."""

from testproject.settings import *  # noqa: F403

EVENTLOG_PROJECTIONS = ["_read_projections.LagProjection"]
