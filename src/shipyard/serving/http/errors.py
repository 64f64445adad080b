"""The one table that maps error codes to HTTP statuses (owned by
:mod:`shipyard.protocol.status`, which the client reads too)."""

from __future__ import annotations

from shipyard.protocol.status import HTTP_STATUS

__all__ = ["HTTP_STATUS"]
