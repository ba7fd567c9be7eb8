"""The live plant dashboard (``millstream dashboard``): a page fed from Kafka by Server-Sent
Events, history through the query path, charts by the vendored uPlot."""

from millstream.dashboard.run import run_dashboard
from millstream.dashboard.server import DashboardError
from millstream.dashboard.service import Dashboard, DashboardConfig

__all__ = ["Dashboard", "DashboardConfig", "DashboardError", "run_dashboard"]
