# Okyaku: the two commands are `make run` and `make test`; both set everything up first.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
BIN := $(VENV)/bin
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: setup run test lint typecheck unit bench clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

run: setup
	$(BIN)/okyaku dev

lint: setup
	$(BIN)/ruff check shared functions tests
	$(BIN)/ruff format --check shared functions tests

typecheck: setup
	$(BIN)/mypy shared/okyaku

test: lint typecheck
	$(BIN)/pytest

bench: setup
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) .okyaku .pytest_cache .mypy_cache .ruff_cache
