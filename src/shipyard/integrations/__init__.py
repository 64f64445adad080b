"""Shipyard on engines users already run (Ray: :mod:`shipyard.integrations.ray`).

Each integration imports its engine only when it is used, and lives above both halves: it may
use the training half and the serving half, which never import it.
"""

from __future__ import annotations

__all__: list[str] = []
