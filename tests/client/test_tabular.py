"""A tabular model with one input per raw column (titanic, trained and published here with
the real training half), called with dicts of raw columns over REST and gRPC: the same
predictions on both, and the same labels and probabilities as the server's own /predict."""

from __future__ import annotations

import csv
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from cli_support import TITANIC, served_titanic
from conftest import ServerProcess

from shipyard.client import Client, InvalidArgument

COLUMNS = ["pclass", "sex", "age", "sibsp", "fare", "embarked"]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    _, proc = served_titanic(tmp_path_factory.mktemp("tabular"))
    yield proc
    proc.stop()


def passengers(n: int) -> list[dict[str, Any]]:
    """Raw rows of the CSV as a user has them (strings and numbers; a missing age is None)."""
    with TITANIC.open(newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))[::37][:n]
    return [{"pclass": int(r["pclass"]), "sex": r["sex"],
             "age": float(r["age"]) if r["age"] else None, "sibsp": int(r["sibsp"]),
             "fare": float(r["fare"]) if r["fare"] else None, "embarked": r["embarked"]}
            for r in rows]


def test_columns_in_labels_out_on_both_protocols(server: ServerProcess) -> None:
    rows = passengers(12)
    assert any(r["age"] is None for r in rows), "a missing value travels too"
    answers = {}
    for protocol, url in (("rest", f"http://{server.http_url}"),
                          ("grpc", f"grpc://{server.grpc_url}")):
        with Client(url) as client:
            info = client.model("titanic")
            assert info.kind == "columns" and [t.name for t in info.inputs] == COLUMNS
            as_rows = client.predict("titanic", rows)
            as_columns = client.predict("titanic", {c: [r[c] for r in rows] for c in COLUMNS})
            assert [p.to_dict() for p in as_rows] == [p.to_dict() for p in as_columns]
            answers[protocol] = [p.to_dict() for p in as_rows]
            with pytest.raises(InvalidArgument, match=r"missing column\(s\) \['fare'\]"):
                client.predict("titanic", [{c: v for c, v in rows[0].items() if c != "fare"}])
    assert answers["rest"] == answers["grpc"]
    route = httpx.post(f"http://{server.http_url}/v2/models/titanic/predict",
                       json={"features": rows}, timeout=30).json()
    ours = answers["rest"]
    assert [p["label"] for p in ours] == route["labels"]
    assert len({p["label"] for p in ours}) == 2, "both classes appear in these rows"
    for p in ours:
        probs = [prob for _, prob in p["labels"]]
        assert probs == sorted(probs, reverse=True) and abs(sum(probs) - 1) < 1e-4
    # the raw outputs are the model's own: its first output is /predict's result
    first = next(iter(ours[0]["outputs"]))
    assert [p["outputs"][first][0] for p in ours] == route["result"]


def test_a_wrongly_typed_column_is_refused_by_the_client(server: ServerProcess) -> None:
    rows = passengers(1)
    rows[0]["age"] = "old"
    with Client(f"http://{server.http_url}") as client, pytest.raises(
            InvalidArgument, match=r"column 'age'.*FP32"):
        client.predict("titanic", rows)
