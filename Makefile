# Two entry points (see README.md):  make serve  |  make test
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin

.PHONY: serve test lint install-serve install-dev bench demo-models

serve: install-serve  ## install shipyard[serve] and serve the built-in demo models
	$(BIN)/shipyard serve

test: install-dev  ## install everything the tests need, then lint, type-check and test
	$(BIN)/ruff check src tests benchmarks scripts
	$(BIN)/mypy src
	$(BIN)/pytest

bench: install-dev  ## speed measurements -> docs/benchmarks.md
	$(BIN)/python benchmarks/serve_bench.py

demo-models: install-dev  ## rebuild the committed demo ONNX models (needs torch for the CNN)
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/python scripts/make_demo_models.py

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

install-serve: $(BIN)/python
	$(BIN)/pip install -q -e '.[serve]'

install-dev: $(BIN)/python
	bash scripts/install_system_deps.sh
	$(BIN)/pip install -q -e '.[dev]'
