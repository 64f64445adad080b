"""The model repository: the one contract between the training and the serving half.

``layout`` (the name rule, version listing, signatures, scanning a folder), ``config`` (the
``config.yaml`` schema, :class:`ModelConfig`), ``triton`` (Triton's configuration, a
``config.pbtxt`` or JSON, mapped onto that schema; ``pbtxt`` reads the text format) and
``publish`` (atomic new versions). Neither
half owns it; both import it. pydantic, yaml and, to check declared steps,
:mod:`shipyard.transforms`.
"""

from shipyard.repository.config import ModelConfig, load_model_config, parse_model_config
from shipyard.repository.layout import (
    MODEL_NAME_RE,
    ModelEntry,
    scan_model,
    scan_repository,
    versions_on_disk,
)
from shipyard.repository.publish import Published, PublishError, next_version, publish_version
from shipyard.repository.triton import config_from_pbtxt, load_triton_config

__all__ = [
    "MODEL_NAME_RE",
    "ModelConfig",
    "ModelEntry",
    "PublishError",
    "Published",
    "config_from_pbtxt",
    "load_model_config",
    "load_triton_config",
    "next_version",
    "parse_model_config",
    "publish_version",
    "scan_model",
    "scan_repository",
    "versions_on_disk",
]
