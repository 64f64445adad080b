"""Shipyard on Ray: training under Ray Train, serving under Ray Serve (``shipyard[ray]``).

- :func:`train_ray` runs a torch experiment data-parallel under Ray Train's ``TorchTrainer``
  (``shipyard train EXP --ray --num-workers N``): Ray starts the workers and their
  torch.distributed process group, :func:`shipyard.training.torch.fit` trains in it, and rank 0
  alone writes the run directory.
- :class:`ShipyardDeployment` is a Ray Serve deployment hosting a model repository with
  Shipyard's KServe V2 REST routes (the server's own ASGI app, :class:`HttpApp`), and
  :func:`serve_repository` runs one: ``serve_repository("models")``.

Ray is imported when one of these names is first used, not when this package is imported;
the training half is loaded only by :func:`train_ray`, the serving half only by the other two.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from shipyard.integrations.ray._serve import (
        ShipyardApp,
        ShipyardDeployment,
        http_url,
        serve_repository,
    )
    from shipyard.integrations.ray._train import train_ray

__all__ = ["ShipyardApp", "ShipyardDeployment", "http_url", "serve_repository", "train_ray"]

_WHERE = {"ShipyardApp": "_serve", "ShipyardDeployment": "_serve", "http_url": "_serve",
          "serve_repository": "_serve", "train_ray": "_train"}


def __getattr__(name: str) -> Any:
    """The public names, each imported from its module when first asked for."""
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value
