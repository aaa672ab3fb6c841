# rexbench: `make demo` and `make test` bootstrap .venv, install the project, then run.
PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
EXTRAS ?= dev,transformers,distributed
# pins of the evidence run's environment (a --resume across sessions needs the same versions); empty: newest
CONSTRAINTS ?= constraints.txt
PY := $(VENV)/bin/python
STAMP := $(VENV)/.rexbench-installed
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

.PHONY: install demo test test-slow bench bench-baseline bench-compare bench-scale bench-transformers suite clean

$(STAMP): pyproject.toml Makefile $(CONSTRAINTS)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q "$(TORCH_SPEC)"
	$(PY) -m pip install -q $(if $(CONSTRAINTS),-c $(CONSTRAINTS)) -e ".[$(EXTRAS)]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/rexbench run suites/quick.toml --out results/quick --overwrite
	$(VENV)/bin/rexbench report results/quick --out results/quick/RESULTS.md

suite: $(STAMP)
	$(VENV)/bin/rexbench run suites/$(SUITE).toml --out results/$(SUITE) $(ARGS)
	$(VENV)/bin/rexbench report results/$(SUITE) --out RESULTS.md

test: $(STAMP)
	$(PY) -m pytest -q

test-slow: $(STAMP)
	$(PY) -m pytest -q -m slow

# Attribution-speed benchmarks (pytest-benchmark). BENCH_DEVICE=cuda on a GPU.
BENCH_DEVICE ?= cpu
BENCH_ARGS ?=
BENCH_FAIL ?= median:50%
BENCH := REXBENCH_BENCH_DEVICE=$(BENCH_DEVICE) $(PY) -m pytest tests/benchmarks -q -o addopts="" --benchmark-only \
	--benchmark-storage=file://benchmarks --benchmark-columns=min,median,max,rounds $(BENCH_ARGS)

bench: $(STAMP)
	$(BENCH) --benchmark-json=benchmarks/latest.json

bench-baseline: $(STAMP)
	rm -f benchmarks/0001_baseline.json
	$(BENCH) --benchmark-json=benchmarks/0001_baseline.json

# Scaling (issue 12): quick suite on 1 vs 2 workers, cross-pair batching; the JSON is read by `rexbench report`
SCALE_OUT ?= results/cranfield/scaling_$(BENCH_DEVICE).json
bench-scale: $(STAMP)
	$(BENCH) -k "workers or cross_pair" --benchmark-json=$(SCALE_OUT)

# Full-size transformer shards (issue 12): suites/cranfield_gpu.toml (IG 50 steps, Shapley 25, KernelSHAP/LIME
# 200) on TQUERIES queries with WORKERS workers; its shard timings -> RESULTS.md "Scaling" (with projections).
# The run directory is scratch (replaced on every call).
WORKERS ?= 2
TQUERIES ?= 1
TRUN := results/bench_transformers_$(BENCH_DEVICE)
bench-transformers: $(STAMP)
	$(VENV)/bin/rexbench run suites/cranfield_gpu.toml --device $(BENCH_DEVICE) --workers $(WORKERS) \
		--limit $(TQUERIES) --out $(TRUN) --overwrite --quiet
	$(PY) -m suites.report.scaling $(TRUN) --out results/cranfield/scaling_transformers_$(BENCH_DEVICE).json

bench-compare: $(STAMP)
	$(BENCH) --benchmark-compare=0001 --benchmark-compare-fail=$(BENCH_FAIL)

clean:
	rm -rf $(VENV) results/quick .pytest_cache
