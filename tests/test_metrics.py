import math

import numpy as np
import torch
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from explainers import build_explainer, make_pair
from explainers.base import Explanation
from metrics import METRICS, MetricContext, compute_metrics, listwise_tau
from metrics.curves import attribution_order, step_counts
from rankers.training import build_ranker
from tests.toys import AdditiveRanker

WEIGHTS = {"t0": 5.0, "t1": 1.0, "t2": 3.0, "t3": 0.0, "t4": 1.0}
DOC = ["t0", "t1", "t2", "t3", "t4"]


def _ctx(ranker, doc, scores, **kw):
    pair = make_pair(ranker, ["q"], doc)
    ex = Explanation(ranker.name, "oracle", ["q"], list(doc), np.asarray(scores, dtype=float))
    return MetricContext(ranker, pair, ex, **kw)


def test_hand_worked_five_token_curves():
    r = AdditiveRanker(WEIGHTS)
    w = [WEIGHTS[t] for t in DOC]
    ctx = _ctx(r, DOC, w, other_scores=np.array([9.5, 6.0, 4.0, 0.5]), contrast_score=4.0)
    res = compute_metrics(ctx, ["deletion", "insertion", "rank_deletion", "rank_insertion", "comprehensiveness",
                                "sufficiency", "pairwise_flip"])
    # order t0(5), t2(3), t1(1), t4(1), t3(0); deletion scores 10,5,2,1,0,0 over x = 0,.2,...,1
    assert res["deletion"].value == pytest.approx(0.26)
    assert res["deletion"].curve["y"] == pytest.approx([1, .5, .2, .1, 0, 0])
    assert res["insertion"].value == pytest.approx(0.74)
    # ranks among [9.5, 6, 4, .5] of 10,5,2,1,0,0 -> 1,3,4,4,5,5; standing 1-(r-1)/4
    assert res["rank_deletion"].curve["y"] == [1, 3, 4, 4, 5, 5]
    assert res["rank_deletion"].value == pytest.approx(0.3)
    # insertion scores 0,5,8,9,10,10 -> ranks 5,3,2,2,1,1 -> standing 0,.5,.75,.75,1,1
    assert res["rank_insertion"].value == pytest.approx(.2 * (.25 + .625 + .75 + .875 + 1))
    # ERASER bins 1,5,10,20,50% of 5 tokens -> k = 1,1,1,1,3
    assert res["comprehensiveness"].value == pytest.approx((4 * 0.5 + 0.9) / 5)
    assert res["sufficiency"].value == pytest.approx((4 * 0.5 + 0.1) / 5)
    # d+ falls below s(d-) = 4 after 2 of 5 deletions
    assert res["pairwise_flip"].value == pytest.approx(0.4)
    assert all(r.status == "ok" for r in res.values())


def test_metrics_declare_direction_and_unit():
    assert {"deletion", "insertion", "rank_deletion", "rank_insertion", "comprehensiveness", "sufficiency",
            "pairwise_flip", "listwise_tau", "groundtruth_spearman", "rationale_precision", "rationale_auprc",
            "sanity_randomization", "explainer_agreement", "infidelity", "sensitivity_max"} <= set(METRICS)
    for m in METRICS.values():
        assert m.direction in ("higher", "lower") and m.unit
    assert METRICS["deletion"].direction == "lower" and METRICS["insertion"].direction == "higher"


@settings(max_examples=40, deadline=None)
@given(st.lists(st.floats(0.0, 10.0), min_size=2, max_size=12).filter(lambda w: sum(w) > 1e-3),
       st.integers(0, 2 ** 31 - 1))
def test_oracle_ordering_has_best_deletion_auc(weights, seed):
    vocab = {f"w{i}": v for i, v in enumerate(weights)}
    r = AdditiveRanker(vocab)
    doc = list(vocab)
    oracle = compute_metrics(_ctx(r, doc, weights), ["deletion", "insertion"])
    rng = np.random.default_rng(seed)
    rand_del, rand_ins = [], []
    for _ in range(8):
        perm = rng.standard_normal(len(doc))
        res = compute_metrics(_ctx(r, doc, perm), ["deletion", "insertion"])
        assert oracle["deletion"].value <= res["deletion"].value + 1e-6
        assert oracle["insertion"].value >= res["insertion"].value - 1e-6
        rand_del.append(res["deletion"].value)
        rand_ins.append(res["insertion"].value)
    assert 0 <= oracle["deletion"].value <= 1 and 0 <= oracle["insertion"].value <= 1
    assert oracle["deletion"].value <= np.mean(rand_del) + 1e-6
    assert oracle["insertion"].value >= np.mean(rand_ins) - 1e-6


@pytest.mark.parametrize("name", ["bm25", "matchpyramid"])
@pytest.mark.parametrize("batch_size", [1, 7, 64])
def test_curve_costs_ceil_k_over_batch_calls(name, batch_size, cranfield):
    r = build_ranker(name, cranfield)
    q = cranfield.query_tokens["1"]
    d = cranfield.doc_tokens[cranfield.relevant("1")[0]]
    ctx = _ctx(r, d, np.arange(len(d))[::-1], batch_size=batch_size)
    ctx.pair = make_pair(r, q, d)
    ctx.explanation.query_tokens = q
    res = compute_metrics(ctx, ["deletion"], {"deletion": {"max_steps": None}})
    k = len(step_counts(len(d), None))  # K + 1 = n + 1 steps
    assert res["deletion"].status == "ok"
    # + 2 rows for the full and empty documents, scored in the same batches
    assert ctx.last_cost.forward_passes == math.ceil((k + 2) / batch_size)


def test_ties_one_token_nan_and_flat_scores():
    r = AdditiveRanker(WEIGHTS)
    # constant attributions with tie_orders=1: ties keep document order
    res = compute_metrics(_ctx(r, DOC, [0, 0, 0, 0, 0]), ["deletion"], {"deletion": {"tie_orders": 1}})
    assert res["deletion"].curve["y"] == pytest.approx([1, .5, .4, .1, .1, 0])
    # one-token document: x = [0, 1]
    one = compute_metrics(_ctx(r, ["t0"], [1.0]), ["deletion", "insertion"])
    assert one["deletion"].value == pytest.approx(0.5) and one["insertion"].value == pytest.approx(0.5)
    # NaN attributions: a clear error, never a number
    bad = compute_metrics(_ctx(r, DOC, [1, np.nan, 0, 0, 0]), ["deletion", "comprehensiveness"])
    assert all(v.status == "error" and "NaN" in v.message and math.isnan(v.value) for v in bad.values())
    # a document whose removal does not change the score (s_full == s_empty), or raises it
    flat = compute_metrics(_ctx(r, ["t3", "t3"], [1, 0]), ["deletion", "insertion", "sufficiency"])
    assert all(v.status == "skipped" and "not defined" in v.message for v in flat.values())
    neg = AdditiveRanker({"a": -1.0, "b": 0.5})
    heads = ["rank_deletion", "rank_insertion", "rank_comprehensiveness", "rank_sufficiency"]
    inverted = compute_metrics(_ctx(neg, ["a", "b"], [0.5, -1.0], other_scores=np.array([0.0, -2.0])),
                               ["deletion", "comprehensiveness"] + heads)
    assert inverted["deletion"].status == "skipped" and inverted["comprehensiveness"].status == "skipped"
    assert all(inverted[m].status == "ok" for m in heads)  # ranks need no normalisation
    with pytest.raises(Exception, match="NaN"):
        attribution_order([np.nan])


def test_constant_attribution_scores_like_random_in_expectation():
    """Ties are averaged over random orders: a constant explanation's curve is the expectation over
    token orders, which for an additive ranker is linear (closed form), and its headline metrics
    match the mean over many random explanations."""
    r = AdditiveRanker(WEIGHTS)
    others = np.array([9.5, 6.0, 4.0, 0.5])
    heads = ["rank_deletion", "rank_insertion", "rank_comprehensiveness", "rank_sufficiency"]
    params = {m: {"tie_orders": 256} for m in ["deletion"] + heads}
    const = compute_metrics(_ctx(r, DOC, [0.0] * 5, other_scores=others), ["deletion"] + heads, params)
    # E[score after deleting k of 5 random tokens] = 10 (1 - k/5): y = 1 - x, AUC 0.5
    assert const["deletion"].curve["y"] == pytest.approx([1, .8, .6, .4, .2, 0], abs=0.06)
    assert const["deletion"].value == pytest.approx(0.5, abs=0.03)
    rng = np.random.default_rng(0)
    rand = [compute_metrics(_ctx(r, DOC, rng.standard_normal(5), other_scores=others), heads) for _ in range(400)]
    for m in heads:
        assert const[m].value == pytest.approx(np.mean([x[m].value for x in rand]), abs=0.03), m


def test_headline_metrics_are_scale_free():
    """An increasing affine rescaling of every score (a*s + b, a > 0) leaves each headline metric unchanged."""
    r, scaled = AdditiveRanker(WEIGHTS), AdditiveRanker({k: 7.0 * v for k, v in WEIGHTS.items()})
    others = np.array([9.5, 6.0, 4.0, 0.5])
    heads = [m for m, spec in METRICS.items() if spec.headline]
    assert set(heads) == {"rank_deletion", "rank_insertion", "rank_comprehensiveness", "rank_sufficiency",
                          "rank_deletion_gain", "rank_insertion_gain"}
    a = compute_metrics(_ctx(r, DOC, [3, 1, 2, 0, 1], other_scores=others), heads)
    b = compute_metrics(_ctx(scaled, DOC, [3, 1, 2, 0, 1], other_scores=7.0 * others), heads)
    for m in heads:
        lo, hi = METRICS[m].range
        assert a[m].status == "ok" and a[m].value == pytest.approx(b[m].value), m
        assert (lo is None or lo <= a[m].value) and (hi is None or a[m].value <= hi), m


def test_bm25_exact_ordering_beats_random_on_cranfield(cranfield):
    bm25 = build_ranker("bm25", cranfield)
    exact, rand = [], []
    for q in cranfield.split("test")[:12]:
        for d in cranfield.relevant(q)[:2]:
            pair = make_pair(bm25, cranfield.query_tokens[q], cranfield.doc_tokens[d])
            shap, _ = bm25.exact_contributions(pair.q_ids, pair.d_ids)
            for store, scores in ((exact, shap.numpy()), (rand, np.random.default_rng(0).standard_normal(len(shap)))):
                ex = Explanation("bm25", "x", pair.query_tokens, pair.doc_tokens, scores)
                res = compute_metrics(MetricContext(bm25, pair, ex), ["deletion", "insertion"])
                if res["deletion"].status == "ok":
                    store.append((res["deletion"].value, res["insertion"].value))
    e, r = np.array(exact), np.array(rand)
    print(f"\nbm25 on Cranfield ({len(e)} pairs): exact-Shapley ordering deletion {e[:, 0].mean():.3f} "
          f"insertion {e[:, 1].mean():.3f}; random ordering deletion {r[:, 0].mean():.3f} insertion {r[:, 1].mean():.3f}")
    assert len(e) >= 10
    assert e[:, 0].mean() < r[:, 0].mean() - 0.1
    assert e[:, 1].mean() > r[:, 1].mean() + 0.1


def test_groundtruth_and_rationale_metrics(cranfield):
    bm25 = build_ranker("bm25", cranfield)
    q, d = cranfield.query_tokens["1"], cranfield.doc_tokens[cranfield.relevant("1")[0]]
    pair = make_pair(bm25, q, d)
    shap, _ = bm25.exact_contributions(pair.q_ids, pair.d_ids)
    ex = Explanation("bm25", "x", pair.query_tokens, pair.doc_tokens, shap.numpy())
    res = compute_metrics(MetricContext(bm25, pair, ex, bm25=bm25), ["groundtruth_spearman"])
    assert res["groundtruth_spearman"].value == pytest.approx(1.0)

    r = AdditiveRanker({"a": 1, "b": 1})
    ctx = _ctx(r, ["a", "b", "a", "b"], [0.9, 0.8, 0.1, 0.05], rationale=[0, 2])
    res = compute_metrics(ctx, ["rationale_precision", "rationale_auprc", "groundtruth_spearman"])
    assert res["rationale_precision"].value == pytest.approx(0.5)        # top-2 = {0, 1}
    assert res["rationale_auprc"].value == pytest.approx((1 + 2 / 3) / 2)  # hits at ranks 1 and 3
    assert res["groundtruth_spearman"].status == "skipped"


def test_infidelity_zero_for_exact_additive_attributions():
    r = AdditiveRanker(WEIGHTS)
    exact = compute_metrics(_ctx(r, DOC, [WEIGHTS[t] for t in DOC]), ["infidelity"])["infidelity"]
    wrong = compute_metrics(_ctx(r, DOC, [0, 5, 0, 3, 1]), ["infidelity"])["infidelity"]
    assert exact.value == pytest.approx(0.0, abs=1e-6)
    assert wrong.value > 0.1


def test_sanity_agreement_and_sensitivity(small_knrm, synthetic):
    q = synthetic.query_tokens["q001"]
    d = synthetic.doc_tokens[synthetic.relevant("q001")[0]]
    pair = make_pair(small_knrm, q, d)
    from scipy.stats import spearmanr

    from metrics.robustness import sanity_passes
    out, ex_of = {}, {}
    for name in ("saliency", "random", "feature_ablation"):
        expl = build_explainer(name, small_knrm)
        ex = ex_of[name] = expl.attribute_pair(pair)
        ex_of[name] = ex.doc_scores
        peers = {"feature_ablation": build_explainer("feature_ablation", small_knrm).attribute_pair(pair)}
        ctx = MetricContext(small_knrm, pair, ex, explainer=expl, peers=peers)
        out[name] = compute_metrics(ctx, ["sanity_randomization", "explainer_agreement", "sensitivity_max"])
    # random ignores the model: under an independent seed its randomised explanation is as unlike the trained one
    # as a second trained one is (its self-consistency ceiling), so it cannot pass
    rnd = out["random"]["sanity_randomization"]
    want_rand = abs(spearmanr(ex_of["random"], build_explainer("random", small_knrm, seed=1)
                              .attribute_pair(pair).doc_scores).statistic)
    assert rnd.value == pytest.approx(want_rand) and rnd.info["ceiling"] == pytest.approx(want_rand)
    assert rnd.info["seeds"] == [0, 1] and not sanity_passes(rnd.value, rnd.info["ceiling"])
    sal = out["saliency"]["sanity_randomization"]
    assert 0 <= sal.value < 0.9 and sal.info["ceiling"] == 1.0  # deterministic: its own ceiling is 1
    # a constant explanation carries no ranking: an error, never a perfect 0
    const = build_explainer("exact_match", small_knrm)
    no_match = make_pair(small_knrm, q, [t for t in d if t not in q])
    res = compute_metrics(MetricContext(small_knrm, no_match, const.attribute_pair(no_match), explainer=const),
                          ["sanity_randomization"])["sanity_randomization"]
    assert res.status == "error" and "constant" in res.message and math.isnan(res.value)
    assert out["feature_ablation"]["explainer_agreement"].value == pytest.approx(1.0)
    assert out["random"]["sensitivity_max"].value == pytest.approx(0.0)
    assert out["saliency"]["sensitivity_max"].value >= 0


def test_listwise_tau_on_bm25(cranfield):
    bm25 = build_ranker("bm25", cranfield)
    q = cranfield.query_tokens["5"]
    cands = cranfield.candidates("5")[:10]
    docs = [cranfield.doc_tokens[d] for d in cands]
    exact, rnd = [], []
    for toks in docs:
        pair = make_pair(bm25, q, toks)
        shap, _ = bm25.exact_contributions(pair.q_ids, pair.d_ids)
        exact.append(Explanation("bm25", "x", q, toks, shap.numpy()))
        rnd.append(Explanation("bm25", "r", q, toks, np.random.default_rng(1).standard_normal(len(toks))))
    t_exact = listwise_tau(bm25, q, docs, exact)
    t_rand = listwise_tau(bm25, q, docs, rnd)
    assert -1 <= t_exact.value <= 1 and t_exact.value < t_rand.value


def test_listwise_tau_over_the_top_k_of_the_ranking(cranfield):
    """The metric takes the ranker's top k candidates, explains the ones the suite did not, and equals
    Kendall tau computed by hand on those k documents (scipy), before vs after deleting each one's top 20%."""
    from scipy.stats import kendalltau

    from metrics import QueryContext, compute_query_metrics
    bm25 = build_ranker("bm25", cranfield)
    q = cranfield.query_tokens["5"]
    cands = cranfield.candidates("5")
    scores = bm25.score_tokens(q, [cranfield.doc_tokens[d] for d in cands]).numpy()
    ranking = [cands[i] for i in np.argsort(-scores, kind="stable")]
    expl = build_explainer("exact_shapley", bm25)
    calls = []

    def explain(d):
        calls.append(d)
        return expl.attribute_pair(make_pair(bm25, q, cranfield.doc_tokens[d]))

    known = {d: explain(d) for d in ranking[:2]}
    calls.clear()
    qctx = QueryContext(bm25, q, list(known.values()), ranking=ranking, by_doc=known, explain=explain)
    res = compute_query_metrics(qctx, ["listwise_tau"], {"listwise_tau": {"k": 12, "k_frac": 0.02}})["listwise_tau"]
    assert calls == ranking[2:12] and res.info["k"] == 12
    before, after = [], []
    for d in ranking[:12]:
        pair = make_pair(bm25, q, cranfield.doc_tokens[d])
        shap = bm25.exact_contributions(pair.q_ids, pair.d_ids)[0].numpy()
        n = len(pair.doc_tokens)
        mask = torch.ones(1, n)
        mask[0, np.argsort(-shap, kind="stable")[: int(np.ceil(0.02 * n))]] = 0   # bm25's removal operator
        with torch.no_grad():
            before.append(float(bm25(pair.q_ids[None], pair.d_ids[None])[0]))
            after.append(float(bm25(pair.q_ids[None], pair.d_ids[None], mask)[0]))
    assert np.ptp(after) > 0
    assert res.value == pytest.approx(kendalltau(before, after).statistic, abs=1e-9)


def test_groundtruth_spearman_ranks_only_query_matching_tokens(cranfield):
    """By hand: shares over the matching tokens only; what an explanation gives non-matching tokens is ignored,
    and a document with one matching token is undefined."""
    from scipy.stats import spearmanr
    bm25 = build_ranker("bm25", cranfield)
    q, d = cranfield.query_tokens["1"], cranfield.doc_tokens[cranfield.relevant("1")[0]]
    pair = make_pair(bm25, q, d)
    shap = bm25.exact_contributions(pair.q_ids, pair.d_ids)[0].double().numpy()
    match = shap != 0
    rng = np.random.default_rng(0)
    scores = rng.normal(size=len(shap))
    res = compute_metrics(MetricContext(bm25, pair, Explanation("bm25", "x", pair.query_tokens, pair.doc_tokens,
                                                                scores), bm25=bm25), ["groundtruth_spearman"])
    g = res["groundtruth_spearman"]
    assert g.value == pytest.approx(spearmanr(scores[match], shap[match]).statistic)
    assert g.info["matching_tokens"] == int(match.sum()) >= 2
    scores[~match] = 1e6                                   # non-matching tokens do not count
    res2 = compute_metrics(MetricContext(bm25, pair, Explanation("bm25", "x", pair.query_tokens, pair.doc_tokens,
                                                                 scores), bm25=bm25), ["groundtruth_spearman"])
    assert res2["groundtruth_spearman"].value == pytest.approx(g.value)
    one = [t for t in d if t not in q][:5] + [q[0]]
    p1 = make_pair(bm25, q, one)
    r1 = compute_metrics(MetricContext(bm25, p1, Explanation("bm25", "x", p1.query_tokens, p1.doc_tokens,
                                                             np.arange(len(one), dtype=float)), bm25=bm25),
                         ["groundtruth_spearman"])["groundtruth_spearman"]
    assert r1.status == "error" and "needs two" in r1.message


def test_lime_is_scale_free():
    """The same additive ranker at two score scales: LIME's explanation scales with the scores (its surrogate
    fits standardised scores) instead of collapsing to 0 under the Lasso penalty at the small scale."""
    weights = {"a": 3.0, "b": 1.0, "c": 2.0, "d": 0.5, "e": 0.0}
    doc = ["a", "b", "c", "d", "e", "a"]
    out = {}
    for scale in (1.0, 1e-4):
        r = AdditiveRanker({k: v * scale for k, v in weights.items()})
        out[scale] = build_explainer("lime", r, n_samples=200, seed=0).attribute(["a"], doc).doc_scores
    assert np.ptp(out[1e-4]) > 0
    np.testing.assert_allclose(out[1e-4], out[1.0] * 1e-4, rtol=1e-3, atol=1e-9)
    assert np.argsort(-out[1.0])[0] in (0, 5)              # "a" (weight 3) on top
