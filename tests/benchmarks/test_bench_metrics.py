"""One benchmark per metric family x ranker on a fixed Cranfield explanation."""
import numpy as np
import pytest

from explainers import EXPLAINERS, build_explainer, make_pair
from metrics import MetricContext, compute_metrics

from .conftest import RANKERS, run

FAMILIES = {
    "curves": ["deletion", "insertion", "rank_deletion", "rank_insertion"],
    "eraser": ["comprehensiveness", "sufficiency"],
    "pairwise": ["pairwise_flip"],
    "groundtruth": ["groundtruth_spearman"],
    "infidelity": ["infidelity"],
}


@pytest.mark.parametrize("ranker", RANKERS)
@pytest.mark.parametrize("family", list(FAMILIES))
def test_metric_speed(benchmark, family, ranker, bench_rankers, bench_pair, cran):
    r = bench_rankers[ranker]
    pair = make_pair(r, *bench_pair)
    ex = build_explainer("saliency", r).attribute_pair(pair)
    others = np.linspace(0, float(ex.score) * 1.5, 99)
    ctx = MetricContext(r, pair, ex, other_scores=others, contrast_score=float(ex.score) * 0.5,
                        bm25=bench_rankers["bm25"])
    res = run(benchmark, lambda: compute_metrics(ctx, FAMILIES[family]), rounds=3 if r.kind == "transformer" else 5)
    assert all(v.status in ("ok", "skipped") for v in res.values()), {k: v.message for k, v in res.items()}


SHARING_EXPLAINERS = ("random", "gradcam", "saliency", "query_occlusion")
SHARING_METRICS = {"rank_deletion_gain": {"max_steps": 10, "tie_orders": 2, "random_orders": 8},
                   "rank_insertion_gain": {"max_steps": 10, "tie_orders": 2, "random_orders": 8},
                   "rank_deletion": {"max_steps": 10, "tie_orders": 2}, "query_deletion": {}}


@pytest.mark.parametrize("ranker", ["knrm", "biencoder"])
@pytest.mark.parametrize("shared", [True, False], ids=["shared", "alone"])
def test_shared_rows_speed(benchmark, shared, ranker, bench_rankers, bench_pair, cran):
    """The metrics of a pair's explainers (gains, rank_deletion, query_deletion over 20 candidates), the pair shared
    by its explainers as the runner shares it (calls made once: `metrics.base.memo_call`) or a new Pair per
    explainer (before): wall time, and the rows scored in `extra_info['rows']`."""
    import dataclasses

    import torch
    r = bench_rankers[ranker]
    pair = make_pair(r, *bench_pair)
    cands = [d for d in cran.candidates("1") if d not in cran.relevant("1")][:20]
    others = [make_pair(r, bench_pair[0], cran.docs[d]).doc_tokens for d in cands]
    with torch.no_grad():
        other_scores = r.score_tokens(pair.query_tokens, others).double().numpy()
    exs = {e: build_explainer(e, r).attribute_pair(pair) for e in SHARING_EXPLAINERS if EXPLAINERS[e].compatible(r)[0]}
    rows = []
    orig = type(r).forward

    def counting(self, q, d, *a, **k):
        rows.append(len(d))
        return orig(self, q, d, *a, **k)

    def metrics():
        p = dataclasses.replace(pair)                      # a new pair each round: nothing carried between rounds
        out = {}
        for e, ex in exs.items():
            ctx = MetricContext(r, p if shared else dataclasses.replace(pair), ex, other_scores=other_scores,
                                other_docs=others)
            out[e] = compute_metrics(ctx, list(SHARING_METRICS), SHARING_METRICS)
        return out
    type(r).forward = counting
    try:
        res = run(benchmark, metrics, rounds=2 if r.kind == "transformer" else 3)
    finally:
        type(r).forward = orig
    benchmark.extra_info["rows"] = sum(rows) // (3 if r.kind == "transformer" else 4)   # per round (+1 warmup)
    assert all(v.status in ("ok", "skipped") for e in res.values() for v in e.values())
