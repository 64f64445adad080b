"""The ``config.yaml`` schema of a model folder (``<root>/<model>/config.yaml``).

Both halves use this one schema: the server reads every ``config.yaml`` with
:func:`load_model_config`, and publishing validates what it writes with :class:`ModelConfig`
before it writes it. Backend options (``parameters``) are checked by the runtime that loads the
model, since only it knows them. pydantic, yaml and the step catalogue
(:mod:`shipyard.transforms`, which checks ``preprocess``/``postprocess`` declarations).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from shipyard.protocol.errors import InvalidInput
from shipyard.protocol.types import DATATYPES
from shipyard.transforms import StepConfigError, build_steps

__all__ = [
    "Backend",
    "DynamicBatching",
    "EnsembleConfig",
    "EnsembleStep",
    "InputConfig",
    "InputFormat",
    "ModelConfig",
    "OnnxRuntimeOptions",
    "Strict",
    "TensorConfig",
    "VersionPolicy",
    "Warmup",
    "WarmupTensor",
    "format_validation_error",
    "load_model_config",
    "parse_model_config",
]


#: The backend names a config.yaml may give (the server's runtime registry has one entry each,
#: which a test checks).
Backend = Literal["onnx", "torch", "python", "pmml", "ensemble"]


class Strict(BaseModel):
    """Base of the schema's models: unknown fields are errors; values are frozen."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class TensorConfig(Strict):
    """An input or output declared in ``config.yaml`` (overrides what the graph says)."""

    name: str
    """Tensor name as the model knows it."""
    datatype: str
    """KServe V2 datatype: BOOL, UINT8..UINT64, INT8..INT64, FP16, FP32, FP64, BYTES."""
    shape: list[int]
    """Shape without the batch dimension when ``max_batch_size > 0``; -1 for any size."""

    @field_validator("datatype")
    @classmethod
    def _known_datatype(cls, v: str) -> str:
        if v not in DATATYPES:
            raise ValueError(f"unknown datatype {v!r}; expected one of {sorted(DATATYPES)}")
        return v


#: Triton's input formats (``ModelInput.format``): how an image input's dimensions are laid out
InputFormat = Literal["FORMAT_NONE", "FORMAT_NHWC", "FORMAT_NCHW"]


class InputConfig(TensorConfig):
    """An input declared in ``config.yaml``: a tensor, and for images their layout."""

    format: InputFormat = "FORMAT_NONE"
    """Layout of an image input, as Triton's ``ModelInput.format``: ``FORMAT_NCHW`` (channels,
    height, width) or ``FORMAT_NHWC``; ``FORMAT_NONE`` for anything else. Served in the model
    configuration, where clients such as Triton's ``image_client`` read it to shape the
    images they send. An image format needs a shape of three dimensions (without the batch
    dimension)."""

    @model_validator(mode="after")
    def _image_rank(self) -> InputConfig:
        if self.format != "FORMAT_NONE" and len(self.shape) != 3:
            layout = "C, H, W" if self.format == "FORMAT_NCHW" else "H, W, C"
            raise ValueError(
                f"input {self.name!r} has format {self.format} but shape {self.shape}: an "
                f"image format needs three dimensions ({layout}, without the batch dimension); "
                "use FORMAT_NONE for other inputs"
            )
        return self


class DynamicBatching(Strict):
    """How concurrent requests are merged into one model execution."""

    max_queue_delay_us: int = Field(0, ge=0)
    """How long the oldest queued request may wait for others to join its batch (microseconds).
    0 = greedy: run as soon as an instance is free, with whatever is queued."""
    preferred_batch_sizes: list[int] = Field(default_factory=list)
    """Batch sizes worth waiting for; a batch of one of these sizes runs without delay."""
    max_queue_size: int = Field(1024, ge=0)
    """Requests waiting beyond this are refused at once (HTTP 429 / RESOURCE_EXHAUSTED);
    0 = unbounded."""


class OnnxRuntimeOptions(Strict):
    """ONNX Runtime session options."""

    intra_op_threads: int = Field(1, ge=0)
    """Threads inside one operator (0 = ONNX Runtime's default, all cores)."""
    inter_op_threads: int = Field(1, ge=0)
    """Threads across independent operators (0 = ONNX Runtime's default)."""
    graph_optimization_level: Literal["disable", "basic", "extended", "all"] = "all"
    """How hard ONNX Runtime optimises the graph at load time."""
    providers: list[str] = Field(default_factory=list)
    """Execution providers in order of preference; empty = CUDA when available, else CPU."""


class VersionPolicy(Strict):
    """Which versions of a model are served: exactly one of the three forms."""

    latest: int | None = Field(None, ge=1)
    """Serve the newest N versions."""
    specific: list[int] | None = None
    """Serve exactly these versions."""
    all: bool = False
    """Serve every version found."""

    @model_validator(mode="after")
    def _one_form(self) -> VersionPolicy:
        given = sum([self.latest is not None, self.specific is not None, self.all])
        if given > 1:
            raise ValueError("give only one of 'latest', 'specific' or 'all'")
        return self

    def select(self, versions: list[int]) -> list[int]:
        """The versions to serve, newest first, out of those on disk."""
        newest_first = sorted(versions, reverse=True)
        if self.all:
            return newest_first
        if self.specific is not None:
            wanted = set(self.specific)
            return [v for v in newest_first if v in wanted]
        return newest_first[: self.latest or 1]


class WarmupTensor(Strict):
    """One input of the warm-up request."""

    shape: list[int]
    """Full shape, batch dimension included."""
    data: list[Any]
    """Values, flat or nested as ``shape`` (V2 JSON form)."""


class Warmup(Strict):
    """The request run once after loading, before a version serves traffic."""

    enabled: bool = True
    """Run a warm-up request (a version that fails it is not served)."""
    inputs: dict[str, WarmupTensor] = Field(default_factory=dict)
    """Inputs by name; inputs left out get zeros (empty strings) with dynamic dims = 1."""


class EnsembleStep(Strict):
    """One member of an ensemble: a repository model and how its tensors are named."""

    model: str
    """Name of the member model (a folder of the same repository)."""
    version: int | None = Field(None, ge=1)
    """Member version; left out = the newest ready one at each request (so a reload of the
    member is picked up atomically)."""
    inputs: dict[str, str] = Field(default_factory=dict)
    """Member input name -> ensemble tensor it reads (an ensemble input or an earlier step's
    output). Left out: the member's inputs read tensors of the same names."""
    outputs: dict[str, str] = Field(default_factory=dict)
    """Member output name -> ensemble tensor it writes. Left out: all outputs, same names."""


class EnsembleConfig(Strict):
    """Triton-style ensemble scheduling."""

    steps: list[EnsembleStep] = Field(min_length=1)
    """The members, run in order."""


class ModelConfig(Strict):
    """A model's ``config.yaml``. Served back (translated) at ``/v2/models/{m}/config``."""

    name: str = ""
    """Model name; always the repository folder name (a different value here is an error)."""
    backend: Backend | None = None
    """Runtime that executes the model. Left out: the runtime whose file is in the version
    folder (``model.onnx``, ``model.pt2`` / ``model.pt``, ``model.pmml``, ``model.py``)."""
    description: str = ""
    """Free text shown in metadata."""
    default_model_filename: str | None = None
    """File inside each version directory; left out = the backend's default file name."""
    max_batch_size: int | None = Field(None, ge=0)
    """Largest batch one execution takes; 0 = the model does its own batching (no batcher).
    Left out: 32 when every input's first dimension is dynamic in the graph, else 0."""
    dynamic_batching: DynamicBatching = Field(default_factory=DynamicBatching)
    """Batching and queueing; applies when ``max_batch_size > 0`` (the queue bound always)."""
    instances: int = Field(1, ge=1, le=64)
    """Concurrent executions of each version (each a runtime session)."""
    onnxruntime: OnnxRuntimeOptions = Field(default_factory=OnnxRuntimeOptions)
    """ONNX Runtime session options."""
    parameters: dict[str, Any] = Field(default_factory=dict)
    """Options of the backend (e.g. torch's ``device``, ``dtype``); each runtime checks its
    own when the model loads and names the ones it does not know."""
    trust: bool = False
    """The ``python`` backend runs code from the model folder: it loads only with
    ``trust: true``."""
    preprocess: list[str | dict[str, Any]] = Field(default_factory=list)
    """Steps run on the server before the model, from the built-in catalogue (see
    ``shipyard.transforms``), e.g. ``[{image_decode: {mode: L}}, {resize: {size: [28, 28]}}]``.
    The model's metadata then shows the pipeline's inputs."""
    postprocess: list[str | dict[str, Any]] = Field(default_factory=list)
    """Steps run on the server after the model (softmax, top_k, labels)."""
    ensemble: EnsembleConfig | None = None
    """Members of an ensemble (``backend: ensemble``): other models of the repository run in
    order, tensors passed by name."""
    version_policy: VersionPolicy = Field(default_factory=VersionPolicy)
    """Which versions are served (default: the newest one)."""
    inputs: list[InputConfig] | None = None
    """Inputs (each may give its image ``format``); left out = read from the model file."""
    outputs: list[TensorConfig] | None = None
    """Outputs; left out = read from the model file."""
    labels: dict[str, list[str]] = Field(default_factory=dict)
    """Class names per classification output (index -> name)."""
    default_timeout_ms: int | None = Field(None, gt=0)
    """Deadline for requests that set none (queue time counts)."""
    warmup: Warmup = Field(default_factory=Warmup)
    """Warm-up request run after loading (default: zeros shaped from the metadata)."""

    @field_validator("preprocess", "postprocess")
    @classmethod
    def _known_steps(cls, v: list[Any], info: ValidationInfo) -> list[Any]:
        try:  # names and parameters only: files (a tokenizer) are read when the model loads
            build_steps(v, where=str(info.field_name), load=False)
        except StepConfigError as exc:
            raise ValueError(str(exc)) from None
        return v

    @model_validator(mode="after")
    def _ensemble_complete(self) -> ModelConfig:
        if (self.backend == "ensemble") != (self.ensemble is not None):
            raise ValueError("an ensemble needs both 'backend: ensemble' and 'ensemble: {steps: "
                             "[...]}'; other backends take no 'ensemble'")
        if self.ensemble is not None and (self.inputs is None or self.outputs is None):
            raise ValueError("an ensemble declares its 'inputs' and 'outputs' (name, datatype, "
                             "shape): they are the tensors its callers send and receive")
        return self


def format_validation_error(err: ValidationError, where: str) -> str:
    """One line per problem: the field path, the bad value, what is allowed."""
    parts = []
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"]) or "(top level)"
        msg = e["msg"]
        if e["type"] == "extra_forbidden":
            msg = "unknown field"
        value = e.get("input")
        parts.append(f"{loc}: {msg} (got {value!r})")
    return f"{where}: " + "; ".join(parts)


def load_model_config(path: Path, model_name: str) -> ModelConfig:
    """Read and validate ``config.yaml``; raise InvalidInput with a clear message."""
    try:
        raw: Any = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise InvalidInput(f"{path}: cannot read YAML: {exc}") from exc
    return parse_model_config(raw, model_name, str(path))


def parse_model_config(raw: Any, model_name: str, where: str) -> ModelConfig:
    """Validate a config mapping (as ``config.yaml`` holds it) for the model ``model_name``;
    raise InvalidInput naming ``where``, the field and the bad value."""
    if not isinstance(raw, dict):
        raise InvalidInput(f"{where}: expected a mapping of fields, got {type(raw).__name__}")
    if raw.get("name", model_name) != model_name:
        raise InvalidInput(
            f"{where}: name {raw['name']!r} differs from the folder name {model_name!r}; "
            "remove 'name' or rename the folder"
        )
    try:
        return ModelConfig.model_validate({**raw, "name": model_name})
    except ValidationError as exc:
        raise InvalidInput(format_validation_error(exc, where)) from exc


