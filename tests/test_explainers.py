import math

import numpy as np
import pytest

from explainers import EXPLAINERS, Incompatible, build_explainer, collection_idf
from explainers.aggregate import pair_to_terms, pieces_to_words
from explainers.applications import best_snippet, query_term_importance
from rankers.errors import BadInput
from rankers.training import build_ranker
from tests.toys import TinyConvRanker, explain_with_candidates

CRAN_PAIRS = [("1", 0), ("5", 0), ("10", 1), ("25", 0)]  # (qid, index into its relevant docs)


@pytest.fixture(scope="module")
def cran_rankers(cranfield):
    return {n: build_ranker(n, cranfield) for n in ("bm25", "knrm", "matchpyramid", "random")}


def _pairs(cranfield):
    for q, i in CRAN_PAIRS:
        d = sorted(cranfield.relevant(q), key=int)[i]
        yield cranfield.query_tokens[q], cranfield.doc_tokens[d]


def test_gradcam_hand_computed_on_tiny_conv():
    r = TinyConvRanker(["a", "b", "c"])
    # S = [[1,0,0,1],[0,0,1,0]]; A1 = 1.5 S, A2 = 0.5 (1 - S); sum A1 = 4.5
    # alpha1 = mean d(0.1 (sum A1)^2)/dA1 = 0.2 * 4.5 = 0.9; alpha2 = -1
    # map = ReLU(0.9 * 1.5 S - 0.5 (1 - S)) = 1.35 S; signed: 1.35 S - 0.5 (1 - S)
    s = np.array([[1, 0, 0, 1], [0, 0, 1, 0]], dtype=float)
    ex = build_explainer("gradcam", r).attribute(["a", "b"], ["a", "c", "b", "a"])
    np.testing.assert_allclose(ex.pair_map, 1.35 * s, atol=1e-6)
    signed = build_explainer("gradcam", r, signed=True).attribute(["a", "b"], ["a", "c", "b", "a"])
    np.testing.assert_allclose(signed.pair_map, 1.35 * s - 0.5 * (1 - s), atol=1e-6)
    np.testing.assert_allclose(ex.doc_scores, [1.35, 0, 1.35, 1.35], atol=1e-6)
    assert ex.score == pytest.approx(0.1 * 4.5 ** 2 - 0.5 * 5)
    assert (ex.forward_passes, ex.backward_passes) == (1, 1)


@pytest.mark.parametrize("name", ["knrm", "matchpyramid"])
def test_gradcam_pair_map_shape_on_cranfield(name, cran_rankers, cranfield):
    for q, d in _pairs(cranfield):
        ex = build_explainer("gradcam", cran_rankers[name]).attribute(q, d)
        assert ex.pair_map.shape == (len(q), min(len(d), 256))
        assert (ex.pair_map >= 0).all() and np.isfinite(ex.pair_map).all()


def test_gradcam_incompatible_with_bm25(cran_rankers):
    ok, why = EXPLAINERS["gradcam"].compatible(cran_rankers["bm25"])
    assert not ok and "feature_layer" in why
    with pytest.raises(Incompatible):
        build_explainer("gradcam", cran_rankers["bm25"])


@pytest.mark.parametrize("name,params", [("feature_ablation", {}), ("occlusion", {"window": 1})])
def test_bm25_ablation_equals_exact_leave_one_out(name, params, cran_rankers, cranfield):
    bm25 = cran_rankers["bm25"]
    for q, d in _pairs(cranfield):
        ex = build_explainer(name, bm25, **params).attribute(q, d)
        enc = bm25.encode(q, [d])
        _, loo = bm25.exact_contributions(enc.q_ids[0], enc.d_ids[0])
        np.testing.assert_allclose(ex.doc_scores, loo.numpy(), rtol=1e-4, atol=1e-5)


def test_bm25_shapley_sampling_converges_to_exact(cran_rankers, cranfield):
    bm25 = cran_rankers["bm25"]
    errs = {}
    for n in (2, 100):
        e = []
        for q, d in _pairs(cranfield):
            ex = build_explainer("shapley_sampling", bm25, n_samples=n, seed=0).attribute(q, d)
            enc = bm25.encode(q, [d])
            shap, _ = bm25.exact_contributions(enc.q_ids[0], enc.d_ids[0])
            e.append(np.abs(ex.doc_scores - shap.numpy()).sum() / ex.score)
        errs[n] = float(np.mean(e))
    assert errs[100] < errs[2]
    assert errs[100] < 0.05  # within 5% of the score in L1


def test_bm25_integrated_gradients_completeness(cran_rankers, cranfield):
    bm25 = cran_rankers["bm25"]
    for q, d in _pairs(cranfield):
        ex = build_explainer("integrated_gradients", bm25, n_steps=50).attribute(q, d)
        # baseline = empty document, whose bm25 score is 0
        assert ex.doc_scores.sum() == pytest.approx(ex.score, rel=1e-3)
        assert ex.info["delta"] < 1e-3 * max(1.0, ex.score)


@pytest.mark.parametrize("ranker_name", ["bm25", "knrm", "matchpyramid", "random"])
@pytest.mark.parametrize("expl_name", sorted(EXPLAINERS))
def test_every_explainer_on_every_compatible_ranker(expl_name, ranker_name, cran_rankers, cranfield):
    r = cran_rankers[ranker_name]
    ok, why = EXPLAINERS[expl_name].compatible(r)
    if not ok:
        assert why
        return
    q, d = next(_pairs(cranfield))
    params = {"idf": collection_idf(cranfield)} if expl_name == "idf_match" else {}
    params.update({"n_samples": 30} if expl_name in ("kernel_shap", "lime") else {})
    a, b = (explain_with_candidates(build_explainer(expl_name, r, seed=7, **params), r, q, d) for _ in range(2))
    n = min(len(d), r.max_doc_len)
    assert a.doc_scores.shape == (n,) and np.isfinite(a.doc_scores).all()
    assert a.query_scores is None or a.query_scores.shape == (len(q),)
    assert a.pair_map is None or a.pair_map.shape == (len(q), n)
    np.testing.assert_allclose(a.doc_scores, b.doc_scores, atol=1e-6)  # deterministic for a seed
    assert a.seconds >= 0 and a.forward_passes >= 0 and math.isfinite(a.score)


def test_integrated_gradients_pair_map_on_interaction_ranker(cran_rankers, cranfield):
    q, d = next(_pairs(cranfield))
    ex = build_explainer("integrated_gradients", cran_rankers["knrm"], pair_map=True).attribute(q, d)
    assert ex.pair_map.shape == (len(q), len(d))


def test_cost_is_counted_by_hooks(cran_rankers, cranfield):
    q, d = next(_pairs(cranfield))
    ex = build_explainer("feature_ablation", cran_rankers["bm25"], perturbations_per_eval=16).attribute(q, d)
    assert ex.forward_rows == len(d) + 1  # the input once, then one row per token
    assert ex.forward_passes == 1 + math.ceil(len(d) / 16)
    sal = build_explainer("saliency", cran_rankers["knrm"]).attribute(q, d)
    assert (sal.forward_passes, sal.backward_passes) == (1, 1)


def test_pairwise_target(cran_rankers, cranfield):
    r = cran_rankers["bm25"]
    q = cranfield.query_tokens["1"]
    c = cranfield.candidates("1")
    d_pos, d_neg = cranfield.doc_tokens[c[0]], cranfield.doc_tokens[c[5]]
    ex = build_explainer("feature_ablation", r).attribute(q, d_pos, contrast_doc=d_neg, contrast_id=c[5])
    s = r.score_tokens(q, [d_pos, d_neg])
    assert ex.target == f"pair:{c[5]}"
    assert ex.score == pytest.approx(float(s[0] - s[1]), rel=1e-5)
    with pytest.raises(BadInput, match="contrast"):
        build_explainer("feature_ablation", r).attribute(q, d_pos, contrast_doc=[])


def test_bad_input_and_truncation(cran_rankers):
    r = cran_rankers["knrm"]
    ex = build_explainer("saliency", r)
    with pytest.raises(BadInput, match="empty query"):
        ex.attribute([], ["flow"])
    with pytest.raises(BadInput, match="empty document"):
        ex.attribute(["flow"], [])
    long = ["flow", "wing"] * 200
    out = ex.attribute(["flow"], long)
    assert out.truncated and len(out.doc_tokens) == r.max_doc_len == len(out.doc_scores)
    with pytest.raises(BadInput, match="valid"):
        build_explainer("gradcamm", r)
    with pytest.raises(BadInput, match="unexpected keyword"):
        build_explainer("occlusion", r, windw=2)


def test_aggregation_functions():
    pm = np.array([[1.0, 2.0, 0.0], [0.5, 0.0, 3.0]])
    qs, ds = pair_to_terms(pm)
    np.testing.assert_allclose(qs, [3.0, 3.5])
    np.testing.assert_allclose(ds, [1.5, 2.0, 3.0])
    np.testing.assert_allclose(pieces_to_words([0.1, 1, 2, 3, 0.2], [-1, 0, 0, 1, -1], 2), [3, 3])


def test_snippet_and_query_term_importance(cran_rankers, cranfield):
    from explainers.base import Explanation
    ex = Explanation("r", "e", ["q"], list("abcdefgh"), np.array([0, 1, 0, 5, 4, 0, 0, 9.0]))
    sn = best_snippet(ex, window=3)
    assert (sn.start, sn.end, sn.text, sn.mass) == (2, 5, "c d e", 9.0)
    bm25 = cran_rankers["bm25"]
    q, d = next(_pairs(cranfield))
    fa = build_explainer("feature_ablation", bm25).attribute(q, d)
    imp = query_term_importance(bm25, fa)  # no pair map: query-side leave-one-out
    enc = bm25.encode(q, [d])
    f, *_ = bm25._term_scores(enc.q_ids, enc.d_ids, None)
    by_term = dict(imp)
    for i, t in enumerate(q):
        if q.count(t) == 1:
            assert by_term[t] == pytest.approx(float(f[0, i]), abs=1e-5)
    assert [v for _, v in imp] == sorted((v for _, v in imp), reverse=True)
    em = build_explainer("exact_match", bm25).attribute(q, d)
    assert dict(query_term_importance(bm25, em))[q[0]] == d.count(q[0])
