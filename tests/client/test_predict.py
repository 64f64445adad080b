"""``shipyard predict`` as a user runs it (subprocesses), on real data: the same answers from a
server and from the model loaded in-process (tabular: titanic trained tiny here; image: the
digits demo on MNIST PNGs; text: the sms demo on the SMS Spam Collection), every kind of input
and output, and a mistake as one line with exit status 2."""

from __future__ import annotations

import csv
import json
import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cli_support import TITANIC, one_error_line, served_titanic, shipyard
from conftest import DEMO_REPOSITORY, ROOT, SHARED, ServerProcess

MNIST = SHARED / "data" / "mnist_png" / "test"
SMS = SHARED / "data" / "sms_spam" / "SMSSpamCollection"
COLUMNS = ["pclass", "sex", "age", "sibsp", "fare", "embarked"]


def ok(result: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert result.returncode == 0, result.stderr
    return result


def jsonl(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


@pytest.fixture(scope="module")
def titanic(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, ServerProcess]]:
    """A titanic run trained tiny here, published into a repository a server serves."""
    run, server = served_titanic(tmp_path_factory.mktemp("titanic"))
    yield run, server
    server.stop()


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Unlabelled inputs as a user has them: passengers (CSV, Parquet, one bad row), 24 MNIST
    PNGs in digit folders (and a README), 40 SMS texts (with blank lines), risk features."""
    root = tmp_path_factory.mktemp("data")
    out: dict[str, Path] = {}
    with TITANIC.open(newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))[::41][:30]
    header = list(rows[0])
    out["passengers"] = root / "passengers.csv"
    with out["passengers"].open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, header)
        writer.writeheader()
        writer.writerows(rows)
    assert any(r["age"] == "" for r in rows), "a missing age travels too"
    bad = [dict(r) for r in rows[:5]]
    bad[2]["age"] = "about forty"
    out["bad"] = root / "bad.csv"
    with out["bad"].open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, header)
        writer.writeheader()
        writer.writerows(bad)
    out["no_fare"] = root / "no_fare.csv"
    with out["no_fare"].open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, [h for h in header if h != "fare"], extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    import pyarrow as pa
    import pyarrow.parquet as pq

    def number(v: str) -> float | None:
        return float(v) if v else None

    out["parquet"] = root / "passengers.parquet"
    pq.write_table(pa.table({
        "pclass": [int(r["pclass"]) for r in rows], "sex": [r["sex"] for r in rows],
        "age": [number(r["age"]) for r in rows], "sibsp": [int(r["sibsp"]) for r in rows],
        "fare": [number(r["fare"]) for r in rows], "embarked": [r["embarked"] for r in rows],
    }), out["parquet"])
    images = root / "images"
    for digit in ("3", "7"):
        (images / digit).mkdir(parents=True)
        for png in sorted((MNIST / digit).glob("*.png"))[:12]:
            shutil.copy(png, images / digit / png.name)
    (images / "README.md").write_text("not an image\n")
    out["images"] = images
    texts = [line.split("\t", 1)[1] for line in
             SMS.read_text(encoding="utf-8").splitlines()[::97][:40]]
    out["texts"] = root / "sms.txt"
    out["texts"].write_text("\n".join(texts[:20]) + "\n\n   \n" + "\n".join(texts[20:]) + "\n",
                            encoding="utf-8")
    from sklearn.datasets import load_breast_cancer

    cancer = load_breast_cancer()
    out["risk"] = root / "risk.csv"
    with out["risk"].open("w", newline="", encoding="utf-8") as fh:
        plain = csv.writer(fh)
        plain.writerow(cancer.feature_names)
        plain.writerows(cancer.data[::50].tolist())
    out["risk_bare"] = root / "risk_bare.csv"
    with out["risk_bare"].open("w", newline="", encoding="utf-8") as fh:
        csv.writer(fh).writerows(cancer.data[::50].tolist())
    return out


def test_tabular_in_process_equals_served(titanic: tuple[Path, ServerProcess],
                                          data: dict[str, Path], tmp_path: Path) -> None:
    run, server = titanic
    local = ok(shipyard("predict", str(run), "--data", str(data["passengers"]), "-q"))
    served = ok(shipyard("predict", f"http://{server.http_url}", "--data",
                         str(data["passengers"]), "-q"))
    over_grpc = ok(shipyard("predict", f"grpc://{server.grpc_url}", "--model", "titanic",
                            "--data", str(data["passengers"]), "-q"))
    records = jsonl(local.stdout)
    assert records == jsonl(served.stdout) == jsonl(over_grpc.stdout)
    assert [r["id"] for r in records] == list(range(1, 31))
    assert len({r["label"] for r in records}) == 2, "both classes appear in these rows"
    for r in records:
        assert set(r["labels"]) == {lab for lab in records[0]["labels"]}
        assert abs(sum(r["labels"].values()) - 1) < 1e-4
        assert r["probability"] == max(r["labels"].values())
    # Parquet: the same rows, typed, the same answers
    from_parquet = ok(shipyard("predict", str(run), "--data", str(data["parquet"]), "-q"))
    assert jsonl(from_parquet.stdout) == records
    # CSV out: id,label,probability,p_<class>... with the same numbers
    out = tmp_path / "out.csv"
    done = ok(shipyard("predict", f"http://{server.http_url}", "--data",
                       str(data["passengers"]), "-o", str(out)))
    assert "predicted 30 rows" in done.stderr and "note: " in done.stderr  # ignored columns
    table = read_csv(out)
    classes = sorted(records[0]["labels"])
    assert list(table[0]) == ["id", "label", "probability", *[f"p_{c}" for c in classes]]
    for row, r in zip(table, records, strict=True):
        assert row["label"] == r["label"] and float(row["probability"]) == r["probability"]
        assert all(float(row[f"p_{c}"]) == r["labels"][c] for c in classes)


def test_image_folder_in_process_equals_served(demo_server: ServerProcess,
                                               data: dict[str, Path], tmp_path: Path) -> None:
    local = ok(shipyard("predict", str(DEMO_REPOSITORY / "digits"), "--data",
                        str(data["images"]), "--batch-size", "5"))
    assert "note: skipped 1 file(s) that are not PNG/JPEG" in local.stderr
    served = ok(shipyard("predict", f"http://{demo_server.http_url}", "--model", "digits",
                         "--data", str(data["images"]), "-q"))
    records = jsonl(local.stdout)
    assert records == jsonl(served.stdout)
    assert [r["id"] for r in records] == sorted(f"{d}/{p.name}" for d in ("3", "7")
                                                for p in (data["images"] / d).iterdir())
    right = sum(r["label"] == r["id"][0] for r in records)
    assert right >= 21, f"the digits demo reads real MNIST digits: {right}/24"
    assert all(len(r["labels"]) == 3 for r in records)  # the model's own top_k step
    # CSV of a top-k model: label_2, probability_2, ...
    out = tmp_path / "digits.csv"
    ok(shipyard("predict", str(DEMO_REPOSITORY / "digits"), "--data", str(data["images"]),
                "-o", str(out), "-q"))
    table = read_csv(out)
    assert list(table[0]) == ["id", "label", "probability", "label_2", "probability_2",
                              "label_3", "probability_3"]
    assert [row["label"] for row in table] == [r["label"] for r in records]


def test_text_file_in_process_equals_served(demo_server: ServerProcess,
                                            data: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "sms.jsonl"
    ok(shipyard("predict", str(DEMO_REPOSITORY / "sms"), "--data", str(data["texts"]),
                "-o", str(out), "-q"))
    local = jsonl(out.read_text(encoding="utf-8"))
    served = jsonl(ok(shipyard("predict", f"grpc://{demo_server.grpc_url}", "--model", "sms",
                               "--data", str(data["texts"]), "-q")).stdout)
    assert local == served
    assert len(local) == 40 and [r["id"] for r in local][19:22] == [20, 23, 24]  # blank lines
    texts = [t for t in data["texts"].read_text(encoding="utf-8").splitlines() if t.strip()]
    truth = {line.split("\t", 1)[1]: line.split("\t", 1)[0] for line in
             SMS.read_text(encoding="utf-8").splitlines()}
    right = sum(r["label"] == truth[t] for r, t in zip(local, texts, strict=True))
    assert right >= 37, f"{right}/40 messages"


def test_rows_of_numbers_with_and_without_header(demo_server: ServerProcess,
                                                 data: dict[str, Path]) -> None:
    from shipyard.client import Client

    with_header = jsonl(ok(shipyard("predict", str(DEMO_REPOSITORY), "--model", "risk",
                                    "--data", str(data["risk"]), "-q")).stdout)
    bare = jsonl(ok(shipyard("predict", f"http://{demo_server.http_url}", "--model", "risk",
                             "--data", str(data["risk_bare"]), "-q")).stdout)
    assert with_header == bare and len(bare) == 12
    rows = [[float(v) for v in r] for r in csv.reader(data["risk_bare"].open())]
    with Client(f"http://{demo_server.http_url}") as client:
        scores = [p.value for p in client.predict("risk", rows)]
    assert [r["outputs"]["score"] for r in bare] == scores
    assert len({round(s) for s in scores}) == 2, "benign and malignant rows"


def test_a_bad_row_stops_or_is_recorded(titanic: tuple[Path, ServerProcess],
                                        data: dict[str, Path], tmp_path: Path) -> None:
    run, server = titanic
    for source in (str(run), f"http://{server.http_url}"):
        line = one_error_line(shipyard("predict", source, "--data", str(data["bad"]), "-q"))
        assert "row 3, column 'age'" in line and "'about forty'" in line
        assert "--skip-errors" in line
    out = tmp_path / "skipped.csv"
    done = ok(shipyard("predict", f"http://{server.http_url}", "--data", str(data["bad"]),
                       "--skip-errors", "-o", str(out)))
    assert "1 with errors" in done.stderr
    table = read_csv(out)
    assert [row["id"] for row in table] == ["1", "2", "3", "4", "5"]
    assert "column 'age'" in table[2]["error"] and table[2]["label"] == ""
    assert all(row["error"] == "" and row["label"] for i, row in enumerate(table) if i != 2)


def test_mistakes_are_one_line_and_exit_2(demo_server: ServerProcess, data: dict[str, Path],
                                          tmp_path: Path) -> None:
    url = f"http://{demo_server.http_url}"
    demo = str(DEMO_REPOSITORY)
    cases = {
        "not found": ("predict", demo, "--model", "risk", "--data", str(tmp_path / "x.csv")),
        "serves models": ("predict", url, "--data", str(data["risk"])),  # several models
        "unknown model 'nope'": ("predict", url, "--model", "nope", "--data",
                                 str(data["risk"])),
        "unknown model 'nope' in repository": ("predict", demo, "--model", "nope", "--data",
                                               str(data["risk"])),
        "is a text file": ("predict", url, "--model", "risk", "--data", str(data["texts"])),
        "is a folder": ("predict", demo, "--model", "sms", "--data", str(data["images"])),
        "cannot reach": ("predict", f"http://127.0.0.1:{_free_port()}", "--model", "risk",
                         "--data", str(data["risk"])),
        "no format for suffix": ("predict", demo, "--model", "risk", "--data",
                                 str(data["risk"]), "-o", str(tmp_path / "out.txt")),
        "neither a server URL": ("predict", str(tmp_path / "nothing"), "--data",
                                 str(data["risk"])),
        "invalid value for '--batch-size'": ("predict", demo, "--data", "x", "--batch-size",
                                             "0"),
    }
    for expected, args in cases.items():
        line = one_error_line(shipyard(*args))
        assert expected.lower() in line.lower(), (expected, line)


def test_a_csv_missing_a_column(titanic: tuple[Path, ServerProcess],
                                data: dict[str, Path]) -> None:
    run, server = titanic
    for source in (str(run), f"http://{server.http_url}"):
        line = one_error_line(shipyard("predict", source, "--data", str(data["no_fare"])))
        assert "no column(s) ['fare']" in line and "titanic" in line


def test_in_process_never_loads_a_frontend(data: dict[str, Path]) -> None:
    code = ("import sys; from pathlib import Path; from shipyard.predict import LocalModel; "
            f"m = LocalModel(Path({str(DEMO_REPOSITORY / 'sms')!r})); "
            "print(m.predict(['hello there'])[0].label); m.close(); "
            "print(sorted(k for k in sys.modules if k.startswith(('shipyard.serving.grpc', "
            "'shipyard.serving.http', 'shipyard.serving.server'))))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, env={**os.environ, "PYTHONPATH": str(ROOT / "src")})
    assert done.returncode == 0, done.stderr
    assert done.stdout.split("\n")[:2] == ["ham", "[]"]


def test_help_shows_defaults_and_flags() -> None:
    text = ok(shipyard("predict", "--help")).stdout
    for expected in ("--batch-size", "[default: 64;", "--skip-errors", "--format",
                     "<csv|jsonl>", "--quiet", "[default: JSON lines on stdout]"):
        assert expected in text, expected
    assert "--skip-errors <bool>" not in text and "--skip-errors BOOLEAN" not in text


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port
