# The README's two commands: `make run` and `make test`. Everything else is set up here.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: run test lint setup migrate system-deps browser-deps clean mutate

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
		{ echo "error: Python 3.11 or newer is needed ($(PYTHON) is $$($(PYTHON) --version))"; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

setup: $(STAMP) var/secret_key

# A random secret for this installation; never a shared default.
var/secret_key:
	@mkdir -p var
	@umask 077 && $(BIN)/python -c 'import secrets; print(secrets.token_urlsafe(50))' > var/secret_key

migrate: setup
	$(BIN)/python manage.py migrate --no-input -v 0

run: migrate
	$(BIN)/python manage.py collectstatic --no-input -v 0
	$(BIN)/python manage.py serve

# DCMTK's tools are independent DICOM peers in the tests.
system-deps:
	@if ! command -v findscu >/dev/null || ! command -v wlmscpfs >/dev/null || ! test -d /usr/share/doc/dcmtk/examples/wlistdb; then \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
			echo "Installing Debian's dcmtk for the tests"; \
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dcmtk >/dev/null; \
		else \
			echo "error: the tests need DCMTK. Install it with: sudo apt-get install dcmtk"; exit 1; \
		fi; \
	fi

# Debian's chromium runs the browser tests (Playwright drives it; its own browser
# download does not work here).
browser-deps:
	@if ! test -x /usr/bin/chromium; then \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
			echo "Installing Debian's chromium for the browser tests"; \
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
		else \
			echo "error: the browser tests need chromium. Install it with: sudo apt-get install chromium"; exit 1; \
		fi; \
	fi

test: migrate system-deps browser-deps
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy .
	$(BIN)/lint-imports --no-cache

# Mutation testing of the pure modules (docs/testing.md); not part of CI. CPU-heavy: one
# module at a time, one worker (MUTATE_JOBS); e.g. `make mutate MUTATE=mpps.rules`.
MUTATE ?= mpps.rules mpps.validation hl7v2.parser worklist.matching worklist.responses hl7v2.mapping
MUTATE_JOBS ?= 1
mutate: setup
	rm -rf mutants
	@for module in $(MUTATE); do \
		echo "=== mutmut: $$module"; \
		env -u DATABASE_URL -u CELERY_BROKER_URL SECRET_KEY=mutation-testing-only $(BIN)/mutmut run --max-children $(MUTATE_JOBS) "$$module.*" || exit 1; \
	done
	$(BIN)/mutmut results

clean:
	rm -rf $(VENV) var mutants
