"""The models an experiment can name, and how each becomes a scikit-learn estimator.

``model.type`` picks a row of :data:`MODELS`; ``model.params`` are passed to the estimator's
constructor and checked against its ``get_params()`` before anything is fitted.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any

from shipyard.errors import ConfigError

__all__ = ["MODELS", "ModelInfo", "build_estimator", "models_for_task"]


@dataclass(frozen=True)
class ModelInfo:
    """One model type: its estimators per task and what the trainer needs to know."""

    regressor: str | None
    """Dotted path of the regression estimator (None: no regression)."""
    classifier: str | None
    """Dotted path of the classification estimator (None: no classification)."""
    tree: bool = False
    """A tree ensemble: numeric scaling defaults to none."""
    epochs_param: str | None = None
    """Constructor parameter that ``training.epochs`` sets (None: epochs do not apply)."""
    exportable: bool = True
    """skl2onnx can convert it."""
    summary: str = ""
    """One line for the report."""


MODELS: dict[str, ModelInfo] = {
    "linear_regression": ModelInfo(
        "sklearn.linear_model.LinearRegression", None,
        summary="ordinary least squares, y = w.x + b"),
    "ridge": ModelInfo(
        "sklearn.linear_model.Ridge", None, summary="least squares with an L2 penalty (alpha)"),
    "logistic_regression": ModelInfo(
        None, "sklearn.linear_model.LogisticRegression",
        summary="logistic regression (L2 penalty, C = 1/strength)"),
    "random_forest": ModelInfo(
        "sklearn.ensemble.RandomForestRegressor", "sklearn.ensemble.RandomForestClassifier",
        tree=True, summary="random forest of decision trees"),
    "gradient_boosting": ModelInfo(
        "sklearn.ensemble.GradientBoostingRegressor",
        "sklearn.ensemble.GradientBoostingClassifier",
        tree=True, summary="gradient-boosted decision trees"),
    "hist_gradient_boosting": ModelInfo(
        "sklearn.ensemble.HistGradientBoostingRegressor",
        "sklearn.ensemble.HistGradientBoostingClassifier",
        tree=True, epochs_param="max_iter", exportable=False,
        summary="histogram gradient boosting (fast; skl2onnx cannot export it yet)"),
    "mlp": ModelInfo(
        "sklearn.neural_network.MLPRegressor", "sklearn.neural_network.MLPClassifier",
        epochs_param="max_iter", summary="multi-layer perceptron (Adam)"),
}


def models_for_task(task: str) -> list[str]:
    """Model types that support ``task``."""
    if task == "regression":
        return [name for name, info in MODELS.items() if info.regressor]
    return [name for name, info in MODELS.items() if info.classifier]


def _estimator_class(model_type: str, task: str) -> type[Any]:
    info = MODELS.get(model_type)
    if info is None:
        raise ConfigError(f"model.type: unknown model {model_type!r}; allowed: {list(MODELS)}")
    path = info.regressor if task == "regression" else info.classifier
    if path is None:
        raise ConfigError(
            f"model.type: {model_type!r} does not support task {task!r}; models for {task}: "
            f"{models_for_task(task)}"
        )
    module, _, name = path.rpartition(".")
    cls: type[Any] = getattr(importlib.import_module(module), name)
    return cls


def build_estimator(
    model_type: str,
    params: dict[str, Any],
    task: str,
    *,
    seed: int,
    epochs: int | None = None,
    n_jobs: int | None = None,
) -> Any:
    """An unfitted estimator; unknown parameters raise ConfigError listing the allowed ones."""
    cls = _estimator_class(model_type, task)
    allowed = cls().get_params()
    unknown = [k for k in params if k not in allowed]
    if unknown:
        raise ConfigError(
            f"model.params: {unknown} not parameter(s) of {model_type} ({cls.__name__}); "
            f"allowed: {sorted(allowed)}"
        )
    kwargs = dict(params)
    info = MODELS[model_type]
    if epochs is not None:
        if info.epochs_param is None:
            raise ConfigError(
                f"training.epochs: model {model_type!r} does not train in epochs; remove "
                f"training.epochs (epochs apply to "
                f"{[n for n, i in MODELS.items() if i.epochs_param]})"
            )
        if info.epochs_param in params:
            raise ConfigError(
                f"training.epochs and model.params.{info.epochs_param} both set the number of "
                f"epochs of {model_type}; keep one"
            )
        kwargs[info.epochs_param] = epochs
    if "random_state" in allowed and "random_state" not in params:
        kwargs["random_state"] = seed
    if n_jobs is not None and "n_jobs" in allowed and "n_jobs" not in params:
        kwargs["n_jobs"] = n_jobs
    try:
        estimator = cls(**kwargs)
        # scikit-learn validates parameter types and ranges at fit time; check them now.
        validate = getattr(estimator, "_validate_params", None)
        if validate is not None:
            validate()
    except (TypeError, ValueError) as exc:
        raise ConfigError(
            f"model.params: invalid for {model_type} ({cls.__name__}): {exc}"
        ) from exc
    return estimator
