"""Logging set-up: plain text or one JSON object per line, with request ids; and Triton's
logging extension (``/v2/logging``, gRPC ``LogSettings``), which reads and changes the log
settings of the ``shipyard`` loggers while the server runs.

Triton's settings map onto Python logging: ``log_verbose_level`` > 0 is DEBUG; ``log_info``,
``log_warning`` and ``log_error`` let INFO, WARNING and ERROR (and CRITICAL) records through,
each on its own; ``log_format`` is ``text`` (Triton's ``default`` is taken as ``text``) or
``json``; ``log_file`` is always ``""``: logs go to stderr. Other loggers (libraries) keep the
level of ``--log-level``.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Mapping
from typing import Any

from shipyard.serving.errors import InvalidInput

__all__ = ["JsonFormatter", "configure_logging", "log_settings", "update_log_settings"]

#: the loggers the log settings govern (and their children)
LOGGER = "shipyard"

#: LogRecord attributes that are not user-supplied ``extra`` fields
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, message and any ``extra`` fields
    (``request_id``, ``model``, ``version``, ``status``...)."""

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                doc[key] = value
        if record.exc_info:
            doc["exception"] = self.formatException(record.exc_info)
        return json.dumps(doc, default=str)


class _TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        worker = getattr(record, "worker", None)  # set in the workers of --workers N
        if worker is not None:
            text = f"{text} [worker={worker}]"
        rid = getattr(record, "request_id", None)
        return f"{text} [request_id={rid}]" if rid else text


def _formatter(fmt: str) -> logging.Formatter:
    if fmt == "json":
        return JsonFormatter()
    return _TextFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s")


class _Settings(logging.Filter):
    """The log settings (Triton's keys); as a filter on the handler it drops the shipyard
    records of the levels switched off."""

    def __init__(self) -> None:
        super().__init__()
        self.values: dict[str, Any] = {"log_file": "", "log_info": True, "log_warning": True,
                                       "log_error": True, "log_verbose_level": 0,
                                       "log_format": "text"}
        self.handler: logging.Handler | None = None

    def filter(self, record: logging.LogRecord) -> bool:
        name = record.name
        if name != LOGGER and not name.startswith(LOGGER + "."):
            return True
        level = record.levelno
        if level >= logging.ERROR:
            return bool(self.values["log_error"])
        if level >= logging.WARNING:
            return bool(self.values["log_warning"])
        if level >= logging.INFO:
            return bool(self.values["log_info"])
        return True  # DEBUG: the logger's level decides (log_verbose_level)

    def apply(self) -> None:
        v = self.values
        if v["log_verbose_level"] > 0:
            level = logging.DEBUG
        else:  # the lowest level switched on; the filter drops those in between
            on = [lvl for lvl, key in ((logging.INFO, "log_info"),
                                       (logging.WARNING, "log_warning"),
                                       (logging.ERROR, "log_error")) if v[key]]
            level = min(on) if on else logging.CRITICAL + 1
        logging.getLogger(LOGGER).setLevel(level)
        if self.handler is not None:
            self.handler.setFormatter(_formatter(v["log_format"]))


_SETTINGS = _Settings()
_FROM_LEVEL = {"debug": (1, True, True), "info": (0, True, True), "warning": (0, False, True),
               "error": (0, False, False)}


def configure_logging(level: str = "info", fmt: str = "text") -> None:
    """Send logs to stderr as text or JSON lines (replaces existing root handlers); the log
    settings start from ``level`` and ``fmt``."""
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(_SETTINGS)
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    verbose, info, warning = _FROM_LEVEL[level.lower()]
    _SETTINGS.values.update(log_verbose_level=verbose, log_info=info, log_warning=warning,
                            log_error=True, log_format=fmt, log_file="")
    _SETTINGS.handler = handler
    _SETTINGS.apply()


def log_settings() -> dict[str, Any]:
    """The log settings in Triton's JSON shape."""
    return dict(_SETTINGS.values)


def _checked(key: str, value: Any) -> Any:
    if value is None:
        raise InvalidInput(f"log setting {key!r} needs a value (null cannot reset it)")
    if key in ("log_info", "log_warning", "log_error"):
        if not isinstance(value, bool):
            raise InvalidInput(f"log setting {key!r} must be true or false, got {value!r}")
        return value
    if key == "log_verbose_level":
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise InvalidInput(
                f"log setting 'log_verbose_level' must be an integer >= 0 (0: no DEBUG lines, "
                f"1 or more: DEBUG), got {value!r}")
        return value
    if key == "log_format":
        if value == "default":  # Triton's name of its plain format
            return "text"
        if value not in ("text", "json"):
            raise InvalidInput(f"log setting 'log_format' must be 'text' (or Triton's "
                               f"'default') or 'json', got {value!r}")
        return value
    if key == "log_file":
        if value != "":
            raise InvalidInput(f"log setting 'log_file' can only be '' (this server logs to "
                               f"stderr; redirect it to keep a file), got {value!r}")
        return value
    raise InvalidInput(f"unknown log setting {key!r}; the settings are "
                       f"{sorted(_SETTINGS.values)}")


def update_log_settings(changes: Mapping[str, Any]) -> dict[str, Any]:
    """Check every change (InvalidInput naming the key), then apply them all; the settings
    after the change."""
    checked = {key: _checked(key, value) for key, value in changes.items()}
    if checked:
        _SETTINGS.values.update(checked)
        _SETTINGS.apply()
        logging.getLogger(LOGGER).info("log settings changed: %s", checked)
    return log_settings()
