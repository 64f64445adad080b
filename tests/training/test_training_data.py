"""Loading, cleaning, the schema check and the preprocessing pipeline, on real data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from training_support import TITANIC

from shipyard.data.features import FeatureSpec, Preprocessing, column_plans
from shipyard.data.schema import infer_features, prepare_table
from shipyard.data.sources import load_table
from shipyard.data.tabular import build_preprocessor
from shipyard.errors import DataError

MISSING = ["", "NA", "?"]
TYPES = {"pclass": "categorical", "sex": "categorical", "age": "numeric", "embarked": "categorical"}


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_titanic_csv_is_cleaned_and_typed() -> None:
    table = load_table(str(TITANIC))
    assert table.kind == "csv" and len(table.frame) == 1309
    data = prepare_table(table, TYPES, "survived", "binary", missing_values=MISSING)
    assert list(data.X.columns) == list(TYPES)
    assert data.X["age"].dtype == np.float32
    assert int(data.X["age"].isna().sum()) == 263, "missing ages stay missing (NaN)"
    assert set(data.X["pclass"]) == {"1", "2", "3"}, "numeric categories without '.0'"
    assert (data.X["embarked"] == "").sum() == 2, "missing strings are ''"
    assert data.classes == [0, 1] and data.y is not None and data.y.dtype == np.int64


def test_strip_and_missing_markers(tmp_path: Path) -> None:
    csv = _write(tmp_path / "t.csv", "x,c,y\n 1.5 , a ,0\nNA,?,1\n?, b ,0\n2,  ,1\n")
    data = prepare_table(load_table(str(csv)), {"x": "numeric", "c": "categorical"}, "y",
                         "binary", missing_values=MISSING)
    assert data.X["x"].tolist()[0] == 1.5 and np.isnan(data.X["x"]).sum() == 2
    assert data.X["c"].tolist() == ["a", "", "b", ""]


def test_non_numeric_value_names_row_and_line(tmp_path: Path) -> None:
    csv = _write(tmp_path / "t.csv", "age,y\n3,0\n4,1\nfour,0\n5,1\nsix,1\n")
    with pytest.raises(DataError) as err:
        prepare_table(load_table(str(csv)), {"age": "numeric"}, "y", "binary",
                      missing_values=MISSING)
    assert err.value.message.startswith(
        "features.age: column 'age' is numeric but row 3 (line 4 of the file) holds 'four' and "
        "1 more row(s): row 5 (line 6 of the file); fix the data")


def test_missing_column_suggests_close_names() -> None:
    with pytest.raises(DataError, match=r"features.agee: column 'agee' is not in .*titanic3.csv; "
                       r"did you mean 'age'"):
        prepare_table(load_table(str(TITANIC)), {"agee": "numeric"}, "survived", "binary",
                      missing_values=MISSING)
    with pytest.raises(DataError, match=r"data\.target: column 'survive' is not in"):
        prepare_table(load_table(str(TITANIC)), {"age": "numeric"}, "survive", "binary",
                      missing_values=MISSING)


def test_empty_files(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="is empty; give a CSV with a header row"):
        load_table(str(_write(tmp_path / "empty.csv", "")))
    with pytest.raises(DataError, match=r"has a header \(2 columns\) but no rows"):
        load_table(str(_write(tmp_path / "header.csv", "a,b\n")))
    with pytest.raises(DataError, match="not found"):
        load_table("nope.csv", base_dir=tmp_path)


def test_target_class_checks(tmp_path: Path) -> None:
    one = _write(tmp_path / "one.csv", "x,y\n1,a\n2,a\n3,a\n")
    with pytest.raises(DataError, match=r"column 'y' has one class \('a'\) in all 3 rows"):
        prepare_table(load_table(str(one)), {"x": "numeric"}, "y", "binary",
                      missing_values=MISSING)
    three = _write(tmp_path / "three.csv", "x,y\n1,a\n2,b\n3,c\n")
    with pytest.raises(DataError, match=r"'binary' needs a target with 2 classes.*use task: "
                       "multiclass"):
        prepare_table(load_table(str(three)), {"x": "numeric"}, "y", "binary",
                      missing_values=MISSING)
    with pytest.raises(DataError, match="regression target must be a number"):
        prepare_table(load_table(str(three)), {"x": "numeric"}, "y", "regression",
                      missing_values=MISSING)


def test_parquet_matches_csv(tmp_path: Path) -> None:
    frame = pd.read_csv(TITANIC)
    frame.to_parquet(tmp_path / "t.parquet")
    parquet = load_table(str(tmp_path / "t.parquet"))
    assert parquet.kind == "parquet"
    a = prepare_table(parquet, TYPES, "survived", "binary", missing_values=MISSING)
    b = prepare_table(load_table(str(TITANIC)), TYPES, "survived", "binary",
                      missing_values=MISSING)
    pd.testing.assert_frame_equal(a.X, b.X)
    assert np.array_equal(a.y, b.y)


def test_sklearn_sources() -> None:
    table = load_table("sklearn:breast_cancer")
    assert table.frame.shape == (569, 31) and "mean_radius" in table.frame.columns
    assert table.class_names == {0: "malignant", 1: "benign"}
    features = infer_features(table, "target")
    assert len(features) == 30 and {f.type for f in features.values()} == {"numeric"}
    with pytest.raises(DataError, match=r"unknown scikit-learn data set 'boston'; bundled ones "
                       r"are \['breast_cancer'"):
        load_table("sklearn:boston")


def test_inferred_types_on_titanic() -> None:
    features = infer_features(load_table(str(TITANIC)), "survived", exclude=["name", "ticket"])
    assert features["age"].type == "numeric" and features["sex"].type == "categorical"
    assert "name" not in features and "survived" not in features


def test_preprocessor_imputes_per_column_and_handles_unknown_categories() -> None:
    data = prepare_table(load_table(str(TITANIC)), TYPES, "survived", "binary",
                         missing_values=MISSING)
    specs = {"age": FeatureSpec(type="numeric", impute="mean", scale="none"),
             "sex": FeatureSpec(type="categorical"),
             "embarked": FeatureSpec(type="categorical", encode="ordinal")}
    plans = column_plans(specs, Preprocessing(), tree_model=False)
    pre = build_preprocessor(plans).fit(data.X)
    out = pre.transform(pd.DataFrame({
        "age": np.array([np.nan, 30.0], np.float32),
        "sex": np.array(["female", "alien"], object),
        "embarked": np.array(["", "Mars"], object),
    }))
    names = list(pre.get_feature_names_out())
    assert out[0, names.index("numeric__age")] == pytest.approx(np.nanmean(data.X["age"]),
                                                                rel=1e-5)
    assert out[1, names.index("categorical__sex_female")] == 0
    assert out[1, names.index("categorical__sex_male")] == 0, "unknown category: all zeros"
    assert out[0, names.index("categorical2__embarked")] == 2, "'' imputed to 'S' (the mode)"
    assert out[1, names.index("categorical2__embarked")] == -1, "unknown category: -1"


def test_scale_auto_depends_on_the_model() -> None:
    specs = {"age": FeatureSpec(type="numeric")}
    assert column_plans(specs, Preprocessing(), tree_model=True)[0].scale == "none"
    assert column_plans(specs, Preprocessing(), tree_model=False)[0].scale == "standard"
