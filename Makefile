# Two commands for a newcomer: `make run` starts the daemon on ./var and ./definitions,
# `make test` runs lint, types and the tests. Both create .venv when it is missing.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint types unit bench check clean crash-long

$(STAMP): pyproject.toml
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

run: $(STAMP)
	mkdir -p var
	$(BIN)/tickd serve

check: $(STAMP)
	$(BIN)/tickd check

test: lint types unit

lint: $(STAMP)
	$(BIN)/ruff check daemon tests bench definitions
	$(BIN)/ruff format --check daemon tests bench definitions

types: $(STAMP)
	$(BIN)/mypy

unit: $(STAMP)
	$(BIN)/pytest -q

bench: $(STAMP)
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) var .mypy_cache .ruff_cache

# The long form of tests/torture/test_crash.py: 200 SIGKILLs of the real daemon under load.
crash-long: $(STAMP)
	$(BIN)/python -m bench.crash_long --kills 200
