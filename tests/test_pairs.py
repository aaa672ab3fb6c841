"""The seed's claim at its granularity: pair-level curves, exact pairs, Grad-CAM variants, the snippet use."""
import json

import numpy as np
import pytest
import torch

from explainers import Explanation, build_explainer, make_pair
from metrics import MetricContext, compute_metrics
from suites.cli import main
from toys import PairAdditiveRanker

Q, D = ["a", "b"], ["x", "y", "z"]
W = {("a", "x"): 4.0, ("a", "y"): 1.0, ("b", "z"): 2.0, ("b", "x"): 0.5}   # cells a-z, b-y: 0


def test_pair_curves_by_hand():
    """Cells removed in pair-map order; standing among others [7.4, 5.0, 3.0, 1.0] at every step of 6 cells."""
    r = PairAdditiveRanker(Q + D, W)
    pair = make_pair(r, Q, D)
    pm = np.array([[4.0, 1.0, 0.0], [0.5, -1.0, 2.0]])     # the true cells, except b-y ranked last (it is 0)
    ex = Explanation("pairadditive", "x", Q, D, pm.sum(0), pair_map=pm)
    others = np.array([7.4, 5.0, 3.0, 1.0])
    ctx = MetricContext(r, pair, ex, other_scores=others)
    res = compute_metrics(ctx, ["pair_deletion", "pair_insertion"],
                          {"pair_deletion": {"max_steps": 6}, "pair_insertion": {"max_steps": 6}})
    # order: a-x (4), b-z (2), a-y (1), b-x (0.5), a-z (0), b-y (-1); full score 7.5
    del_scores = [7.5, 3.5, 1.5, 0.5, 0.0, 0.0, 0.0]
    ins_scores = [0.0, 4.0, 6.0, 7.0, 7.5, 7.5, 7.5]

    def standing(s):  # rank among others, ties in the document's favour
        return 1 - (1 + (others > s).sum() - 1) / len(others)

    x = np.arange(7) / 6
    assert res["pair_deletion"].value == pytest.approx(np.trapezoid([standing(s) for s in del_scores], x))
    assert res["pair_insertion"].value == pytest.approx(np.trapezoid([standing(s) for s in ins_scores], x))
    assert res["pair_deletion"].info["cells"] == 6
    # no pair map: skipped with the reason
    flat = Explanation("pairadditive", "flat", Q, D, np.ones(3))
    got = compute_metrics(MetricContext(r, pair, flat, other_scores=others), ["pair_deletion"])["pair_deletion"]
    assert got.status == "skipped" and "no pair map" in got.message


@pytest.mark.parametrize("nq, nd, points", [(4, 25, 101), (5, 30, 151), (2, 3, 7), (10, 223, 103)])
def test_pair_curves_default_grid_never_steps_over_one_percent(nq, nd, points):
    """Default grid: steps of max(1, n // 100) cells, so cell by cell up to 199 cells and never more than 1%."""
    q, d = [f"q{i}" for i in range(nq)], [f"d{j}" for j in range(nd)]
    r = PairAdditiveRanker(q + d, {(a, b): 1.0 + i + 0.1 * j for i, a in enumerate(q) for j, b in enumerate(d)})
    pm = np.arange(nq * nd, dtype=float).reshape(nq, nd)
    ex = Explanation("pairadditive", "x", q, d, pm.sum(0), pair_map=pm)
    res = compute_metrics(MetricContext(r, make_pair(r, q, d), ex, other_scores=np.array([1.0, 2.0])),
                          ["pair_deletion"])["pair_deletion"]
    n = nq * nd
    assert len(res.curve["x"]) == points and res.info["largest_step"] == pytest.approx(max(1, n // 100) / n)
    assert res.info["largest_step"] <= 0.01 or n < 100


def test_gradcam_position_weights_are_gradient_times_activation(small_knrm, synthetic):
    q = synthetic.query_tokens["q001"]
    d = synthetic.doc_tokens[synthetic.relevant("q001")[0]][:30]
    pair = make_pair(small_knrm, q, d)
    store = {}
    h = small_knrm.feature_layer.register_forward_hook(lambda _m, _i, o: store.update(a=o))
    s = small_knrm(pair.q_ids[None], pair.d_ids[None])
    h.remove()
    (g,) = torch.autograd.grad(s.sum(), store["a"])
    a = store["a"]
    want_pos = torch.relu((g * a).sum(1)[0]).detach().numpy()
    want_mean = torch.relu((g.mean((2, 3), keepdim=True) * a).sum(1)[0]).detach().numpy()
    pos = build_explainer("gradcam", small_knrm, weights="position").attribute_pair(pair)
    mean = build_explainer("gradcam", small_knrm).attribute_pair(pair)
    np.testing.assert_allclose(pos.pair_map, want_pos, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(mean.pair_map, want_mean, rtol=1e-5, atol=1e-7)
    assert not np.allclose(pos.pair_map, mean.pair_map)
    signed = build_explainer("gradcam", small_knrm, weights="position", signed=True).attribute_pair(pair)
    np.testing.assert_allclose(signed.pair_map, (g * a).sum(1)[0].detach().numpy(), rtol=1e-5, atol=1e-7)



def test_gradcam_integer_layer_is_for_transformers(small_knrm):
    """A layer sweep (`layer = i` tables) skips the interaction rankers with the reason, not an error."""
    from explainers import Incompatible
    with pytest.raises(Incompatible, match="integer indexes a transformer"):
        build_explainer("gradcam", small_knrm, layer=2)


@pytest.fixture(scope="module")
def tiny_encoder(tmp_path_factory):
    from hf_tiny import build
    return build("bert", tmp_path_factory.mktemp("li") / "bert")


def test_late_interaction_exact_pairs_sum_to_the_score(tiny_encoder):
    from hf_tiny import DOC, QUERY
    from rankers.late_interaction import LateInteraction
    r = LateInteraction(model=tiny_encoder).eval()
    pair = make_pair(r, QUERY, DOC)
    ex = build_explainer("exact_pairs", r).attribute_pair(pair)
    assert ex.pair_map.shape == (len(QUERY.split()), len(DOC.split()))
    assert ex.pair_map.sum() == pytest.approx(ex.score, abs=1e-4)
    # the score by hand: word vectors = mean of the word's pieces' last-layer states, MaxSim
    import transformers as T
    tok, m = T.AutoTokenizer.from_pretrained(tiny_encoder), T.AutoModel.from_pretrained(tiny_encoder).eval()

    def vecs(text):
        enc = tok(text, return_offsets_mapping=True, return_tensors="pt")
        with torch.no_grad():
            h = m(input_ids=enc["input_ids"]).last_hidden_state[0]
        words, out = text.split(), []
        starts, pos = [], 0
        for w in words:
            pos = text.index(w, pos)
            starts.append((pos, pos + len(w)))
            pos += len(w)
        for s, e in starts:
            rows = [i for i, (a, b) in enumerate(enc["offset_mapping"][0].tolist()) if b > a and a >= s and b <= e]
            out.append(torch.nn.functional.normalize(h[rows].mean(0), dim=0))
        return torch.stack(out)

    sim = vecs(QUERY) @ vecs(DOC).T
    assert ex.score == pytest.approx(float(sim.max(1).values.sum()), abs=1e-4)
    np.testing.assert_allclose(ex.pair_map.max(1), sim.max(1).values.numpy(), atol=1e-4)
    # every doc word removed: each query word's best cell is -1
    with torch.no_grad():
        empty = float(r(pair.q_ids[None], pair.d_ids[None], torch.zeros(1, len(pair.d_ids)))[0])
    assert empty == pytest.approx(-len(pair.q_ids))


def test_pair_level_integrated_gradients_on_late_interaction_in_closed_form(tiny_encoder):
    """Late interaction's cells along the document mask's path from the empty document: s_ij(t) = -1 + t (S_ij + 1),
    so each row's maximum stays at its argmax and the score's gradient is 1 there, 0 elsewhere; layer IG on the
    cells is therefore (S_ij + 1) at each query word's maximal cell, 0 elsewhere (exact at any number of steps),
    and the map sums to f(x) - f(empty) = score + n_query."""
    from hf_tiny import DOC, QUERY
    from rankers.late_interaction import LateInteraction
    r = LateInteraction(model=tiny_encoder).eval()
    pair = make_pair(r, QUERY, DOC)
    ex = build_explainer("integrated_gradients", r, pair_map=True, n_steps=4).attribute_pair(pair)
    with torch.no_grad():
        sim = r.similarity(pair.q_ids[None], pair.d_ids[None])[0].double().numpy()
    want = np.zeros_like(sim)
    rows = np.arange(len(sim))
    want[rows, sim.argmax(1)] = sim.max(1) + 1
    np.testing.assert_allclose(ex.pair_map, want, atol=1e-5)
    assert ex.pair_map.sum() == pytest.approx(ex.score + len(pair.q_ids), abs=1e-4)


def _pair_metrics_from_the_cli(capsys, *where):
    assert main(["explain", "--ranker", "knrm", "--explainer", "gradcam", "--metrics",
                 "pair_deletion,pair_insertion,snippet_sufficiency,query_deletion", *where, "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    for m in ("pair_deletion", "pair_insertion", "snippet_sufficiency", "query_deletion"):
        assert 0 <= out["metrics"][m] <= 1, m
    assert len(out["curves"]["pair_deletion"]["x"]) > 2


def test_pair_metrics_on_knrm_from_the_cli(capsys):
    """The issue's command on the synthetic collection (KNRM trains in seconds there)."""
    _pair_metrics_from_the_cli(capsys, "--collection", "synthetic", "--qid", "q001", "--docid", "d0001")


@pytest.mark.slow
def test_pair_metrics_on_knrm_on_cranfield_from_the_cli(capsys):
    """The issue's command as written (trains KNRM on Cranfield on first use, ~2 minutes on 2 cores)."""
    _pair_metrics_from_the_cli(capsys, "--qid", "1", "--docid", "184")


def test_listing_has_the_pair_level_names(capsys):
    assert main(["list", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    metrics = {m["name"]: m for m in out["metrics"]}
    for m, d in (("pair_deletion", "lower"), ("pair_insertion", "higher"), ("snippet_sufficiency", "higher")):
        assert metrics[m]["direction"] == d and metrics[m]["range"] == [0, 1]
    assert "late_interaction" in {r["name"] for r in out["rankers"]}
    expl = {e["name"]: e for e in out["explainers"]}
    assert {"exact_pairs", "lead", "corrupted"} <= set(expl)
    gc = json.dumps(expl["gradcam"])
    assert "signed" in gc and "position" in gc


def test_snippet_sufficiency_and_lead_by_hand():
    """The best window alone: its score's standing among the others, computed by hand."""
    from toys import AdditiveRanker
    r = AdditiveRanker({"a": 1.0, "b": 0.0, "c": 3.0})
    doc = ["b", "b", "a", "c", "b", "b"]
    pair = make_pair(r, ["a"], doc)
    others = np.array([5.0, 3.5, 2.0, 0.5])
    lead = build_explainer("lead", r, w=2).attribute_pair(pair)
    assert lead.doc_scores.tolist() == [2, 1, 0, 0, 0, 0]
    ex = Explanation("additive", "x", ["a"], doc, np.array([0, 0, 1.0, 3.0, 0, 0]))
    got = compute_metrics(MetricContext(r, pair, ex, other_scores=others), ["snippet_sufficiency"],
                          {"snippet_sufficiency": {"w": 2}})["snippet_sufficiency"]
    assert got.value == pytest.approx(1 - 1 / 4) and (got.info["start"], got.info["end"]) == (2, 4)  # score 4
    got = compute_metrics(MetricContext(r, pair, lead, other_scores=others), ["snippet_sufficiency"],
                          {"snippet_sufficiency": {"w": 2}})["snippet_sufficiency"]
    assert got.value == pytest.approx(0.0)                   # "b b" scores 0: below every other


@pytest.mark.slow
def test_late_interaction_on_cranfield(tmp_path):
    """Zero-shot MiniLM late interaction on 6 Cranfield queries: exact_pairs sums to the score and beats random
    on pair_deletion by a clear margin."""
    from tests.toys import run_suite_text
    df = run_suite_text(tmp_path, '[suite]\nname = "li"\ncollection = "cranfield"\n[samples]\nqueries = 6\ntop_k = 2\n'
                        'relevant = 1\n[rankers.late_interaction]\ntrain = false\n[explainers.exact_pairs]\n'
                        '[explainers.random]\n[explainers.gradcam]\n[metrics.pair_deletion]\n', "li")
    ok = df[df.status == "ok"]
    means = ok.groupby("explainer").value.mean()
    assert ok.qid.nunique() == 6
    assert means["exact_pairs"] < means["random"] - 0.1
    import json
    import sqlite3
    con = sqlite3.connect(tmp_path / "run_li" / "results.sqlite")
    maps = [json.loads(d) for (d,) in con.execute("SELECT data FROM explanations WHERE explainer = 'exact_pairs'")]
    con.close()
    assert len(maps) >= 6
    for e in maps:
        assert np.sum(e["pair_map"]) == pytest.approx(e["score"], abs=1e-3)


def test_query_deletion_by_hand():
    """Query words removed in the explanation's query-score order; every candidate re-scored each step."""
    r = PairAdditiveRanker(Q + D, W)
    pair = make_pair(r, Q, D)                          # s(q, D) = 7.5: a contributes 5, b 2.5
    others = [["x"], ["z", "z"], ["y"]]              # full query: 4.5, 4.0, 1.0
    pm = np.array([[4.0, 1.0, 0.0], [0.5, 0.0, 2.0]])
    ex = Explanation("pairadditive", "x", Q, D, pm.sum(0), query_scores=pm.sum(1), pair_map=pm)
    ctx = MetricContext(r, pair, ex, other_scores=np.array([4.5, 4.0, 1.0]), other_docs=others)
    got = compute_metrics(ctx, ["query_deletion"])["query_deletion"]
    # remove "a" first: D scores 2.5 vs others 0.5, 4.0, 0.0 -> rank 2 -> standing 1 - 1/3; then nothing: 0.5
    st = [1.0, 1 - 1 / 3, 0.5]
    assert got.curve["y"] == pytest.approx(st)
    assert got.value == pytest.approx(np.trapezoid(st, [0, 0.5, 1]))
    wrong = Explanation("pairadditive", "w", Q, D, pm.sum(0), query_scores=np.array([0.0, 1.0]))
    worse = compute_metrics(MetricContext(r, pair, wrong, other_scores=np.array([4.5, 4.0, 1.0]), other_docs=others),
                            ["query_deletion"])["query_deletion"]
    assert worse.value > got.value                     # removing b first keeps D on top longer


def test_gradcam_layer_sweep_figure(tmp_path):
    import pandas as pd

    from suites.report.figures import layer_sweep, layer_sweep_figure
    suite = {"gradcam": {}, "gc0": {"type": "gradcam", "layer": 0}, "gc1": {"type": "gradcam", "layer": 1},
             "occlusion": {"window": 1}}
    assert layer_sweep(suite) == [(0, "gc0"), (1, "gc1")]
    rows = [{"ranker": "crossencoder", "explainer": e, "metric": "rank_deletion", "qid": f"q{q}", "docid": "d",
             "value": v + 0.01 * q, "status": "ok"} for q in range(3) for e, v in (("gc0", 0.6), ("gc1", 0.4))]
    assert layer_sweep_figure(pd.DataFrame(rows), suite, {"rank_deletion"}, tmp_path / "layers.png")
    assert (tmp_path / "layers.png").stat().st_size > 1000
    assert not layer_sweep_figure(pd.DataFrame(rows), {"gc0": suite["gc0"]}, {"rank_deletion"}, tmp_path / "x.png")


def test_ranking_shap_by_hand():
    """Shapley values of the query words for v(S) = Kendall tau(full-query scores, S-query scores) over the
    candidates, computed by hand for two words; sampled permutations approach them."""
    from scipy.stats import kendalltau
    words = ["a", "b", "x", "y", "z"]
    weights = {("a", "x"): 3.0, ("a", "y"): 1.0, ("b", "y"): 2.5, ("b", "z"): 1.0, ("a", "z"): 0.2}
    r = PairAdditiveRanker(words, weights)
    cands = [["x"], ["y"], ["z"], ["x", "z"]]
    pair = make_pair(r, ["a", "b"], ["x"])
    pair.candidates = cands

    def scores(q):
        return np.array([sum(weights.get((t, d), 0.0) for t in q for d in c) for c in cands])

    full = scores(["a", "b"])
    v = {(): 0.0, ("a",): kendalltau(full, scores(["a"])).statistic, ("b",): kendalltau(full, scores(["b"])).statistic,
         ("a", "b"): 1.0}
    phi_a = 0.5 * ((v[("a",)] - v[()]) + (v[("a", "b")] - v[("b",)]))
    phi_b = 0.5 * ((v[("b",)] - v[()]) + (v[("a", "b")] - v[("a",)]))
    ex = build_explainer("ranking_shap", r).attribute_pair(pair)
    np.testing.assert_allclose(ex.query_scores, [phi_a, phi_b], atol=1e-9)
    assert ex.query_scores.sum() == pytest.approx(1.0)             # efficiency: v(full) - v(empty)
    assert not ex.doc_scores.any() and ex.info["shapley"] == "exact"
    sampled = build_explainer("ranking_shap", r, exact_max=1, n_samples=400, seed=0).attribute_pair(pair)
    np.testing.assert_allclose(sampled.query_scores, [phi_a, phi_b], atol=0.1)
    from explainers import Incompatible
    with pytest.raises(Incompatible, match="needs the query's candidates"):
        build_explainer("ranking_shap", r).attribute_pair(make_pair(r, ["a", "b"], ["x"]))


def test_ranking_shap_from_the_cli_is_scored_by_query_deletion(capsys):
    assert main(["explain", "--ranker", "bm25", "--explainer", "ranking_shap", "--collection", "synthetic",
                 "--qid", "q001", "--docid", "d0001", "--metrics", "query_deletion", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert len(out["query_scores"]) == len(out["query_tokens"]) and 0 <= out["metrics"]["query_deletion"] <= 1


def test_ranking_shap_in_a_suite_with_listwise_tau(tmp_path):
    """Candidates listwise_tau explains beyond the suite's samples get the query's ranking too."""
    from tests.toys import run_suite_text
    df = run_suite_text(tmp_path, '[suite]\nname = "rs"\ncollection = "synthetic"\n[samples]\nqueries = 2\ntop_k = 1\n'
                        'relevant = 1\n[rankers.bm25]\n[explainers.ranking_shap]\n[metrics.listwise_tau]\n'
                        '[metrics.query_deletion]\n', "rs")
    tau = df[df.metric == "listwise_tau"]
    assert len(tau) == 2 and (tau.status == "ok").all(), tau.message.tolist()
    assert (df[df.metric == "query_deletion"].status == "ok").all()


def test_random_gives_a_seeded_pair_map_scored_at_pair_level():
    """The pair-level chance baseline: random's pair map is [n_query, n_doc], the same for the same (seed, pair),
    another for another seed; its row sums are the query scores; pair_deletion scores it."""
    r = PairAdditiveRanker(Q + D, W)
    a = build_explainer("random", r).attribute(Q, D)
    b = build_explainer("random", r).attribute(Q, D)
    c = build_explainer("random", r, seed=1).attribute(Q, D)
    assert a.pair_map.shape == (len(Q), len(D)) and np.array_equal(a.pair_map, b.pair_map)
    assert not np.allclose(a.pair_map, c.pair_map)
    assert np.allclose(a.query_scores, a.pair_map.sum(1))
    pair = make_pair(r, Q, D)
    got = compute_metrics(MetricContext(r, pair, a, other_scores=np.array([4.5, 4.0, 1.0])), ["pair_deletion"])
    assert got["pair_deletion"].status == "ok" and 0 <= got["pair_deletion"].value <= 1
