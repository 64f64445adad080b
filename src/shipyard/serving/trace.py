"""Triton's trace extension (``/v2/trace/setting``, ``/v2/models/{m}/trace/setting``, gRPC
``TraceSetting``), answered truthfully: this server records no traces, so ``trace_level`` is
``["OFF"]`` and the other settings keep Triton's defaults. An update that asks for what already
holds (or clears a model's setting, which always equals the global one) succeeds; one that
would change anything is refused naming the setting. Per-stage request timings are in
``/v2/models/{m}/stats`` and ``/metrics`` instead.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from shipyard.serving.errors import InvalidInput

__all__ = ["trace_settings", "update_trace_settings"]

#: the settings, in Triton's JSON shape (numbers as strings, as Triton writes them)
_SETTINGS: dict[str, list[str] | str] = {
    "trace_level": ["OFF"], "trace_rate": "1000", "trace_count": "-1", "log_frequency": "0",
    "trace_file": "", "trace_mode": "triton",
}


def trace_settings() -> dict[str, Any]:
    """The trace settings (global and every model's: they are the same)."""
    return {k: list(v) if isinstance(v, list) else v for k, v in _SETTINGS.items()}


def _normal(key: str, value: Any) -> list[str] | str:
    """A requested value in the settings' own form (gRPC sends every value as a list)."""
    values = value if isinstance(value, list) else [value]
    if not all(isinstance(v, str | int) and not isinstance(v, bool) for v in values):
        raise InvalidInput(f"trace setting {key!r} must be a string (or a list of strings for "
                           f"trace_level), got {value!r}")
    strings = [str(v) for v in values]
    if key == "trace_level":
        return strings
    if len(strings) != 1:
        raise InvalidInput(f"trace setting {key!r} takes one value, got {value!r}")
    return strings[0]


def update_trace_settings(changes: Mapping[str, Any]) -> dict[str, Any]:
    """Accept what changes nothing; refuse the rest naming the setting. The settings after."""
    for key, value in changes.items():
        if key not in _SETTINGS:
            raise InvalidInput(f"unknown trace setting {key!r}; the settings are "
                               f"{sorted(_SETTINGS)}")
        if value is None:
            continue  # clear a model's setting: it is the global one already
        wanted = _normal(key, value)
        if wanted != _SETTINGS[key]:
            raise InvalidInput(
                f"trace setting {key!r} cannot become {wanted!r}: this server records no "
                f"traces (trace_level stays ['OFF'], the other settings keep their values); "
                "per-stage request timings are in /v2/models/{m}/stats and /metrics")
    return trace_settings()
