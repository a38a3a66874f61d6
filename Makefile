# qwarden — every target installs what it needs first (a fresh machine has only Python 3.11).
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: install demo test bench lint screenshots soak clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: install
	$(VENV)/bin/qwarden demo

test: install
	$(PY) -m pytest -q

bench: install
	$(PY) bench/run.py

lint: install
	$(VENV)/bin/ruff check core tui tests bench
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

screenshots: install
	$(PY) -m pytest -q tests/test_tui_snapshots.py --snapshot-update

soak: install
	$(PY) -m core.actions.soak 1000

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache *.egg-info
