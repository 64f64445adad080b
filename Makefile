# Two entry points (see README.md):  make serve  |  make test
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin

DEMO_REPO := build/demo-repository

.PHONY: serve test lint go-client install-serve install-train install-dev bench demo-models demo-repository reference

serve: demo-repository  ## train the demo risk model from data, then serve the demo models
	$(BIN)/shipyard serve --model-repository $(DEMO_REPO)

# The demo repository of `make serve`: `risk` trained from scikit-learn's bundled breast-cancer
# data by examples/risk (seconds), `cnn`, `digits` and `sms` copied from the committed demo models.
demo-repository: $(DEMO_REPO)/risk/config.yaml

$(DEMO_REPO)/risk/config.yaml: examples/risk/experiment.yaml | install-train
	rm -rf $(DEMO_REPO) build/runs/risk
	mkdir -p $(DEMO_REPO)
	cp -r src/shipyard/demo/repository/cnn src/shipyard/demo/repository/digits \
		src/shipyard/demo/repository/sms $(DEMO_REPO)/
	$(BIN)/shipyard train examples/risk/experiment.yaml --output build/runs/risk
	$(BIN)/shipyard publish build/runs/risk --repo $(DEMO_REPO) --model risk

test: install-dev  ## install everything the tests need, then lint, type-check and test
	$(BIN)/ruff check src tests benchmarks scripts
	$(BIN)/mypy src
	$(BIN)/pytest

go-client:  ## build the Go client example (clients/go) into build/go/bin/shipyard-go
	bash clients/go/build.sh build/go

bench: install-dev  ## speed measurements -> docs/benchmarks.md (each command rewrites its own sections)
	bash scripts/install_system_deps.sh wrk
	$(BIN)/python benchmarks/serve_bench.py
	$(BIN)/python benchmarks/pipeline_bench.py
	$(BIN)/python benchmarks/pmml_bench.py
	$(BIN)/python benchmarks/torch_bench.py

reference: install-dev  ## regenerate docs/reference/*.md from the schemas (a test checks they are current)
	$(BIN)/python scripts/gen_reference.py

demo-models: install-dev  ## rebuild the committed demo ONNX models (needs torch for the CNN)
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/python scripts/make_demo_models.py

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

install-serve: $(BIN)/python
	$(BIN)/pip install -q -e '.[serve]'

install-train: $(BIN)/python
	$(BIN)/pip install -q -e '.[serve,train]'

install-dev: $(BIN)/python
	bash scripts/install_system_deps.sh
	$(BIN)/pip install -q -e '.[dev]'
