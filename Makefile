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

# mypy finds packages on disk, not through the editable install's import hook, so it reads
# the folders through a `qwarden/` tree of links (the installed import name).
LINKS := $(VENV)/links

lint: install
	$(VENV)/bin/ruff check core tui tests bench
	mkdir -p $(LINKS)/qwarden
	for d in core tui themes; do ln -sfn ../../../$$d $(LINKS)/qwarden/$$d; done
	MYPYPATH=$(LINKS) $(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

screenshots: install
	$(PY) -m pytest -q tests/test_tui_snapshots.py --snapshot-update

soak: install
	$(PY) -m qwarden.core.actions.soak 1000

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache *.egg-info
