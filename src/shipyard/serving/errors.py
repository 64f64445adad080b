"""The server's errors: :mod:`shipyard.protocol.errors`, re-exported (one owner, one list)."""

from shipyard.protocol import errors as _errors
from shipyard.protocol.errors import *  # noqa: F403

__all__ = _errors.__all__
