"""The wire codecs: :mod:`shipyard.protocol.wire`, re-exported (one owner; this path stays for
code written against it)."""

from shipyard.protocol import wire as _wire
from shipyard.protocol.wire import *  # noqa: F403

__all__ = _wire.__all__
