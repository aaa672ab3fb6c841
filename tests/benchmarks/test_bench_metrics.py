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
@pytest.mark.parametrize("shared", [True, False], ids=["shared", "before"])
def test_shared_rows_speed(benchmark, shared, ranker, bench_rankers, bench_pair, cran, monkeypatch):
    """The metrics of a pair's explainers (gains, rank_deletion, query_deletion over 20 candidates) with the calls
    they share made once (`metrics.base.memo_call`), or made by each explainer again (before: `memo_call` bypassed;
    the gains' anchors are shared in both): wall time, and the rows scored per round in `extra_info['rows']`."""
    import dataclasses

    import torch

    import metrics.anchored
    import metrics.pairs
    r = bench_rankers[ranker]
    pair = make_pair(r, *bench_pair)
    cands = [d for d in cran.candidates("1") if d not in cran.relevant("1")][:20]
    others = [make_pair(r, bench_pair[0], cran.docs[d]).doc_tokens for d in cands]
    with torch.no_grad():
        other_scores = r.score_tokens(pair.query_tokens, others).double().numpy()
    exs = {e: build_explainer(e, r).attribute_pair(pair) for e in SHARING_EXPLAINERS if EXPLAINERS[e].compatible(r)[0]}
    if not shared:
        for mod in (metrics.anchored, metrics.pairs):
            monkeypatch.setattr(mod, "memo_call", lambda pair, key, fn: fn())
    rows = []
    orig = type(r).forward

    def counting(self, q, d, *a, **k):
        rows.append(len(d))
        return orig(self, q, d, *a, **k)

    def metrics_of_the_pair():
        p = dataclasses.replace(pair)                      # a new pair each round: nothing carried between rounds
        return {e: compute_metrics(MetricContext(r, p, ex, other_scores=other_scores, other_docs=others),
                                   list(SHARING_METRICS), SHARING_METRICS) for e, ex in exs.items()}
    rounds = 2 if r.kind == "transformer" else 3
    monkeypatch.setattr(type(r), "forward", counting)
    res = run(benchmark, metrics_of_the_pair, rounds=rounds)
    benchmark.extra_info["rows"] = sum(rows) // (rounds + 1)   # per round (the warmup round included in the sum)
    assert all(v.status in ("ok", "skipped") for e in res.values() for v in e.values())


@pytest.mark.parametrize("reuse", [True, False], ids=["reused", "before"])
def test_query_deletion_doc_passes_speed(benchmark, reuse, bench_rankers, bench_pair, cran, monkeypatch):
    """query_deletion on the bi-encoder over 20 candidates for 3 explainers of one pair, with the candidates' encoder
    pass made once per pair (`reuse_doc_passes`) or once per reduced query (before): wall time, and the encoder
    rows per round in `extra_info['encoder_rows']` (the values are equal: tests/test_row_sharing.py)."""
    import dataclasses

    import torch
    from hf_tiny import count_encoder_rows
    r = bench_rankers["biencoder"]
    pair = make_pair(r, *bench_pair)
    cands = [d for d in cran.candidates("1") if d not in cran.relevant("1")][:20]
    others = [make_pair(r, bench_pair[0], cran.docs[d]).doc_tokens for d in cands]
    with torch.no_grad():
        other_scores = r.score_tokens(pair.query_tokens, others).double().numpy()
    exs = {e: build_explainer(e, r).attribute_pair(pair) for e in ("random", "gradcam", "query_occlusion")}
    if not reuse:
        monkeypatch.setattr(type(r), "reuse_doc_passes", None, raising=False)
    rows = count_encoder_rows(monkeypatch, r)

    def query_deletion_of_the_pair():
        p = dataclasses.replace(pair)
        return [compute_metrics(MetricContext(r, p, ex, other_scores=other_scores, other_docs=others),
                                ["query_deletion"])["query_deletion"] for ex in exs.values()]
    res = run(benchmark, query_deletion_of_the_pair, rounds=2)
    benchmark.extra_info["encoder_rows"] = sum(rows) // 3   # per round (the warmup round included in the sum)
    assert all(v.status == "ok" for v in res)
