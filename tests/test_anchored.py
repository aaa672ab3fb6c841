"""Anchored metrics against hand-computed values: the search oracle, the gains between random and the
oracle, and LeRF; and the anchors' meaning on bm25 (random ~0, exact Shapley clearly positive, greedy ~1)."""
import json

import numpy as np
import pytest
import torch

from explainers import Explanation, make_pair
from explainers.search import greedy_order, order_scores
from metrics import METRICS, MetricContext, compute_metrics
from metrics.anchored import MIN_SPAN
from tests.toys import AdditiveRanker

# a b c weigh 3, 2, 1: the full document scores 6; the other candidates score 0.5, 2.5, 4.5, 5.5
OTHERS = np.array([0.5, 2.5, 4.5, 5.5])


def _ctx(doc_scores):
    r = AdditiveRanker({"a": 3.0, "b": 2.0, "c": 1.0})
    pair = make_pair(r, ["q"], ["a", "b", "c"])
    ex = Explanation("additive", "hand", ["q"], ["a", "b", "c"], np.array(doc_scores, float), score=6.0)
    return MetricContext(r, pair, ex, other_scores=OTHERS)


def test_greedy_order_on_an_additive_ranker():
    w = np.array([1.0, 3.0, 2.0, 0.5])
    score = lambda m: (m.numpy() * w).sum(1)  # noqa: E731
    assert greedy_order(score, 4, np.arange(5), "deletion").tolist() == [1, 2, 0, 3]
    assert greedy_order(score, 4, np.arange(5), "insertion").tolist() == [1, 2, 0, 3]
    assert greedy_order(score, 4, np.array([0, 2, 4]), "deletion").tolist() == [1, 2, 0, 3]  # step-wise
    assert order_scores(np.array([1, 2, 0, 3])).tolist() == [2.0, 4.0, 3.0, 1.0]


def test_gains_and_lerf_by_hand():
    """Deletion, one token per step, standing = 1 - (#others above) / 4:
    a,b,c (exact = oracle): y = 1, .5, .25, 0 -> AUC 1.25/3; c,b,a: y = 1, .75, .5, 0 -> AUC 1.75/3;
    random (all 6 orders): y = 1, (.5+.5+.75)/3, (.5+.25+.25)/3, 0 -> AUC 1.41667/3.
    gain(a,b,c) = 1; gain(c,b,a) = (1.41667 - 1.75) / (1.41667 - 1.25) = -2."""
    params = {m: {"max_steps": 10} for m in ("rank_deletion_gain", "rank_insertion_gain")}  # 3 tokens: every step
    exact = compute_metrics(_ctx([3, 2, 1]), ["rank_deletion_gain", "rank_insertion_gain", "rank_deletion_lerf"],
                            params)
    anti = compute_metrics(_ctx([1, 2, 3]), ["rank_deletion_gain", "rank_deletion_lerf"], params)
    d = exact["rank_deletion_gain"]
    assert d.status == "ok"
    assert d.info["oracle_auc"] == pytest.approx(1.25 / 3) and d.info["random_auc"] == pytest.approx(1.416667 / 3)
    assert d.value == pytest.approx(1.0) and anti["rank_deletion_gain"].value == pytest.approx(-2.0, rel=1e-5)
    assert exact["rank_insertion_gain"].value == pytest.approx(1.0)
    # LeRF of the exact order removes c, b, a: AUC 1.75 / 3; MoRF 1.25 / 3
    lerf = exact["rank_deletion_lerf"]
    assert lerf.value == pytest.approx(1.75 / 3) and lerf.info["morf_auc"] == pytest.approx(1.25 / 3)
    assert lerf.info["lerf_minus_morf"] == pytest.approx(0.5 / 3)
    assert anti["rank_deletion_lerf"].value == pytest.approx(1.25 / 3)


def test_a_pair_without_room_is_skipped():
    ctx = _ctx([3, 2, 1])
    ctx.other_scores = np.array([100.0, 200.0])  # the document is last whatever is removed
    res = compute_metrics(ctx, ["rank_deletion_gain"])
    assert res["rank_deletion_gain"].status == "skipped" and "too little room" in res["rank_deletion_gain"].message


def test_span_floor_by_hand(monkeypatch):
    """A pair whose random-to-oracle span is positive but below MIN_SPAN is skipped, with both AUCs named."""
    import metrics.anchored as anchored
    from metrics.base import Skip
    monkeypatch.setattr(anchored, "anchors", lambda ctx, kind, counts, k, ties: (0.50, 0.47, {}, {}))
    monkeypatch.setattr(anchored, "_standing_auc", lambda ctx, masks, counts: np.array([0.49]))

    class Ctx:
        other_scores = np.array([1.0, 2.0])
        seed = 0

        class pair:
            d_ids = torch.tensor([1, 2, 3])

        class explanation:
            doc_scores = np.array([0.3, 0.2, 0.1])
    with pytest.raises(Skip, match="within 0.05 deletion AUC.*0.5 vs 0.47"):
        anchored._gain(Ctx, "deletion", 20, 1, 4)
    monkeypatch.setattr(anchored, "anchors", lambda ctx, kind, counts, k, ties: (0.50, 0.40, {}, {}))
    assert anchored._gain(Ctx, "deletion", 20, 1, 4).value == pytest.approx((0.50 - 0.49) / (0.50 - 0.40))


class SubstituteRanker(AdditiveRanker):
    """score = 2 * max(m_a, 0.99 m_a2) + 1.5 m_b + 0.2 m_c: "a" and "a2" substitute for each other (a MaxSim's
    near-duplicate vectors), so removing either alone changes almost nothing; rows scored are counted."""

    def __init__(self):
        super().__init__({"a": 0.0, "a2": 0.0, "b": 1.5, "c": 0.2})
        v = torch.zeros(len(self.vocab))
        v[self.vocab.stoi["a"]], v[self.vocab.stoi["a2"]] = 1.0, 0.99
        self.register_buffer("v", v)
        self.rows = 0

    def forward(self, q_ids, d_ids, d_mask=None):
        self.rows += len(d_ids)
        m = (d_ids != 0).float() if d_mask is None else d_mask
        return 2.0 * (self.v[d_ids] * m).max(-1).values + (self.w[d_ids] * m).sum(-1)


def _substitute_ctx(r, pair, doc_scores, name, peers):
    ex = Explanation("sub", name, ["q"], pair.doc_tokens, np.array(doc_scores, float), score=3.7)
    peers[name] = ex
    return MetricContext(r, pair, ex, other_scores=np.array([0.1, 1.0, 1.9, 3.0]), peers=peers)


def test_the_oracle_starts_from_the_pairs_best_explanation(monkeypatch):
    """Deletion, one token a step, standing among others 0.1, 1.0, 1.9, 3.0. The greedy searches remove b, c, a, a2
    (AUC 0.6875: a or a2 alone changes nothing); an explanation ranking b, a, a2, c reaches 0.5625, the optimum
    over all 24 orders (enumerated in the test's derivation). With the local search switched off the oracle is the
    best start: that explanation (gain exactly 1; the other explanation's gain is measured against it); no gain
    exceeds 1; the anchors are the same for both explainers of the pair, and the explanations' own rows are
    scored once (the starts' rows are theirs)."""
    import explainers.search as search
    monkeypatch.setattr(search, "improve_order", lambda order, loss, ids, max_orders, seed=0, batch=16,
                        seed_loss=None: (order, 1))
    r, peers, params = SubstituteRanker(), {}, {"rank_deletion_gain": {"max_steps": 10, "random_orders": 24}}
    pair = make_pair(r, ["q"], ["a", "a2", "b", "c"])  # one Pair for every explainer, as the runner has it
    good = _substitute_ctx(r, pair, [3, 2, 4, 1], "good", peers)  # b, a, a2, c
    poor = _substitute_ctx(r, pair, [1, 2, 4, 3], "poor", peers)  # b, c, a2, a
    g = compute_metrics(good, ["rank_deletion_gain"], params)["rank_deletion_gain"]
    rows = r.rows
    p = compute_metrics(poor, ["rank_deletion_gain"], params)["rank_deletion_gain"]
    assert r.rows == rows  # the anchors and the poor explanation's orders were scored with the good one's gain
    assert g.info["oracle"]["seed"] == "good" and g.info["oracle"]["starts"] == 2
    assert g.info["oracle_auc"] == pytest.approx(0.5625) and g.info["oracle"]["greedy_auc"] == pytest.approx(0.6875)
    assert g.value == pytest.approx(1.0)
    assert p.info["oracle_auc"] == g.info["oracle_auc"] and p.info["random_auc"] == g.info["random_auc"]
    assert p.info["auc"] == pytest.approx(0.6875) and p.value < 1.0


def test_declared_in_the_listing():
    from suites.listing import listing
    out = listing()
    names = {m["name"]: m for m in out["metrics"]}
    for m in ("rank_deletion_gain", "rank_insertion_gain"):
        assert names[m]["direction"] == "higher" and names[m]["range"] == [None, None]
    assert names["rank_deletion_lerf"]["direction"] == "higher" and names["rank_deletion_lerf"]["range"] == [0, 1]
    assert "greedy" in {e["name"] for e in out["explainers"]}
    assert METRICS["rank_deletion_gain"].params["random_orders"].hi is not None


def test_anchors_on_bm25(cranfield):
    """10 test queries, the bm25 top 2 + 1 relevant per query: random ~0, exact Shapley > 0.3, greedy ~1."""
    from suites.api import benchmark
    df = benchmark("bm25", ["random", "exact_shapley", "greedy"], ["rank_deletion_gain", "rank_insertion_gain"],
                   collection="cranfield", queries=10)
    ok = df[df.status == "ok"]
    assert (df.status == "ok").mean() > 0.9
    m = ok.groupby(["explainer", "metric"]).value.mean()
    for metric in ("rank_deletion_gain", "rank_insertion_gain"):
        assert abs(m["random", metric]) < 0.15, m
        assert m["exact_shapley", metric] > 0.3, m
        assert m["greedy", metric] > 0.8, m
    assert m["greedy", "rank_deletion_gain"] == pytest.approx(1.0)  # the same search as the oracle
    # the random anchor's orders are independent of the random explainer's: its gains centre on 0 within their
    # standard error (they were biased low when one noisy estimate sat in numerator and denominator)
    for metric in ("rank_deletion_gain", "rank_insertion_gain"):
        v = ok[(ok.explainer == "random") & (ok.metric == metric)].value.astype(float)
        assert abs(v.mean()) <= 2.5 * v.std(ddof=1) / np.sqrt(len(v)), (metric, v.mean(), len(v))
    # no pair whose random and oracle AUCs lie within the declared floor is scored
    info = ok[ok.metric == "rank_deletion_gain"]["info"].map(lambda x: json.loads(x) if isinstance(x, str) else x)
    assert all(abs(i["random_auc"] - i["oracle_auc"]) >= MIN_SPAN for i in info)


def test_gain_is_a_ratio_of_query_means_by_hand():
    """Two queries, one with two pairs: the board's gain is sum_q mean(num) / sum_q mean(den), not the mean of
    the per-pair ratios, which a pair with a small random-to-oracle span dominates."""
    import pandas as pd

    from suites.stats import gain_ratio, leaderboard
    pairs = [("q1", "a", 0.60, 0.50, 0.10), ("q1", "b", 0.60, 0.58, 0.54), ("q2", "c", 0.70, 0.40, 0.20)]
    rows = []
    for q, d, a_rand, a, a_orc in pairs:
        for e, auc in (("x", a), ("random", a_rand)):
            rows.append({"ranker": "r", "explainer": e, "metric": "rank_deletion_gain", "qid": q, "docid": d,
                         "value": (a_rand - auc) / (a_rand - a_orc), "status": "ok",
                         "info": json.dumps({"auc": auc, "random_auc": a_rand, "oracle_auc": a_orc})})
    board = leaderboard(pd.DataFrame(rows), "r", "rank_deletion_gain").set_index("explainer")
    num = [np.mean([0.10, 0.02]), 0.30]                     # A_random - A, query means
    den = [np.mean([0.50, 0.06]), 0.50]                     # A_random - A_oracle
    assert board.loc["x", "mean"] == pytest.approx(sum(num) / sum(den))
    per_pair = np.mean([np.mean([0.10 / 0.50, 0.02 / 0.06]), 0.30 / 0.50])
    assert board.loc["x", "mean"] != pytest.approx(per_pair)
    assert board.loc["random", "mean"] == 0.0
    g, lo, hi = gain_ratio(np.array(num), np.array(den))
    assert lo <= g <= hi and g == pytest.approx(board.loc["x", "mean"])


def test_every_gain_row_records_the_oracles_consistency_ladder():
    """The ladder is the AUC of the oracle's stored order with 25/50/100% of its ranks shuffled (seeded by the
    document), computed by hand here from the same shuffles: on the 3-token toy the oracle is a, b, c."""
    import zlib

    from metrics.anchored import LADDER, corrupt_order
    params = {"rank_deletion_gain": {"max_steps": 10}}
    ctx = _ctx([3, 2, 1])
    d = compute_metrics(ctx, ["rank_deletion_gain"], params)["rank_deletion_gain"]
    ladder = d.info["oracle_ladder"]
    assert sorted(ladder, key=float) == ["0.25", "0.5", "1"]
    # by hand: AUC (one token per step, standing 1 - #others above / 4) of each corrupted order
    w = {0: 3.0, 1: 2.0, 2: 1.0}

    def auc(order):
        left, ys = 6.0, [1.0]
        for t in order:
            left -= w[int(t)]
            ys.append(1 - (OTHERS > left).sum() / 4)
        return np.trapezoid(ys, np.arange(4) / 3)

    rng = np.random.default_rng([0, zlib.crc32(" ".join(map(str, ctx.pair.d_ids.tolist())).encode())])
    oracle = np.array([0, 1, 2])
    for f in LADDER:
        assert ladder[f"{f:g}"] == pytest.approx(auc(corrupt_order(oracle, f, rng)))
    assert corrupt_order(oracle, 0.0, np.random.default_rng(0)).tolist() == [0, 1, 2]
    assert sorted(corrupt_order(np.arange(10), 1.0, np.random.default_rng(0)).tolist()) == list(range(10))


def test_the_stored_ladder_checks_consistency_where_no_suite_ladder_ran(tmp_path):
    from suites.cli import main
    from suites.report.validity import validity_status, validity_table
    from suites.run.store import Store
    p = tmp_path / "s.toml"
    p.write_text('[suite]\nname = "lad"\ncollection = "synthetic"\n[samples]\nqueries = 6\ntop_k = 1\nrelevant = 1\n'
                 '[rankers.bm25]\n[explainers.random]\n[explainers.exact_shapley]\n'
                 '[metrics.rank_deletion]\nmax_steps = 6\n[metrics.rank_deletion_gain]\nmax_steps = 6\n'
                 'random_orders = 4\n')
    assert main(["run", str(p), "--out", str(tmp_path / "run"), "--quiet"]) == 0
    df = Store(tmp_path / "run" / "results.sqlite", readonly=True).results()
    t = validity_table(df, {"random": {}, "exact_shapley": {}}, ["rank_deletion", "rank_deletion_gain"])
    row = t[(t.ranker == "bm25") & (t._metric == "rank_deletion")].iloc[0]
    assert row.reference == "search oracle (stored order)" and row._circular
    assert row.queries >= 2 and row["means by corrupted share"].startswith("0: ")
    assert validity_status(t, "bm25", "rank_deletion").startswith(("consistency check only (search oracle",
                                                                    "fails"))
    # the gain's own ladder: the same stored AUCs through (A_random - A) / (A_random - A_oracle), a ratio of query
    # means; recomputed here from the rows' info, pair by pair
    grow = t[(t.ranker == "bm25") & (t._metric == "rank_deletion_gain")].iloc[0]
    assert grow.reference == "search oracle (stored order)" and grow._circular
    g = df[(df.ranker == "bm25") & (df.metric == "rank_deletion_gain") & (df.status == "ok")]
    infos = {(q, d): json.loads(i) for q, d, i in zip(g.qid, g.docid, g["info"])}
    by_q: dict = {}
    for (q, _), i in infos.items():
        by_q.setdefault(q, []).append(i)
    expect = []
    for share in ("0", "0.25", "0.5", "1"):
        vals = [np.mean([i["random_auc"] - (i["oracle_auc"] if share == "0" else i["oracle_ladder"][share])
                         for i in pairs]) / np.mean([i["random_auc"] - i["oracle_auc"] for i in pairs])
                for pairs in by_q.values()]
        expect.append(f"{float(share):g}: {np.mean(vals):.3f}")
    assert grow["means by corrupted share"] == ", ".join(expect) and expect[0] == "0: 1.000"
