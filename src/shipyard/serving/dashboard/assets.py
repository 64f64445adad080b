"""The dashboard's static files: a fixed table of packaged files, read once.

Only the names in :data:`ASSET_TYPES` are ever served: a request names a key of that table,
never a path, so no ``..`` or absolute name can reach another file. The page itself is
``index.html`` (``GET /dashboard``); the rest are ``GET /dashboard/<name>``. uPlot's files are
fetched at a pinned version by ``scripts/build_dashboard.sh`` and committed with its licence:
the server needs no network, and neither does the browser (the page's Content-Security-Policy
allows this server alone).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from importlib import resources

from shipyard.serving.errors import ErrorCode, ShipyardError

__all__ = ["ASSET_TYPES", "CSP", "Asset", "AssetNotFound", "DashboardAssets"]

#: every file the dashboard serves, and its Content-Type
ASSET_TYPES: dict[str, str] = {
    "index.html": "text/html; charset=utf-8",
    "dashboard.js": "text/javascript; charset=utf-8",
    "dashboard.css": "text/css; charset=utf-8",
    "uPlot.iife.min.js": "text/javascript; charset=utf-8",
    "uPlot.min.css": "text/css; charset=utf-8",
    "uPlot.LICENSE": "text/plain; charset=utf-8",
}

#: the page's Content-Security-Policy: scripts, styles and calls to this server only (no CDN
#: can creep in); images also from ``data:`` (the blank favicon) and ``blob:`` (the preview
#: of an image dropped on a try-it panel)
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
       "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")


class AssetNotFound(ShipyardError):
    """A dashboard file that is not in :data:`ASSET_TYPES`."""

    code = ErrorCode.NOT_FOUND


@dataclass(frozen=True)
class Asset:
    """One packaged file, ready to send."""

    name: str
    """Its name in :data:`ASSET_TYPES` (the last segment of its URL)."""
    body: bytes
    """The file's bytes."""
    content_type: str
    """Its ``Content-Type``."""
    etag: str
    """A strong validator (quoted, from the SHA-256 of the body) for ``If-None-Match``."""


class DashboardAssets:
    """The packaged files, read on first use and kept in memory (about 80 KB)."""

    def __init__(self) -> None:
        self._assets: dict[str, Asset] | None = None

    def _load(self) -> dict[str, Asset]:
        folder = resources.files("shipyard.serving.dashboard").joinpath("static")
        assets = {}
        for name, content_type in ASSET_TYPES.items():
            body = folder.joinpath(name).read_bytes()
            digest = hashlib.sha256(body).hexdigest()[:32]
            assets[name] = Asset(name, body, content_type, f'"{digest}"')
        return assets

    def get(self, name: str) -> Asset:
        """The file called ``name`` (a key of :data:`ASSET_TYPES`); raises AssetNotFound for
        any other name (before touching the disk: a name, never a path)."""
        if name not in ASSET_TYPES:
            raise AssetNotFound(
                f"no dashboard file {name!r}; the dashboard is the page /dashboard, its files "
                f"are {sorted(ASSET_TYPES)}")
        if self._assets is None:
            self._assets = self._load()
        return self._assets[name]
