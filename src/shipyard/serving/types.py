"""The server's request and response types: :mod:`shipyard.protocol.types`, re-exported."""

from shipyard.protocol import types as _types
from shipyard.protocol.types import *  # noqa: F403

__all__ = _types.__all__
