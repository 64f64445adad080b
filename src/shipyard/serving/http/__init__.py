"""REST frontend: KServe V2, Triton extensions, the simple /predict API, health, metrics, docs."""

from shipyard.serving.http.app import HttpApp

__all__ = ["HttpApp"]
