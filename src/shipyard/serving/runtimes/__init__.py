"""Model runtimes: one module per model format, all behind :class:`Runtime`."""

from shipyard.serving.runtimes.base import Runtime, create_runtime

__all__ = ["Runtime", "create_runtime"]
