"""Fixed Cranfield inputs for the attribution-speed benchmarks (`make bench`).

REXBENCH_BENCH_DEVICE=cuda runs them on a GPU. REXBENCH_BENCH_SLOWDOWN=SECONDS
is a test-only flag that sleeps inside every benchmarked call, to check that
`make bench-compare` fails on a regression.
"""
import os
import time

import pytest
import torch

DEVICE = os.environ.get("REXBENCH_BENCH_DEVICE", "cpu")
SLOWDOWN = float(os.environ.get("REXBENCH_BENCH_SLOWDOWN", "0"))
RANKERS = ["bm25", "knrm", "matchpyramid", "biencoder", "crossencoder"]
# cheaper settings on transformers, so one benchmark stays in seconds on a CPU
TRANSFORMER_PARAMS = {"kernel_shap": {"n_samples": 50}, "lime": {"n_samples": 50}, "shapley_sampling": {"n_samples": 2},
                      "integrated_gradients": {"n_steps": 20}}


@pytest.fixture(scope="session")
def cran():
    from suites.data.collections import load_collection
    return load_collection("cranfield")


class _Lazy(dict):
    def __init__(self, cran):
        super().__init__()
        self.cran = cran

    def __missing__(self, name):
        from rankers.training import build_ranker
        torch.manual_seed(0)
        self[name] = build_ranker(name, self.cran, seed=0).to(DEVICE).eval()
        return self[name]


@pytest.fixture(scope="session")
def bench_rankers(cran):
    """Rankers built on first use. Untrained weights are enough for timing (same architecture, same inputs)."""
    return _Lazy(cran)


@pytest.fixture(scope="session")
def bench_pair(cran):
    """Cranfield query 1 and its first judged-relevant document (original text; each ranker splits it)."""
    d = sorted(cran.relevant("1"), key=int)[0]
    return cran.queries["1"], cran.docs[d]


def run(benchmark, fn, rounds=5):
    """Benchmark `fn` (with the test-only slowdown and CUDA synchronisation)."""
    def call():
        out = fn()
        if SLOWDOWN:
            time.sleep(SLOWDOWN)
        if DEVICE.startswith("cuda"):
            torch.cuda.synchronize()
        return out
    benchmark.extra_info["device"] = DEVICE
    return benchmark.pedantic(call, rounds=rounds, iterations=1, warmup_rounds=1)
