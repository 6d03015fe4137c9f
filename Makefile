# `make demo` and `make test` each create .venv on first use and reinstall only when pyproject.toml changes.
SHELL := /bin/bash
.SHELLFLAGS := -o pipefail -ec
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test test-slow test-all golden bench clean

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q -e ".[dev]" 2>&1 | { grep -v "is ignored: it is neither" || true; }
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/flopcalc alexnet --input 3x224x224

test: $(STAMP)
	$(PY) -m pytest -q -m "not slow"

test-slow: $(STAMP)
	$(PY) -m pytest -q -m slow

test-all: $(STAMP)
	$(PY) -m pytest -q

golden: $(STAMP)
	$(PY) -m pytest -q tests/test_golden.py --update-golden

bench: $(STAMP)
	$(PY) bench/run.py
	$(PY) bench/startup.py

clean:
	rm -rf $(VENV) build *.egg-info
