# csat — the two commands a newcomer needs on a fresh Debian bookworm machine (as root):
#   make demo    a local call centre with simulated calls (CALLS=12 ONCE=1 to run once and exit)
#   make test    lint + the whole test suite (unit, storage on SQLite+PostgreSQL, real Asterisk calls)
PYTHON ?= python3
VENV   := .venv
CALLS  ?= 30
ONCE   ?=

.PHONY: demo test install system-deps venv lint bench

install: system-deps venv

system-deps:
	bash scripts/install-system-deps.sh

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -e '.[dev]'
	touch $@

demo: install
	$(VENV)/bin/csat demo --calls $(CALLS) $(if $(ONCE),--once,)

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

test: install lint
	$(VENV)/bin/pytest -q -rs

bench: install
	$(VENV)/bin/python bench/ami_ingest.py
	$(VENV)/bin/python bench/dead_air.py
	$(VENV)/bin/python bench/load.py
	$(VENV)/bin/python bench/rollups.py
