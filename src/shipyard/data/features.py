"""What the experiment says about its columns: feature types and preprocessing settings.

Per-feature settings override the per-type defaults of ``preprocessing``; :func:`column_plans`
resolves both into one :class:`ColumnPlan` per feature, which the pipeline builder uses.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = [
    "DEFAULT_MISSING_VALUES",
    "CategoricalDefaults",
    "ColumnPlan",
    "FeatureSpec",
    "FeatureType",
    "NumericDefaults",
    "Preprocessing",
    "TextDefaults",
    "column_plans",
]

FeatureType = Literal["numeric", "categorical", "text"]
NumericImpute = Literal["mean", "median", "most_frequent", "constant"]
CategoricalImpute = Literal["most_frequent", "constant", "category"]
Scale = Literal["auto", "standard", "minmax", "robust", "none"]
Encode = Literal["onehot", "ordinal"]

#: Cell values (after stripping) that mean "missing" unless ``data.missing_values`` says otherwise.
DEFAULT_MISSING_VALUES = ["", "NA", "N/A", "n/a", "NaN", "nan", "null", "NULL", "None", "?"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class NumericDefaults(_Strict):
    """How numeric columns are prepared unless a feature says otherwise."""

    impute: NumericImpute = "median"
    """Value that replaces a missing number: the column's mean, median, most frequent value,
    or ``fill_value`` (constant)."""
    fill_value: float = 0.0
    """The number used when ``impute`` is ``constant``."""
    scale: Scale = "auto"
    """standard (zero mean, unit variance), minmax ([0, 1]), robust (median and IQR), none;
    auto = standard for linear models and MLPs, none for tree models (scaling cannot change a
    tree, and the float32 arithmetic of ONNX would move values across split thresholds)."""


class CategoricalDefaults(_Strict):
    """How categorical columns are prepared unless a feature says otherwise."""

    impute: CategoricalImpute = "most_frequent"
    """most_frequent: the commonest category; constant: ``fill_value``; category: missing is a
    category of its own (the empty string)."""
    fill_value: str = "missing"
    """The category used when ``impute`` is ``constant``."""
    encode: Encode = "onehot"
    """onehot: one 0/1 column per category, unknown categories give all zeros; ordinal: one
    integer column, unknown categories give -1."""


class TextDefaults(_Strict):
    """How free-text columns are turned into numbers (TF-IDF)."""

    max_features: int | None = Field(1000, ge=1)
    """Keep the most frequent terms only (null = all)."""
    ngram_max: int = Field(1, ge=1, le=3)
    """Longest word n-gram used (1 = single words)."""
    lowercase: bool = True
    """Lower-case before tokenising (the exported graph uses the C locale for this)."""
    min_df: int = Field(1, ge=1)
    """Ignore terms found in fewer documents than this."""


class Preprocessing(_Strict):
    """Defaults per feature type and how the column transformer runs."""

    numeric: NumericDefaults = Field(default_factory=NumericDefaults)
    """Defaults for numeric features."""
    categorical: CategoricalDefaults = Field(default_factory=CategoricalDefaults)
    """Defaults for categorical features."""
    text: TextDefaults = Field(default_factory=TextDefaults)
    """Defaults for text features."""
    n_jobs: int | None = 1
    """Parallel jobs of the ColumnTransformer (column groups fitted in parallel processes;
    -1 = all cores). 1 is fastest for small tables."""


class FeatureSpec(_Strict):
    """One input column. Unset fields take the defaults of ``preprocessing.<type>``."""

    type: FeatureType = "numeric"
    """numeric (served as FP32), categorical (served as BYTES) or text (BYTES, TF-IDF)."""
    impute: NumericImpute | CategoricalImpute | None = None
    """Missing-value strategy for this column (see ``preprocessing.numeric.impute`` and
    ``preprocessing.categorical.impute`` for the values each type accepts)."""
    fill_value: float | str | None = None
    """Constant used when ``impute`` is ``constant``."""
    scale: Scale | None = None
    """Scaling of a numeric column (see ``preprocessing.numeric.scale``)."""
    encode: Encode | None = None
    """Encoding of a categorical column: onehot or ordinal."""

    @model_validator(mode="after")
    def _fits_type(self) -> FeatureSpec:
        allowed: dict[str, tuple[str, ...]] = {
            "numeric": ("mean", "median", "most_frequent", "constant"),
            "categorical": ("most_frequent", "constant", "category"),
            "text": (),
        }
        if self.impute is not None and self.impute not in allowed[self.type]:
            raise ValueError(
                f"impute {self.impute!r} does not apply to a {self.type} feature; "
                f"allowed: {list(allowed[self.type]) or 'none (text is never imputed)'}"
            )
        if self.scale is not None and self.type != "numeric":
            raise ValueError(f"scale applies to numeric features only, not {self.type}; remove it")
        if self.encode is not None and self.type != "categorical":
            raise ValueError(
                f"encode applies to categorical features only, not {self.type}; remove it"
            )
        if self.type == "numeric" and isinstance(self.fill_value, str):
            raise ValueError(f"fill_value of a numeric feature must be a number, got "
                             f"{self.fill_value!r}")
        return self


@dataclass(frozen=True)
class ColumnPlan:
    """A feature with every setting resolved: what the pipeline builder needs."""

    name: str
    type: FeatureType
    impute: str = ""
    fill_value: float | str | None = None
    scale: str = "none"
    encode: str = ""

    @property
    def onnx_type(self) -> Literal["FP32", "BYTES"]:
        """V2 datatype of this column's input in the exported model."""
        return "FP32" if self.type == "numeric" else "BYTES"


def column_plans(
    features: dict[str, FeatureSpec], preprocessing: Preprocessing, *, tree_model: bool
) -> list[ColumnPlan]:
    """Resolve per-feature settings against the per-type defaults, in feature order."""
    plans = []
    for name, spec in features.items():
        if spec.type == "numeric":
            d = preprocessing.numeric
            impute = spec.impute or d.impute
            fill = spec.fill_value if spec.fill_value is not None else d.fill_value
            scale = spec.scale or d.scale
            if scale == "auto":
                scale = "none" if tree_model else "standard"
            plans.append(ColumnPlan(name, "numeric", impute, float(fill), scale))
        elif spec.type == "categorical":
            c = preprocessing.categorical
            impute = spec.impute or c.impute
            fill = spec.fill_value if spec.fill_value is not None else c.fill_value
            plans.append(ColumnPlan(name, "categorical", impute, str(fill),
                                    encode=spec.encode or c.encode))
        else:
            plans.append(ColumnPlan(name, "text"))
    return plans
