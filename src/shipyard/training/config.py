"""The experiment file: one YAML document that says what to train, on what, and how.

Validated with pydantic; unknown keys and bad values are reported with their dotted path, the
value and what is allowed. ``--set key.path=value`` overrides apply to the raw document first.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal, TypeAlias

import yaml
from pydantic import Field, ValidationError, field_validator, model_validator

from shipyard.data.augment_config import AugmentConfig
from shipyard.data.features import DEFAULT_MISSING_VALUES, FeatureSpec, Preprocessing
from shipyard.data.image import IDX_PREFIX
from shipyard.data.sources import SKLEARN_PREFIX, resolve_source
from shipyard.errors import ConfigError
from shipyard.training._config_common import OutputConfig, Strict, model_name, seed_training
from shipyard.training._config_errors import format_errors
from shipyard.training.families import unavailable
from shipyard.training.models import MODELS, models_for_task
from shipyard.training.overrides import apply_overrides
from shipyard.training.text_config import TextExperiment
from shipyard.training.torch import TorchTraining

__all__ = [
    "FAMILY_LABELS",
    "AnyExperiment",
    "DataConfig",
    "Experiment",
    "ExportConfig",
    "ImageDataConfig",
    "ImageExperiment",
    "ImageExportConfig",
    "ModelSpec",
    "NormalizeConfig",
    "OutputConfig",
    "SklearnModelSpec",
    "SplitConfig",
    "TextExperiment",
    "TorchModelSpec",
    "TrainingConfig",
    "experiment_class",
    "family_key",
    "format_errors",
    "load_experiment",
    "parse_experiment",
]

ModelType = Literal[
    "linear_regression", "ridge", "logistic_regression", "random_forest", "gradient_boosting",
    "hist_gradient_boosting", "mlp",
]
OutputName = Literal["label", "probabilities", "score", "prediction"]


_Strict = Strict


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
        return model_name(v)

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
        if isinstance(self.model, TorchModelSpec):
            raise ValueError("model.family: torch experiments are image experiments "
                             "(ImageExperiment, with an image data section); read them with "
                             "load_experiment or parse_experiment")
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


# --- image experiments (model.family: torch) -------------------------------------------------

def _per_channel(value: Any) -> Any:
    return [value] if isinstance(value, int | float) and not isinstance(value, bool) else value


class NormalizeConfig(_Strict):
    """``(pixel / 255 - mean) / std`` per channel, after scaling pixels to [0, 1]."""

    mean: list[float] = Field(min_length=1, max_length=3)
    """One mean per channel, or one for all (a single number is a list of one)."""
    std: list[Annotated[float, Field(gt=0)]] = Field(min_length=1, max_length=3)
    """One standard deviation per channel, or one for all; each > 0."""

    @field_validator("mean", "std", mode="before")
    @classmethod
    def _lists(cls, v: Any) -> Any:
        return _per_channel(v)


class ImageDataConfig(_Strict):
    """Where the images come from, their size, and how they are split (``family: torch``)."""

    source: str
    """``idx:FOLDER`` or ``idx:IMAGES,LABELS`` (MNIST-style IDX files), a folder with one
    subfolder of PNG/JPEG files per class (optionally inside ``train/``, ``val/``, ``test/``),
    or ``sklearn:digits``. A relative path is taken from the experiment file's folder (in
    ``--set`` from the current folder)."""
    size: list[int]
    """``[height, width]`` every image is resized to, or one integer for a square."""
    channels: Literal[1, 3] = 1
    """1 = grey (colour images are converted), 3 = RGB (grey images are repeated)."""
    interpolation: Literal["bilinear", "nearest", "bicubic"] = "bilinear"
    """How images are resized (the serving ``resize`` step does the same)."""
    normalize: NormalizeConfig | None = None
    """Per-channel mean and std applied after scaling to [0, 1]; null = pixels in [0, 1]."""
    class_names: list[str] | None = None
    """Display names of the classes in label order; default: the source's own (folder names,
    Fashion-MNIST's names, digits)."""
    validation_size: float = Field(0.1, ge=0, lt=1)
    """Fraction of the training images held out for validation (stratified, seeded) when the
    source has no ``val`` split; 0 = no validation."""
    test_size: float = Field(0.2, gt=0, lt=1)
    """Fraction of the images held out for the test metrics when the source has no ``test``
    split (taken first, then validation from the rest)."""
    stratify: bool = True
    """Keep class proportions in every part that is split off."""
    limit: int | None = Field(None, ge=10)
    """At most this many images of each split the source gives (a stratified, seeded sample),
    for quick trials; null = all."""
    cache: bool = True
    """Keep decoded arrays under the image cache ($SHIPYARD_CACHE_DIR, default
    ~/.cache/shipyard/images) so the next run skips decoding."""

    @field_validator("size", mode="before")
    @classmethod
    def _square(cls, v: Any) -> Any:
        return [v, v] if isinstance(v, int) and not isinstance(v, bool) else v

    @field_validator("size")
    @classmethod
    def _size(cls, v: list[int]) -> list[int]:
        if len(v) != 2 or any(d < 1 or d > 4096 for d in v):
            raise ValueError("must be [height, width], two integers from 1 to 4096, or one "
                             "integer for a square")
        return v

    @model_validator(mode="after")
    def _normalize_channels(self) -> ImageDataConfig:
        norm = self.normalize
        if norm is not None:
            for name, values in (("mean", norm.mean), ("std", norm.std)):
                if len(values) not in (1, self.channels):
                    raise ValueError(
                        f"data.normalize.{name}: {len(values)} values for {self.channels} "
                        f"channel(s); give one per channel or one for all")
        if self.class_names is not None and len(set(self.class_names)) != len(self.class_names):
            raise ValueError(f"data.class_names: {self.class_names} names a class twice")
        return self


class ImageExportConfig(_Strict):
    """The ONNX file (and torch program) ``shipyard publish`` puts into a model repository."""

    onnx: bool = True
    """Export ``model.onnx``: input ``image`` FP32 [N, C, H, W], output ``logits``
    [N, classes]."""
    opset: int = Field(18, ge=18, le=23)
    """ONNX opset of the default domain (torch's dynamo exporter writes 18 and up)."""
    tolerance: float = Field(1e-4, gt=0)
    """Largest absolute difference of the logits allowed between ONNX Runtime and torch on
    the test split."""
    normalize: Literal["steps", "graph"] = "steps"
    """steps: ``data.normalize`` stays a declared preprocessing step (the graph takes pixels
    in [0, 1]; training and serving run the same transforms); graph: the graph normalises
    itself (it takes pixels in [0, 1] either way)."""
    torch_program: bool = True
    """Also write ``model.pt2`` (``torch.export``, dynamic batch) for the server's torch
    runtime."""
    max_batch_size: int = Field(256, ge=0)
    """max_batch_size written into the published config.yaml (and the exported batch
    range's upper end, when > 0)."""


class ImageExperiment(_Strict):
    """An image classification experiment (``model.family: torch``). See
    ``examples/fashion_mnist/experiment.yaml``."""

    name: str
    """Experiment name; also the default model name when publishing (letters, digits, _ . -)."""
    task: Literal["binary", "multiclass"] = "multiclass"
    """Classification: two classes or several (the same metrics either way)."""
    description: str = ""
    """Free text for the report and the published config.yaml."""
    seed: int = Field(0, ge=0)
    """Seed of the splits and samples; also training.seed unless that is given."""
    data: ImageDataConfig
    """The images, their size and channels, normalisation and splits."""
    model: TorchModelSpec
    """``family: torch``, ``architecture: cnn``; ``params`` are :class:`CNNConfig`'s fields."""
    augment: AugmentConfig = Field(default_factory=AugmentConfig)
    """Random changes to training batches (off for validation, test and export)."""
    training: TorchTraining = Field(default_factory=TorchTraining)
    """Epochs, batch size, optimizer, schedule, early stopping, device, precision."""
    export: ImageExportConfig = Field(default_factory=ImageExportConfig)
    """ONNX export, its agreement check and the served interface."""
    output: OutputConfig = Field(default_factory=OutputConfig)
    """Where the run directory is written."""

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        return model_name(v)

    @model_validator(mode="before")
    @classmethod
    def _training_seed(cls, v: Any) -> Any:
        return seed_training(v)

    @model_validator(mode="after")
    def _available(self) -> ImageExperiment:
        reason = unavailable(self.model.family)
        if reason is not None:
            raise ValueError(reason)
        return self

    @property
    def is_tree_model(self) -> bool:
        """Never (the tabular trainer's question)."""
        return False


AnyExperiment: TypeAlias = Experiment | ImageExperiment | TextExperiment
"""A tabular (scikit-learn), an image (torch) or a text (``kind: text``) experiment."""


def _family(raw: Mapping[str, Any]) -> str:
    model = raw.get("model")
    family = model.get("family", "sklearn") if isinstance(model, Mapping) else "sklearn"
    return family if isinstance(family, str) else "sklearn"


def experiment_class(raw: Mapping[str, Any]
                     ) -> type[Experiment] | type[ImageExperiment] | type[TextExperiment]:
    """The schema of a raw experiment document: :class:`TextExperiment` for ``kind: text``,
    :class:`ImageExperiment` for ``model.family: torch``, else :class:`Experiment`."""
    if raw.get("kind") == "text":
        return TextExperiment
    return ImageExperiment if _family(raw) == "torch" else Experiment


#: how messages name the runs of each trainer (:func:`family_key`)
FAMILY_LABELS = {"sklearn": "scikit-learn", "torch": "torch image", "text-sklearn": "TF-IDF text",
                 "text-torch": "Transformer text"}


def family_key(exp: AnyExperiment) -> str:
    """The trainer of ``exp`` in :data:`~shipyard.training.families.FAMILIES`: its
    ``model.family``, or ``text-<family>`` for text experiments."""
    return exp.family_key if isinstance(exp, TextExperiment) else exp.model.family


def parse_experiment(raw: Mapping[str, Any], where: str = "experiment",
                     overridden: Sequence[str] = ()) -> AnyExperiment:
    """Validate a raw document with the schema of its family; ConfigError with one line per
    problem (a family that cannot run here is the one line)."""
    reason = unavailable(_family(raw))
    if reason is not None and _family(raw) in ("sklearn", "torch") and raw.get("kind") != "text":
        raise ConfigError(f"{where}: {reason}")
    cls = experiment_class(raw)
    try:
        return cls.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(format_errors(exc, where, overridden, root=cls)) from exc




def load_experiment(
    source: str | Path | Mapping[str, Any] | AnyExperiment,
    overrides: Sequence[str] | Mapping[str, Any] = (),
) -> tuple[AnyExperiment, Path]:
    """The validated experiment and the folder its relative paths are resolved against.

    ``source`` is a YAML path, a mapping or an experiment. A relative ``data.source`` is
    resolved against the YAML file's folder (the current folder for mappings and overrides).
    ``model.family: torch`` makes it an :class:`ImageExperiment`, else an :class:`Experiment`.
    """
    if isinstance(source, Experiment | ImageExperiment | TextExperiment):
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
    keys = [str(k) for k in overrides] if isinstance(overrides, Mapping) else \
        [o.partition("=")[0].strip() for o in overrides]
    return parse_experiment(raw, where, keys), base_dir


def _resolve_data_source(raw: dict[str, Any], base_dir: Path) -> dict[str, Any]:
    data = raw.get("data")
    if isinstance(data, dict) and isinstance(data.get("source"), str):
        src = data["source"]
        if src.startswith(IDX_PREFIX):  # idx:FOLDER or idx:IMAGES,LABELS: each path
            parts = [p.strip() for p in src[len(IDX_PREFIX):].split(",")]
            resolved = IDX_PREFIX + ",".join(
                p if not p or Path(p).expanduser().is_absolute() else resolve_source(p, base_dir)
                for p in parts)
            raw = {**raw, "data": {**data, "source": resolved}}
        elif not src.startswith(SKLEARN_PREFIX) and not Path(src).expanduser().is_absolute():
            raw = {**raw, "data": {**data, "source": resolve_source(src, base_dir)}}
    return raw
