"""Compatibility alias: the training half's errors live in :mod:`shipyard.errors`.

Nothing in ``src/`` imports this module (tests/training/test_training_imports.py checks it);
it stays only so that code written against the old place keeps working. Import from
``shipyard.errors``.
"""

from __future__ import annotations

from shipyard.errors import ConfigError, DataError, ExperimentError, ExportError

__all__ = ["ConfigError", "DataError", "ExperimentError", "ExportError"]
