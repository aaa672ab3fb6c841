"""Scaling benchmarks (`make bench-scale`): the quick suite on 1 vs 2 workers, and cross-pair
batching of metric rows on a transformer vs one pair at a time. Ratios go to RESULTS.md
(`rexbench report` reads the JSON this writes next to the run)."""
import itertools

import numpy as np
import pytest

from explainers import build_explainer, make_pair
from metrics import MetricContext, compute_metrics, compute_metrics_many

from .conftest import DEVICE, run

_count = itertools.count()


@pytest.fixture(scope="module")
def quick_suite():
    """The bundled quick suite, its rankers trained once before timing (training is not what is measured)."""
    from suites.data.collections import load_collection
    from suites.run.config import load_suite
    from suites.listing import SUITES_DIR
    from rankers.training import get_ranker
    cfg = load_suite(SUITES_DIR / "quick.toml")
    coll = load_collection(cfg.collection)
    for r in cfg.rankers:
        get_ranker(cfg.ranker_type(r), coll, cfg.seed, progress=False, config=cfg.ranker_config(r))
    return cfg


@pytest.mark.parametrize("workers", [1, 2])
def test_quick_suite_workers(benchmark, workers, quick_suite, tmp_path):
    from suites.run.runner import run_suite
    benchmark.extra_info.update(workers=workers, suite="quick", rankers=len(quick_suite.rankers),
                                explainers=len(quick_suite.explainers), queries=quick_suite.queries)
    out = benchmark.pedantic(lambda: run_suite(quick_suite, tmp_path / f"run{next(_count)}", progress=False,
                                               workers=workers, device=DEVICE), rounds=3, iterations=1)
    assert (out / "results.csv").exists()


@pytest.fixture(scope="module")
def query_contexts(bench_rankers, cran):
    """The cross-encoder, Cranfield test query 1's top-4 BM25 candidates, a saliency explanation each;
    both modes use the device's rows per model call (`batch_size = "auto"`: 16 on CPU, 128-512 on CUDA)."""
    from rankers.scorer import default_batch_size
    r = bench_rankers["crossencoder"]
    q = cran.split("test")[0]
    ctxs = []
    for d in cran.candidates(q)[:4]:
        pair = make_pair(r, cran.queries[q], cran.docs[d])
        ex = build_explainer("saliency", r).attribute_pair(pair)
        ctxs.append(MetricContext(r, pair, ex, other_scores=np.linspace(-1, 1, 99),
                                  batch_size=default_batch_size(DEVICE, r)))
    return ctxs


CURVES = ["deletion", "insertion", "rank_deletion", "rank_insertion", "comprehensiveness", "sufficiency"]


@pytest.mark.parametrize("mode", ["one_pair", "cross_pair"])
def test_cross_pair_batching(benchmark, mode, query_contexts):
    bs = query_contexts[0].batch_size
    benchmark.extra_info.update(mode=mode, ranker="crossencoder", pairs=len(query_contexts), batch_size=bs)
    if mode == "cross_pair":
        res = run(benchmark, lambda: compute_metrics_many(query_contexts, CURVES, batch_size=bs), rounds=2)
    else:
        res = run(benchmark, lambda: [compute_metrics(c, CURVES) for c in query_contexts], rounds=2)
    assert all(v.status == "ok" for r in res for v in r.values())
