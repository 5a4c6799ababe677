# MailFlow developer commands. `make run` and `make test` work on a fresh Debian/Ubuntu machine.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
DEV_CONFIG := installer/dev.toml
DEV_KEY := var/keys/master.key
PYTEST_ARGS ?=

.PHONY: help run test venv system-deps bench clean

help:
	@echo "make run    set up .venv, a development key and database, and start MailFlow on http://127.0.0.1:8025"
	@echo "make test   install test dependencies (pip + Debian packages) and run the whole test suite"
	@echo "make bench  run the benchmarks in bench/"

$(VENV)/.installed: pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "python3 is missing: apt-get install python3 python3-venv"; exit 1; }
	@$(PYTHON) -m venv $(VENV) || { echo "could not create $(VENV): apt-get install python3-venv"; exit 1; }
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	@touch $@

venv: $(VENV)/.installed

# The development master key lives in var/keys/, apart from the data in var/data/.
$(DEV_KEY): | $(VENV)/.installed
	$(VENV)/bin/mailflow keygen $(DEV_KEY)

run: venv $(DEV_KEY)
	MAILFLOW_CONFIG=$(DEV_CONFIG) $(VENV)/bin/mailflow migrate
	MAILFLOW_CONFIG=$(DEV_CONFIG) exec $(VENV)/bin/mailflow serve

system-deps:
	@bash tests/install-system-deps.sh

# A fixed hash seed: the API fuzzing (tests/test_schemathesis.py) then generates the same cases
# in every run, so CI and a developer's machine see the same ones.
test: venv system-deps
	PYTHONHASHSEED=0 $(PY) -m pytest $(PYTEST_ARGS)

bench: venv
	@for b in bench/bench_*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache
