"""PMML files from two producers, scored through the PMML runtime and compared with the
producing scikit-learn model's own predictions (exact labels, probabilities allclose where the
PMML carries them).

Model types: logistic and linear regression, a decision tree, a random forest, gradient
boosting, a neural network (MLPClassifier), SVMs (SVC with an RBF kernel, LinearSVC) and
Gaussian naive Bayes; nyoka exports all of them, the writer below the logistic regression, the
tree and the boosting.

Producers: nyoka (a pure-Python exporter) and this module's own PMML 4.4 writer (below), which
turns fitted scikit-learn estimators into RegressionModel / TreeModel / MiningModel documents.
sklearn2pmml, the usual second producer, refuses the scikit-learn installed here (its converter
supports scikit-learn <= 1.9.0), so the writer stands in for it.

Data: the Titanic passengers (/shared/data/titanic), a string categorical column (sex) and
missing values (age: 263 of 1309 rows, fare: 1), which every model imputes with the training
mean; in PMML that is the MiningField's missingValueReplacement, so the runtime gets the raw
rows, missing values as NaN.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from xml.sax.saxutils import quoteattr

import numpy as np
import pandas as pd
import pytest
from conftest import ROOT, SHARED
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import GradientBoostingClassifier, RandomForestClassifier
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.naive_bayes import GaussianNB
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import LabelEncoder, OneHotEncoder, StandardScaler
from sklearn.svm import SVC, LinearSVC
from sklearn.tree import DecisionTreeClassifier

from shipyard.serving.config import ModelConfig
from shipyard.serving.runtimes import Runtime, create_runtime

pytest.importorskip("jpmml_evaluator")

NUMERIC = ["pclass", "age", "fare"]
FEATURES = ["pclass", "sex", "age", "fare"]
_CSV = Path("data") / "titanic" / "titanic3.csv"
# a worktree (<root>/wt/<name>) has shared/ two levels up, a checkout one level up
TITANIC = next((p for p in (SHARED / _CSV, ROOT.parent.parent / "shared" / _CSV)
                if p.is_file()), SHARED / _CSV)


@pytest.fixture(scope="module")
def titanic() -> tuple[pd.DataFrame, pd.Series]:
    if not TITANIC.is_file():
        pytest.skip(f"{TITANIC} not found")
    df = pd.read_csv(TITANIC)
    x = df[FEATURES].copy()
    x["pclass"] = x["pclass"].astype(float)
    assert x["age"].isna().sum() > 200 and x["fare"].isna().sum() == 1
    return x, df["survived"]


def _runtime(folder: Path, pmml: Path | str) -> Runtime:
    folder.mkdir(parents=True, exist_ok=True)
    text = pmml.read_text() if isinstance(pmml, Path) else pmml
    (folder / "model.pmml").write_text(text)
    rt = create_runtime(folder, ModelConfig.model_validate({"name": "titanic"}))
    rt.load()
    return rt


def _score(rt: Runtime, x: pd.DataFrame) -> dict[str, np.ndarray]:
    inputs, outputs = rt.metadata()
    feed = {}
    for spec in inputs:
        assert spec.shape == (-1, 1), spec
        column = x[spec.name]
        feed[spec.name] = (column.astype(object).to_numpy() if spec.datatype == "BYTES"
                           else column.to_numpy(dtype={"FP64": np.float64, "FP32": np.float32,
                                                       "INT64": np.int64}[spec.datatype])
                           ).reshape(-1, 1)
    names = [o.name for o in outputs]
    got = rt.run(feed, names)
    assert all(a.shape == (len(x), 1) for a in got), [a.shape for a in got]
    return {name: a.reshape(-1) for name, a in zip(names, got, strict=True)}


def _compare(got: dict[str, np.ndarray], label: str, p1: str, model: Any,
             x: pd.DataFrame) -> None:
    want = model.predict(x)
    labels = got[label]
    assert labels.dtype == object or np.issubdtype(labels.dtype, np.integer), labels.dtype
    assert [int(v) for v in labels] == want.tolist(), "labels differ"
    np.testing.assert_allclose(got[p1], model.predict_proba(x)[:, 1], rtol=1e-9, atol=1e-12)


# -- nyoka ------------------------------------------------------------------------------------


class DataFrameMapper(TransformerMixin, BaseEstimator):  # type: ignore[misc]
    """Just enough of sklearn-pandas' DataFrameMapper (which no longer imports on scikit-learn
    1.9) for nyoka, which reads the column -> transformers list of a step of this class name to
    write the PMML's DataDictionary and preprocessing."""

    def __init__(self, features: list[tuple[Any, Any]]) -> None:
        self.features = features

    def _columns(self, x: pd.DataFrame, fit: bool) -> Iterator[np.ndarray]:
        for columns, steps in self.features:
            data = x[columns].to_numpy()
            for step in steps if isinstance(steps, list) else [steps] if steps else []:
                data = step.fit_transform(data) if fit else step.transform(data)
            yield np.asarray(data, dtype=np.float64).reshape(len(x), -1)

    def fit(self, x: pd.DataFrame, y: Any = None) -> DataFrameMapper:
        list(self._columns(x, fit=True))
        return self

    def transform(self, x: pd.DataFrame) -> np.ndarray:
        return np.hstack(list(self._columns(x, fit=False)))


NYOKA_MODELS = {
    "logistic": lambda: LogisticRegression(max_iter=2000),
    "tree": lambda: DecisionTreeClassifier(max_depth=5, random_state=0),
    "forest": lambda: RandomForestClassifier(n_estimators=15, max_depth=5, random_state=0),
    "boosting": lambda: GradientBoostingClassifier(n_estimators=25, max_depth=3,
                                                   random_state=0),
}


def _fix_nyoka(pmml: str) -> str:
    """nyoka 5.5.0 lists its derived fields (here ``labelEncoder(sex)``) as MiningFields of the
    segments of an ensemble, which PMML forbids (a MiningField names a field of the parent) and
    JPMML refuses ("not defined"); drop those MiningFields, the one fix made to its output
    besides the naive Bayes threshold (:func:`_fix_nyoka_bayes`)."""
    return re.sub(r'<MiningField name="labelEncoder\([^"]*\)"[^>]*/>', "", pmml)


def _fix_nyoka_bayes(pmml: str) -> str:
    """nyoka writes every NaiveBayesModel with ``threshold="0.001"``: in PMML a likelihood
    below the threshold is replaced by it (JPMML does so), which GaussianNB never does, so the
    two disagree on rows far from a class mean (3 of the 1309 labels here, probabilities up to
    0.64 apart). The smallest threshold PMML's double can say makes the PMML mean what the
    fitted GaussianNB means."""
    fixed = pmml.replace('threshold="0.001"', 'threshold="1e-300"')
    assert fixed.count('threshold="1e-300"') == 1, "nyoka's NaiveBayesModel changed"
    return fixed


@pytest.mark.parametrize("kind", sorted(NYOKA_MODELS))
def test_nyoka(kind: str, titanic: tuple[pd.DataFrame, pd.Series], tmp_path: Path) -> None:
    from nyoka import skl_to_pmml

    x, y = titanic
    mapper = DataFrameMapper([
        (["pclass"], None), (["age"], SimpleImputer()), (["fare"], SimpleImputer()),
        ("sex", LabelEncoder()),  # nyoka declares a LabelBinarizer's 0/1 column categorical,
    ])                            # which JPMML rightly refuses in comparisons
    model = Pipeline([("mapper", mapper), ("model", NYOKA_MODELS[kind]())]).fit(x, y)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # nyoka's own deprecation and future warnings
        skl_to_pmml(model, FEATURES, "survived", str(tmp_path / "nyoka.pmml"))
    pmml = _fix_nyoka((tmp_path / "nyoka.pmml").read_text())
    rt = _runtime(tmp_path / "1", pmml)
    inputs, _ = rt.metadata()
    assert {s.name: s.datatype for s in inputs} == {
        "pclass": "FP64", "sex": "BYTES", "age": "FP64", "fare": "FP64"}
    got = _score(rt, x)
    if kind != "boosting":
        _compare(got, "predicted_survived", "probability_1", model, x)
        return
    # nyoka puts the probability OutputFields of a boosted model on the outer modelChain
    # MiningModel, where JPMML gives 0.0 (this module's writer puts them on the last segment,
    # as JPMML-SkLearn does): labels are checked against scikit-learn, probabilities against
    # the reference evaluator itself
    assert [int(v) for v in got["predicted_survived"]] == model.predict(x).tolist()
    from jpmml_evaluator import make_evaluator

    reference = make_evaluator(pmml).evaluateAll(x)
    for name in ("probability_0", "probability_1"):
        np.testing.assert_array_equal(got[name], reference[name].to_numpy(float))


def _nyoka(model: Pipeline, features: list[str], target: str, folder: Path) -> str:
    from nyoka import skl_to_pmml

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # nyoka's own deprecation and future warnings
        skl_to_pmml(model, features, target, str(folder / "nyoka.pmml"))
    return _fix_nyoka((folder / "nyoka.pmml").read_text())


def _scaled_mapper() -> DataFrameMapper:
    """Mean-imputed, standardised numbers (what the network and the SVMs need to fit well)."""
    return DataFrameMapper([
        (["pclass"], None), (["age"], [SimpleImputer(), StandardScaler()]),
        (["fare"], [SimpleImputer(), StandardScaler()]), ("sex", LabelEncoder()),
    ])


MORE_NYOKA = {
    "mlp": lambda: MLPClassifier(hidden_layer_sizes=(8,), max_iter=2000, random_state=0),
    "svm_rbf": lambda: SVC(random_state=0),
    "linear_svm": lambda: LinearSVC(random_state=0),
    "naive_bayes": GaussianNB,
}


@pytest.mark.parametrize("kind", sorted(MORE_NYOKA))
def test_nyoka_more_model_types(kind: str, titanic: tuple[pd.DataFrame, pd.Series],
                                tmp_path: Path) -> None:
    """NeuralNetwork, SupportVectorMachineModel, RegressionModel (LinearSVC) and
    NaiveBayesModel documents from nyoka, on the raw rows (a string field, missing values)."""
    x, y = titanic
    model = Pipeline([("mapper", _scaled_mapper()), ("model", MORE_NYOKA[kind]())]).fit(x, y)
    pmml = _nyoka(model, FEATURES, "survived", tmp_path)
    kinds = {"mlp": "<NeuralNetwork", "svm_rbf": "<SupportVectorMachineModel",
             "linear_svm": "<RegressionModel", "naive_bayes": "<NaiveBayesModel"}
    assert kinds[kind] in pmml
    if kind == "naive_bayes":
        pmml = _fix_nyoka_bayes(pmml)
    rt = _runtime(tmp_path / "1", pmml)
    assert {s.name: s.datatype for s in rt.metadata()[0]}["sex"] == "BYTES"
    got = _score(rt, x)
    if kind in ("mlp", "naive_bayes"):
        _compare(got, "predicted_survived", "probability_1", model, x)
        return
    labels = model.predict(x)
    assert [int(v) for v in got["predicted_survived"]] == labels.tolist(), "labels differ"
    if kind == "linear_svm":
        # nyoka writes LinearSVC as a logit RegressionModel: its probability is the logistic
        # of scikit-learn's decision function (which has no predict_proba)
        from scipy.special import expit

        np.testing.assert_allclose(got["probability_1"], expit(model.decision_function(x)),
                                   rtol=1e-9, atol=1e-12)
    else:
        # a PMML SVM carries no probabilities (no Platt scaling): JPMML's are the one-against-
        # one votes, 0 or 1 for two classes
        np.testing.assert_array_equal(got["probability_1"], labels.astype(float))


def test_nyoka_linear_regression(titanic: tuple[pd.DataFrame, pd.Series],
                                 tmp_path: Path) -> None:
    """A regression task: the fare from class, sex and age (missing ages imputed)."""
    x, _ = titanic
    features = ["pclass", "sex", "age"]
    known = x[x["fare"].notna()]
    mapper = DataFrameMapper([(["pclass"], None), (["age"], SimpleImputer()),
                              ("sex", LabelEncoder())])
    model = Pipeline([("mapper", mapper), ("model", LinearRegression())]).fit(
        known[features], known["fare"])
    rt = _runtime(tmp_path / "1", _nyoka(model, features, "fare", tmp_path))
    inputs, outputs = rt.metadata()
    assert sorted(s.name for s in inputs) == sorted(features)
    # the target and nyoka's OutputField of the predicted value
    assert [(o.name, o.datatype) for o in outputs] == [("fare", "FP64"),
                                                       ("predicted_fare", "FP64")]
    got = _score(rt, x[features])
    want = model.predict(x[features])
    for name in ("fare", "predicted_fare"):
        np.testing.assert_allclose(got[name], want, rtol=1e-9, atol=1e-9)


# -- the hand-written PMML 4.4 writer ---------------------------------------------------------


def _pipeline(model: Any) -> Pipeline:
    return Pipeline([
        ("prep", ColumnTransformer([
            ("num", SimpleImputer(), NUMERIC),
            ("sex", OneHotEncoder(drop="if_binary"), ["sex"]),
        ])),
        ("model", model),
    ])


def _header(pipe: Pipeline, dtype: str) -> tuple[str, str, list[str]]:
    """DataDictionary, MiningSchema (with missingValueReplacement) and LocalTransformations of
    the pipeline's preprocessing; the model-level feature names in the model's column order."""
    prep = pipe.named_steps["prep"]
    imputer = prep.named_transformers_["num"]
    encoder = prep.named_transformers_["sex"]
    categories = list(encoder.categories_[0])
    kept = categories[1]  # drop="if_binary": one column, 1.0 for the second category
    fields = [f'<DataField name="{n}" optype="continuous" dataType="{dtype}"/>' for n in NUMERIC]
    values = "".join(f"<Value value={quoteattr(c)}/>" for c in categories)
    fields.append(f'<DataField name="sex" optype="categorical" dataType="string">{values}'
                  "</DataField>")
    fields.append('<DataField name="survived" optype="categorical" dataType="integer">'
                  '<Value value="0"/><Value value="1"/></DataField>')
    mining = [f'<MiningField name="{n}" missingValueReplacement="{v!r}"/>'
              for n, v in zip(NUMERIC, imputer.statistics_.tolist(), strict=True)]
    mining += ['<MiningField name="sex"/>',
               '<MiningField name="survived" usageType="target"/>']
    derived = (f'<LocalTransformations><DerivedField name="sex={kept}" optype="continuous" '
               f'dataType="double"><NormDiscrete field="sex" value={quoteattr(kept)}/>'
               "</DerivedField></LocalTransformations>")
    return ("<DataDictionary>" + "".join(fields) + "</DataDictionary>",
            "<MiningSchema>" + "".join(mining) + "</MiningSchema>" + derived,
            [*NUMERIC, f"sex={kept}"])


_PROBABILITIES = ("<Output>"
                  '<OutputField name="probability(0)" optype="continuous" dataType="double" '
                  'feature="probability" value="0"/>'
                  '<OutputField name="probability(1)" optype="continuous" dataType="double" '
                  'feature="probability" value="1"/></Output>')
_HEAD = ('<?xml version="1.0" encoding="UTF-8"?>'
         '<PMML xmlns="http://www.dmg.org/PMML-4_4" version="4.4"><Header/>')


def write_logistic(pipe: Pipeline) -> str:
    lr: LogisticRegression = pipe.named_steps["model"]
    data, mining, names = _header(pipe, "double")
    predictors = "".join(f'<NumericPredictor name={quoteattr(n)} coefficient="{c!r}"/>'
                         for n, c in zip(names, lr.coef_[0].tolist(), strict=True))
    return (f'{_HEAD}{data}<RegressionModel functionName="classification" '
            f'normalizationMethod="logit">{mining}{_PROBABILITIES}'
            f'<RegressionTable intercept="{lr.intercept_[0].item()!r}" targetCategory="1">'
            f'{predictors}</RegressionTable>'
            '<RegressionTable intercept="0" targetCategory="0"/></RegressionModel></PMML>')


def _nodes(tree: Any, names: list[str], node: int, leaf: Any, predicate: str = "<True/>"
           ) -> str:
    """A scikit-learn tree as nested PMML Nodes (left: value <= threshold); ``leaf(value)``
    gives a node's score attribute and inner elements (every node has a score)."""
    attributes, inner = leaf(tree.value[node])
    left, right = tree.children_left[node], tree.children_right[node]
    if left != -1:
        field, threshold = quoteattr(names[tree.feature[node]]), tree.threshold[node].item()
        inner = "".join(
            _nodes(tree, names, child, leaf,
                   f'<SimplePredicate field={field} operator="{op}" value="{threshold!r}"/>')
            for child, op in ((left, "lessOrEqual"), (right, "greaterThan")))
    return f"<Node {attributes}>{predicate}{inner}</Node>"


def _class_leaf(value: Any) -> tuple[str, str]:
    p = (value[0] / value[0].sum()).tolist()
    return (f'score="{int(np.argmax(p))}"',
            f'<ScoreDistribution value="0" recordCount="{p[0]!r}" probability="{p[0]!r}"/>'
            f'<ScoreDistribution value="1" recordCount="{p[1]!r}" probability="{p[1]!r}"/>')


def write_tree(pipe: Pipeline) -> str:
    tree = pipe.named_steps["model"].tree_
    data, mining, names = _header(pipe, "float")  # scikit-learn trees compare float32 values
    body = _nodes(tree, names, 0, _class_leaf)
    return (f'{_HEAD}{data}<TreeModel functionName="classification" splitCharacteristic='
            f'"binarySplit" noTrueChildStrategy="returnLastPrediction">{mining}'
            f'{_PROBABILITIES}{body}</TreeModel></PMML>')


def write_boosting(pipe: Pipeline) -> str:
    """Binary GradientBoostingClassifier: the log-odds are prior + learning_rate x the sum of
    the regression trees; the logit of the second segment turns them into probabilities."""
    gb: GradientBoostingClassifier = pipe.named_steps["model"]
    data, mining, names = _header(pipe, "float")
    prior = gb.init_.class_prior_[1]
    rate = gb.learning_rate

    def leaf(value: Any) -> tuple[str, str]:
        return f'score="{value[0][0].item() * rate!r}"', ""

    inner_mining = mining.replace('<MiningField name="survived" usageType="target"/>', "")
    trees = "".join(
        f'<Segment id="{i + 1}"><True/><TreeModel functionName="regression" '
        f'splitCharacteristic="binarySplit" noTrueChildStrategy="returnLastPrediction">'
        f"{inner_mining}{_nodes(est.tree_, names, 0, leaf)}</TreeModel></Segment>"
        for i, est in enumerate(gb.estimators_[:, 0]))
    log_odds = np.log(prior / (1 - prior)).item()
    fields_only = mining.split("<LocalTransformations>")[0]
    return (
        f'{_HEAD}{data}<MiningModel functionName="classification">{fields_only}'
        '<Segmentation multipleModelMethod="modelChain">'
        f'<Segment id="sum"><True/><MiningModel functionName="regression">{inner_mining}'
        '<Output><OutputField name="log_odds" optype="continuous" dataType="double" '
        'feature="predictedValue" isFinalResult="false"/></Output>'
        f'<Targets><Target rescaleConstant="{log_odds!r}"/></Targets>'
        f'<Segmentation multipleModelMethod="sum">{trees}</Segmentation></MiningModel>'
        '</Segment><Segment id="logit"><True/><RegressionModel functionName="classification" '
        'normalizationMethod="logit"><MiningSchema><MiningField name="log_odds"/>'
        f'<MiningField name="survived" usageType="target"/></MiningSchema>{_PROBABILITIES}'
        '<RegressionTable intercept="0" targetCategory="1">'
        '<NumericPredictor name="log_odds" coefficient="1"/></RegressionTable>'
        '<RegressionTable intercept="0" targetCategory="0"/></RegressionModel></Segment>'
        "</Segmentation></MiningModel></PMML>")


WRITTEN = {
    "logistic": (lambda: LogisticRegression(max_iter=2000), write_logistic),
    "tree": (lambda: DecisionTreeClassifier(max_depth=5, random_state=0), write_tree),
    "boosting": (lambda: GradientBoostingClassifier(n_estimators=25, max_depth=3,
                                                    random_state=0), write_boosting),
}


@pytest.mark.parametrize("kind", sorted(WRITTEN))
def test_written(kind: str, titanic: tuple[pd.DataFrame, pd.Series], tmp_path: Path) -> None:
    x, y = titanic
    make, write = WRITTEN[kind]
    pipe = _pipeline(make()).fit(x, y)
    rt = _runtime(tmp_path / "1", write(pipe))
    inputs, outputs = rt.metadata()
    assert [o.name for o in outputs] == ["survived", "probability(0)", "probability(1)"]
    assert {o.name: o.datatype for o in outputs}["survived"] == "INT64"
    assert {s.name: s.datatype for s in inputs}["sex"] == "BYTES"
    _compare(_score(rt, x), "survived", "probability(1)", pipe, x)
