# Everyday commands; each runs the tools of the project's virtualenv (make setup makes it).
VENV ?= .venv
BIN := $(VENV)/bin
PYTEST := $(BIN)/python -m pytest -q -p no:cacheprovider

.PHONY: setup check lint format-check types contracts test-fast test snapshot-update

setup:  ## the virtualenv with every extra (the local and huawei backends, the test and lint tools)
	python3 -m venv $(VENV)
	$(BIN)/pip install -e '.[dev]'

check: lint format-check types contracts  ## everything CI checks except the tests

lint:
	$(BIN)/ruff check .

format-check:
	$(BIN)/ruff format --check .

types:
	$(BIN)/mypy

contracts:  ## the layer contracts of pyproject.toml's [tool.importlinter]
	$(BIN)/lint-imports --no-cache

test-fast:  ## unit, console and gateway tests: no end-to-end, reliability, provider or trainer runs
	$(PYTEST) -m "not e2e and not slow" tests/unit tests/ui tests/serving

test:  ## the README's test command, as CI runs it
	$(BIN)/python -m pytest -q

snapshot-update:  ## rewrite the console's SVG snapshots after a deliberate change of the screens
	$(PYTEST) tests/ui/test_snapshots.py --snapshot-update
