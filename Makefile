# rexbench: `make demo` and `make test` bootstrap .venv, install the project, then run.
PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
EXTRAS ?= dev,transformers
PY := $(VENV)/bin/python
STAMP := $(VENV)/.rexbench-installed
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

.PHONY: install demo test test-slow bench bench-compare suite clean

$(STAMP): pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q "$(TORCH_SPEC)"
	$(PY) -m pip install -q -e ".[$(EXTRAS)]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/rexbench run suites/quick.toml --out results/quick
	$(VENV)/bin/rexbench report results/quick --out RESULTS.md

suite: $(STAMP)
	$(VENV)/bin/rexbench run suites/$(SUITE).toml --out results/$(SUITE) $(ARGS)
	$(VENV)/bin/rexbench report results/$(SUITE) --out RESULTS.md

test: $(STAMP)
	$(PY) -m pytest -q

test-slow: $(STAMP)
	$(PY) -m pytest -q -m slow

clean:
	rm -rf $(VENV) results/quick .pytest_cache
