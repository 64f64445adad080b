"""The experiment file: one YAML document that says what to train, on what, and how.

Validated with pydantic; unknown keys and bad values are reported with their dotted path, the
value and what is allowed. ``--set key.path=value`` overrides apply to the raw document first.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from shipyard.data.features import DEFAULT_MISSING_VALUES, FeatureSpec, Preprocessing
from shipyard.data.sources import SKLEARN_PREFIX, resolve_source
from shipyard.errors import ConfigError
from shipyard.repository.layout import MODEL_NAME_RE
from shipyard.training.families import unavailable
from shipyard.training.models import MODELS, models_for_task
from shipyard.training.overrides import apply_overrides

__all__ = [
    "DataConfig",
    "Experiment",
    "ExportConfig",
    "ModelSpec",
    "OutputConfig",
    "SklearnModelSpec",
    "SplitConfig",
    "TorchModelSpec",
    "TrainingConfig",
    "format_errors",
    "load_experiment",
]

ModelType = Literal[
    "linear_regression", "ridge", "logistic_regression", "random_forest", "gradient_boosting",
    "hist_gradient_boosting", "mlp",
]
OutputName = Literal["label", "probabilities", "score", "prediction"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DataConfig(_Strict):
    """Where the rows come from and which column is the target."""

    source: str
    """A CSV or Parquet file (a relative path is taken from the experiment file's folder; in
    ``--set`` from the current folder), or ``sklearn:NAME`` for a bundled scikit-learn data set
    (breast_cancer, diabetes, iris, wine, digits)."""
    target: str
    """Column to predict."""
    format: Literal["auto", "csv", "parquet"] = "auto"
    """File format; auto = by extension (and Parquet's magic bytes)."""
    separator: str = ","
    """CSV field separator."""
    encoding: str = "utf-8"
    """CSV text encoding."""
    missing_values: list[str] = Field(default_factory=lambda: list(DEFAULT_MISSING_VALUES))
    """Cell values (after stripping) that mean missing."""
    strip: bool = True
    """Strip blanks around text cells before anything else."""
    class_names: dict[str, str] = Field(default_factory=dict)
    """Display names of target values (``{"0": "died", "1": "survived"}``); default: the data
    set's own names for sklearn: sources, else the values themselves."""


class SklearnModelSpec(_Strict):
    """A scikit-learn estimator and its hyper-parameters (``family: sklearn``, the default)."""

    family: Literal["sklearn"] = "sklearn"
    """Model family: scikit-learn (the default when ``family`` is left out)."""
    type: ModelType
    """Which model; the estimator depends on the task (classifier or regressor)."""
    params: dict[str, Any] = Field(default_factory=dict)
    """Constructor arguments of the scikit-learn estimator (checked against its parameters)."""

    @property
    def label(self) -> str:
        """Short name for logs and reports."""
        return self.type


class TorchModelSpec(_Strict):
    """A torch network of a known architecture and its options (``family: torch``)."""

    family: Literal["torch"]
    """Model family: torch."""
    architecture: Literal["cnn"]
    """The network (``cnn``: :mod:`shipyard.models.cnn`)."""
    params: dict[str, Any] = Field(default_factory=dict)
    """Options of the architecture (its config's fields; checked by the torch trainer)."""

    @property
    def label(self) -> str:
        """Short name for logs and reports."""
        return f"torch {self.architecture}"


ModelSpec = Annotated[SklearnModelSpec | TorchModelSpec, Field(discriminator="family")]
"""The ``model`` section: one spec per family, chosen by ``family`` (default ``sklearn``)."""


class SplitConfig(_Strict):
    """How rows are divided into train, validation and test."""

    method: Literal["holdout", "kfold"] = "holdout"
    """holdout: fixed train/validation/test parts; kfold: a test part, then k-fold
    cross-validation on the rest (validation metrics = mean over folds), then a final fit on
    all of it."""
    test_size: float = Field(0.2, gt=0, lt=1)
    """Fraction of rows held out for the test metrics."""
    validation_size: float = Field(0.2, ge=0, lt=1)
    """Fraction of all rows used for validation (holdout only; 0 = none)."""
    folds: int = Field(5, ge=2, le=50)
    """Number of folds (kfold only)."""
    stratify: bool = True
    """Keep class proportions in every part (classification only)."""

    @model_validator(mode="after")
    def _sizes(self) -> SplitConfig:
        if self.method == "holdout" and self.test_size + self.validation_size >= 0.95:
            raise ValueError(
                f"test_size {self.test_size} + validation_size {self.validation_size} leave "
                "under 5% of the rows for training; make them smaller"
            )
        return self


class TrainingConfig(_Strict):
    """Options of the fit itself."""

    epochs: int | None = Field(None, ge=1)
    """Passes over the training data for models that train in epochs (mlp,
    hist_gradient_boosting: max_iter); null = the model's default."""
    n_jobs: int | None = None
    """Parallel jobs of models that have them (random_forest); null = the model's default."""


class ExportConfig(_Strict):
    """The ONNX file that ``shipyard publish`` puts into a model repository."""

    onnx: bool = True
    """Export the whole pipeline (preprocessing + model) to ``model.onnx``."""
    opset: int = Field(17, ge=13, le=21)
    """Highest ONNX opset of the default domain the graph may use (skl2onnx writes the lowest
    one its operators need; export.json records it)."""
    tolerance: float = Field(1e-4, gt=0)
    """Largest difference allowed between ONNX Runtime and scikit-learn on the test split
    (probabilities; for regression relative to max(1, |value|))."""
    input: Literal["columns", "matrix"] = "columns"
    """columns: one input per raw column, shape [N, 1] (FP32 numbers, BYTES strings);
    matrix: one FP32 input [N, n_features] in feature order (all features numeric)."""
    input_name: str = "features"
    """Name of the single input when ``input`` is matrix."""
    outputs: list[OutputName] | None = None
    """Outputs in order (the server's /predict uses the first). Default: [label, probabilities]
    for classification, [prediction] for regression. score = [N, 1] probability of
    ``score_class``."""
    score_class: str | None = None
    """Class (name or value) whose probability the score output gives; default: the last
    class (the positive one of a binary task)."""
    max_batch_size: int = Field(256, ge=0)
    """max_batch_size written into the published config.yaml."""


class OutputConfig(_Strict):
    """Where run directories go."""

    dir: str = "runs"
    """Parent folder of run directories (relative to the current folder)."""
    run_name: str | None = None
    """Name of the run directory; default ``<name>-<YYYYmmdd-HHMMSS>``."""
    plots: bool = True
    """Draw the PNG plots (on small tables the slowest step)."""


class Experiment(_Strict):
    """A whole experiment. See ``examples/*/experiment.yaml``."""

    name: str
    """Experiment name; also the default model name when publishing (letters, digits, _ . -)."""
    task: Literal["regression", "binary", "multiclass"]
    """What is predicted: a number, one of two classes, or one of several."""
    description: str = ""
    """Free text for the report and the published config.yaml."""
    seed: int = 0
    """Seed of the split and of every random model."""
    data: DataConfig
    """The data source and target."""
    features: dict[str, FeatureSpec] | None = None
    """Input columns in order: ``name: numeric|categorical|text`` or ``name: {type: ..., impute:
    ..., ...}`` (an empty entry is numeric); null = every column except the target and
    ``exclude``, numeric where every value parses as a number, else categorical."""
    exclude: list[str] = Field(default_factory=list)
    """Columns left out when ``features`` is null."""
    preprocessing: Preprocessing = Field(default_factory=Preprocessing)
    """Per-type defaults for imputation, scaling, encoding, TF-IDF."""
    model: ModelSpec
    """The model family, the model and its hyper-parameters."""
    split: SplitConfig = Field(default_factory=SplitConfig)
    """Train / validation / test split or k-fold."""
    training: TrainingConfig = Field(default_factory=TrainingConfig)
    """Epochs, parallelism."""
    export: ExportConfig = Field(default_factory=ExportConfig)
    """ONNX export and the served interface."""
    output: OutputConfig = Field(default_factory=OutputConfig)
    """Where the run directory is written."""

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not MODEL_NAME_RE.match(v):
            raise ValueError("must start with a letter or digit and hold only letters, digits, "
                             "'_', '.', '-' (it becomes a model folder name)")
        return v

    @field_validator("features", mode="before")
    @classmethod
    def _shorthand(cls, v: Any) -> Any:
        if isinstance(v, Mapping):
            return {k: {"type": s} if isinstance(s, str) else ({} if s is None else s)
                    for k, s in v.items()}
        return v

    @field_validator("model", mode="before")
    @classmethod
    def _default_family(cls, v: Any) -> Any:
        if isinstance(v, Mapping) and "family" not in v:
            return {"family": "sklearn", **v}
        return v

    @model_validator(mode="after")
    def _consistent(self) -> Experiment:
        reason = unavailable(self.model.family)
        if reason is not None:
            raise ValueError(reason)
        if isinstance(self.model, SklearnModelSpec) and \
                self.model.type not in models_for_task(self.task):
            raise ValueError(
                f"model.type {self.model.type!r} does not support task {self.task!r}; models for "
                f"{self.task}: {models_for_task(self.task)}"
            )
        outputs = self.export.outputs or []
        if self.task == "regression":
            wrong = [o for o in outputs if o != "prediction"]
            if wrong or self.export.score_class is not None:
                raise ValueError(
                    f"export: a regression model has the output 'prediction' only; remove "
                    f"{wrong or 'score_class'}"
                )
        elif "prediction" in outputs:
            raise ValueError("export.outputs: 'prediction' is for regression; classifiers have "
                             "label, probabilities, score")
        if len(set(outputs)) != len(outputs):
            raise ValueError(f"export.outputs: {outputs} names an output twice")
        if self.features is not None and not self.features:
            raise ValueError("features: empty; list at least one column or leave it out "
                             "(null = every column but the target)")
        if self.features is not None and self.exclude:
            raise ValueError("exclude applies only when features is left out; remove one")
        return self

    @property
    def is_tree_model(self) -> bool:
        """The model is a tree ensemble (numeric scaling defaults to none)."""
        return isinstance(self.model, SklearnModelSpec) and MODELS[self.model.type].tree


def _unwrap(annotation: Any) -> Any:
    """The pydantic model, ``("dict", value type)`` or ``("union", {tag: model})`` inside an
    annotation (Optional too)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    origin = getattr(annotation, "__origin__", None)
    args: tuple[Any, ...] = getattr(annotation, "__args__", ())
    if origin is dict and len(args) == 2:
        return ("dict", args[1])
    for arg in args:
        found = _unwrap(arg)
        if found is not None:
            return found
    return None


def _field_target(model: type[BaseModel], name: str) -> Any:
    """What :func:`_unwrap` finds under field ``name`` of ``model``; a discriminated union of
    models gives ``("union", {tag: model})``."""
    field = model.model_fields.get(name)
    if field is None:
        return None
    if isinstance(field.discriminator, str):
        members = [a for a in get_args(field.annotation) if isinstance(a, type)
                   and issubclass(a, BaseModel)]
        return ("union", {get_args(m.model_fields[field.discriminator].annotation)[0]: m
                          for m in members})
    return _unwrap(field.annotation)


def _walk(loc: Sequence[Any]) -> tuple[list[Any], list[str] | None]:
    """``loc`` without the tags pydantic puts after a discriminated union (``model.sklearn.type``
    is ``model.type`` to the user), and the field names allowed where its last part sits."""
    current: Any = Experiment
    parent: Any = None
    clean: list[Any] = []
    parts = list(loc)
    i = 0
    while i < len(parts):
        part, parent = parts[i], current
        clean.append(part)
        if isinstance(current, tuple) and current[0] == "dict":
            current = _unwrap(current[1])  # a dict level: the key is free, go to the value type
        elif isinstance(current, type) and issubclass(current, BaseModel):
            current = _field_target(current, str(part))
        else:
            current = None
        if isinstance(current, tuple) and current[0] == "union":
            members = current[1]
            following = parts[i + 1] if i + 1 < len(parts) else None
            current = members.get(following) if isinstance(following, str) else None
            i += current is not None  # skip the tag
        i += 1
    if isinstance(parent, type) and issubclass(parent, BaseModel):
        return clean, list(parent.model_fields)
    return clean, None


def format_errors(err: ValidationError, where: str, overridden: Sequence[str] = ()) -> str:
    """One line per problem: dotted path, message, the bad value, what is allowed; problems
    under a path in ``overridden`` say they came from ``--set``."""
    lines = []
    for e in err.errors():
        loc, allowed = _walk([p for p in e["loc"]
                              if not (isinstance(p, str) and p.startswith(("function-",)))])
        got = e.get("input", ...)
        msg = e["msg"].removeprefix("Value error, ")
        if e["type"] == "extra_forbidden":
            msg = "unknown field" + (f"; allowed: {allowed}" if allowed else "")
        elif e["type"] == "missing":
            msg = "required field is missing"
        elif e["type"] == "union_tag_invalid":  # model.family: the discriminator's own path
            ctx = e.get("ctx", {})
            loc = [*loc, str(ctx.get("discriminator", "")).strip("'")]
            msg, got = f"must be one of {ctx.get('expected_tags')}", ctx.get("tag")
        path = ".".join(str(p) for p in loc) or "(top level)"
        line = f"{path}: {msg}" if loc else msg  # whole-model checks name their fields
        if e["type"] not in ("missing",) and got is not ... and not isinstance(got, dict):
            line += f" (got {got!r})"
        if any(path == k or path.startswith(k + ".") or k.startswith(path + ".")
               for k in overridden):
            line += " [from --set]"
        lines.append(line)
    return f"{where}: " + "\n  ".join(lines) if len(lines) == 1 else \
        f"{where}: {len(lines)} problems\n  " + "\n  ".join(lines)


def load_experiment(
    source: str | Path | Mapping[str, Any] | Experiment,
    overrides: Sequence[str] | Mapping[str, Any] = (),
) -> tuple[Experiment, Path]:
    """The validated experiment and the folder its relative paths are resolved against.

    ``source`` is a YAML path, a mapping or an Experiment. A relative ``data.source`` is
    resolved against the YAML file's folder (the current folder for mappings and overrides).
    """
    if isinstance(source, Experiment):
        raw: dict[str, Any] = source.model_dump(mode="json", exclude_unset=True)
        base_dir, where = Path.cwd(), "experiment"
    elif isinstance(source, Mapping):
        raw = dict(source)
        base_dir, where = Path.cwd(), "experiment"
    else:
        path = Path(source)
        where = str(path)
        try:
            loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
        except FileNotFoundError as exc:
            raise ConfigError(f"experiment file {str(path)!r} not found") from exc
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
            raise ConfigError(f"{path}: cannot read YAML: {exc}") from exc
        if not isinstance(loaded, dict):
            raise ConfigError(f"{path}: expected a mapping of fields (name, task, data, model, "
                              f"...), got {type(loaded).__name__}")
        raw, base_dir = loaded, path.resolve().parent
    raw = _resolve_data_source(raw, base_dir)
    raw = apply_overrides(raw, overrides)
    raw = _resolve_data_source(raw, Path.cwd())
    try:
        experiment = Experiment.model_validate(raw)
    except ValidationError as exc:
        keys = [str(k) for k in overrides] if isinstance(overrides, Mapping) else \
            [o.partition("=")[0].strip() for o in overrides]
        raise ConfigError(format_errors(exc, where, keys)) from exc
    return experiment, base_dir


def _resolve_data_source(raw: dict[str, Any], base_dir: Path) -> dict[str, Any]:
    data = raw.get("data")
    if isinstance(data, dict) and isinstance(data.get("source"), str):
        src = data["source"]
        if not src.startswith(SKLEARN_PREFIX) and not Path(src).expanduser().is_absolute():
            raw = {**raw, "data": {**data, "source": resolve_source(src, base_dir)}}
    return raw
