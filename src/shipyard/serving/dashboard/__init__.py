"""The web dashboard the server serves at ``/dashboard``: its packaged static files
(:mod:`.assets`) and the JSON its page reads (:mod:`.figures`). Protocol-free: the REST
frontend answers the routes."""

from shipyard.serving.dashboard.assets import ASSET_TYPES, Asset, AssetNotFound, DashboardAssets
from shipyard.serving.dashboard.figures import (
    dashboard_forms,
    dashboard_stats,
    histogram_quantile,
    try_it_form,
)

__all__ = [
    "ASSET_TYPES", "Asset", "AssetNotFound", "DashboardAssets", "dashboard_forms",
    "dashboard_stats", "histogram_quantile", "try_it_form",
]
