# Every target works from a fresh clone: `make test` and `make demo` install what they need first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install test bench lint demo plan-example clean

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

test: $(STAMP)
	$(BIN)/ruff check batchkling tests
	$(BIN)/pytest -q

lint: $(STAMP)
	$(BIN)/ruff format --check batchkling tests
	$(BIN)/ruff check batchkling tests
	$(BIN)/mypy batchkling

bench: $(STAMP)
	$(BIN)/python -m tests.bench $(BENCH)

demo: $(STAMP)
	$(BIN)/python -m batchkling.demo

plan-example: $(STAMP)
	$(BIN)/batchkling validate manifests/storyboard.yaml
	$(BIN)/batchkling plan manifests/storyboard.yaml

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache build *.egg-info
