"""Shipyard: from raw data to a fast, reliable model server."""

__all__ = ["__version__"]

__version__ = "0.1.0"
