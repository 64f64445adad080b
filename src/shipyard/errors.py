"""Errors of the training half (data -> train -> evaluate -> export -> publish).

The one module they live in: ``data/``, ``training/``, ``evaluation/``, ``export/`` and the API
raise these, and ``shipyard train / evaluate / publish`` print any :class:`ExperimentError` as
one line and exit with status 2. It imports nothing, so every floor may import it. (The serving
half's errors carry wire codes and live in :mod:`shipyard.protocol.errors`.)

Every message names the object, the bad value and the fix, so the CLI can print it as it is.
"""

from __future__ import annotations

__all__ = ["ConfigError", "DataError", "ExperimentError", "ExportError"]


class ExperimentError(Exception):
    """Base class: something about an experiment that the user can fix."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ConfigError(ExperimentError, ValueError):
    """The experiment configuration (YAML, ``--set``) is invalid."""


class DataError(ExperimentError, ValueError):
    """The data cannot be read or does not match the experiment's schema."""


class ExportError(ExperimentError):
    """A fitted pipeline cannot be exported or published."""
