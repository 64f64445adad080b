"""The preprocessing half of a tabular pipeline: one scikit-learn ColumnTransformer.

Columns with the same settings share one transformer (imputer -> scaler or encoder); each text
column gets its own TF-IDF vectoriser. Every step is one that skl2onnx converts, so the fitted
pipeline exports to a single ONNX graph whose inputs are the raw columns.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sklearn.compose import ColumnTransformer
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import (
    MinMaxScaler,
    OneHotEncoder,
    OrdinalEncoder,
    RobustScaler,
    StandardScaler,
)

from shipyard.data.cleaning import MISSING_STRING
from shipyard.data.features import ColumnPlan, TextDefaults

__all__ = ["build_preprocessor", "output_feature_names"]

_SCALERS: dict[str, type[Any]] = {
    "standard": StandardScaler,
    "minmax": MinMaxScaler,
    "robust": RobustScaler,
}


def _numeric(plan: ColumnPlan) -> Pipeline:
    if plan.impute == "constant":
        imputer = SimpleImputer(strategy="constant", fill_value=plan.fill_value)
    else:
        imputer = SimpleImputer(strategy=plan.impute)
    steps: list[tuple[str, Any]] = [("impute", imputer)]
    if plan.scale != "none":
        steps.append(("scale", _SCALERS[plan.scale]()))
    return Pipeline(steps)


def _categorical(plan: ColumnPlan) -> Pipeline:
    steps: list[tuple[str, Any]] = []
    if plan.impute == "most_frequent":
        steps.append(("impute", SimpleImputer(strategy="most_frequent",
                                              missing_values=MISSING_STRING)))
    elif plan.impute == "constant":
        steps.append(("impute", SimpleImputer(strategy="constant", missing_values=MISSING_STRING,
                                              fill_value=plan.fill_value)))
    if plan.encode == "ordinal":
        encoder: Any = OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=-1)
    else:
        encoder = OneHotEncoder(handle_unknown="ignore", sparse_output=False)
    steps.append(("encode", encoder))
    return Pipeline(steps)


def _text(options: TextDefaults) -> TfidfVectorizer:
    return TfidfVectorizer(
        max_features=options.max_features,
        ngram_range=(1, options.ngram_max),
        lowercase=options.lowercase,
        min_df=options.min_df,
    )


def build_preprocessor(
    plans: Sequence[ColumnPlan], *, text: TextDefaults | None = None, n_jobs: int | None = 1
) -> ColumnTransformer:
    """An unfitted ColumnTransformer for ``plans`` (input: a DataFrame with those columns)."""
    groups: dict[tuple[Any, ...], list[str]] = {}
    transformers: list[tuple[str, Any, Any]] = []
    for plan in plans:
        if plan.type == "text":
            transformers.append((f"text_{plan.name}", _text(text or TextDefaults()), plan.name))
            continue
        key = (plan.type, plan.impute, plan.fill_value, plan.scale, plan.encode)
        groups.setdefault(key, []).append(plan.name)
    by_name = {p.name: p for p in plans}
    counts: dict[str, int] = {}
    grouped = []
    for key, names in groups.items():
        kind = key[0]
        counts[kind] = counts.get(kind, 0) + 1
        label = kind if counts[kind] == 1 else f"{kind}{counts[kind]}"
        step = _numeric(by_name[names[0]]) if kind == "numeric" else _categorical(by_name[names[0]])
        grouped.append((label, step, names))
    return ColumnTransformer(
        grouped + transformers, remainder="drop", sparse_threshold=0.0, n_jobs=n_jobs,
    )


def output_feature_names(preprocessor: ColumnTransformer) -> list[str]:
    """Output columns of the fitted transformer: ``numeric__age``, ``categorical__sex_male``..."""
    return [str(n) for n in preprocessor.get_feature_names_out()]
