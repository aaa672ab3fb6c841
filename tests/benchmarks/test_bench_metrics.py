"""One benchmark per metric family x ranker on a fixed Cranfield explanation."""
import numpy as np
import pytest

from explainers import build_explainer, make_pair
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
