"""Query-level statistics, declared metric ranges, and the ground truth separating from random."""
import math

import numpy as np
import pandas as pd
import pytest

from metrics import METRICS
from rankers.training import build_ranker, checkpoint_dir, save_ranker
from suites.run.config import load_suite
from suites.run.runner import run_suite
from suites.stats import leaderboard, separation, summarize, underpowered


def _clustered(n_queries=30, per_query=3, rho=0.6, seed=0):
    """Rows of two explainers whose samples share a per-query effect (within-query correlation rho)."""
    rng = np.random.default_rng(seed)
    rows = []
    for q in range(n_queries):
        shared = rng.normal(0, math.sqrt(rho))
        for d in range(per_query):
            for e, shift in (("a", 0.0), ("b", 0.3)):
                rows.append({"ranker": "r", "explainer": e, "metric": "rank_deletion", "qid": f"q{q}",
                             "docid": f"d{d}", "value": 0.5 + shift + shared + rng.normal(0, math.sqrt(1 - rho)),
                             "status": "ok"})
    return pd.DataFrame(rows)


def test_cluster_bootstrap_matches_independent_query_resampling():
    df = _clustered()
    s = summarize(df).set_index("explainer").loc["a"]
    assert s.queries == 30 and s.n == 90
    # independent check: resample query ids with replacement, mean of per-query means, percentiles
    per_query = df[df.explainer == "a"].groupby("qid").value.mean().to_numpy()
    rng = np.random.default_rng(123)
    boots = [per_query[rng.integers(0, len(per_query), len(per_query))].mean() for _ in range(20000)]
    lo, hi = np.percentile(boots, [2.5, 97.5])
    assert s["mean"] == pytest.approx(per_query.mean())
    assert s.ci_low == pytest.approx(lo, abs=0.03) and s.ci_high == pytest.approx(hi, abs=0.03)
    # pairs are not independent: a pair-level bootstrap would be too narrow
    pairs = df[df.explainer == "a"].value.to_numpy()
    naive = [pairs[rng.integers(0, len(pairs), len(pairs))].mean() for _ in range(20000)]
    assert (hi - lo) > 1.2 * np.subtract(*np.percentile(naive, [97.5, 2.5]))


def test_leaderboard_shows_n_and_marks_underpowered():
    df = _clustered()
    b = leaderboard(df, "r", "rank_deletion")  # lower is better: "a" wins
    assert list(b.explainer) == ["a", "b"] and list(b.queries) == [30, 30] and list(b.pairs) == [90, 90]
    assert b.verdict.tolist() == ["best", "worse"]
    few = df[df.qid.isin(["q0", "q1", "q2"])]
    assert leaderboard(few, "r", "rank_deletion").verdict.iloc[1] == "underpowered"
    assert underpowered(5, 13) and not underpowered(12, 13)


def test_compare_to_reference_by_hand():
    """Paired differences against a reference: mean, effect size and verdicts computed independently."""
    from scipy.stats import wilcoxon

    from suites.stats import compare_to, min_meaningful_difference
    rng = np.random.default_rng(1)
    rows = []
    for q in range(20):
        base = rng.uniform(0.2, 0.8)
        # rank_deletion: lower is better; "good" is 0.1 lower, "same" differs by 1e-4, "noisy" is unrelated
        for e, v in (("gradcam", base), ("good", base - 0.1 + rng.normal(0, 0.01)), ("same", base + 1e-4),
                     ("noisy", base + rng.normal(0, 0.2))):
            rows.append({"ranker": "r", "explainer": e, "metric": "rank_deletion", "qid": f"q{q}", "docid": "d",
                         "value": v, "status": "ok"})
    df = pd.DataFrame(rows)
    c = compare_to(df, "r", "rank_deletion", "gradcam").set_index("explainer")
    wide = df.pivot_table(index="qid", columns="explainer", values="value")
    d = -(wide["good"] - wide["gradcam"]).to_numpy()          # oriented: + = better than gradcam
    assert c.loc["good", "diff"] == pytest.approx(d.mean())
    assert c.loc["good", "ci_low"] < d.mean() < c.loc["good", "ci_high"]
    assert c.loc["good", "effect"] == pytest.approx(1.0)      # better on every query
    assert c.loc["good", "p"] == pytest.approx(wilcoxon(wide["good"], wide["gradcam"], zero_method="zsplit").pvalue)
    assert c.loc["good", "verdict"] == "better"
    assert c.loc["same", "verdict"] == "negligible" and c.loc["same", "effect"] == pytest.approx(-1.0)
    assert c.loc["noisy", "verdict"] in ("not resolved", "worse", "better")
    assert min_meaningful_difference("rank_deletion") == pytest.approx(0.02)
    assert min_meaningful_difference("rank_deletion_gain") == pytest.approx(0.05)
    few = compare_to(df[df.qid.isin(["q0", "q1", "q2"])], "r", "rank_deletion", "gradcam").set_index("explainer")
    assert few.loc["good", "verdict"] == "not resolved"  # 3 queries: no p below 0.05 exists


SUITE = """
[suite]
name = "gt"
collection = "cranfield"
[samples]
queries = 0
top_k = 2
relevant = 1
[rankers.bm25]
[explainers.exact_shapley]
[explainers.random]
[explainers.exact_match]
[metrics.rank_deletion]
[metrics.rank_insertion]
[metrics.rank_comprehensiveness]
[metrics.rank_sufficiency]
[metrics.deletion]
"""


def test_bm25_ground_truth_beats_random_on_every_headline_metric(tmp_path, capsys):
    p = tmp_path / "gt.toml"
    p.write_text(SUITE)
    d = run_suite(load_suite(p), tmp_path / "run", progress=False)
    df = pd.read_csv(d / "results.csv", dtype={"qid": str, "docid": str})
    heads = [m for m, spec in METRICS.items() if spec.headline and m in set(df.metric)]
    assert (df[df.metric.isin(heads)].status == "ok").all()  # defined on every sample
    with capsys.disabled():
        print()
        for m in heads:
            s = separation(df, "bm25", m, "exact_shapley")
            print(f"bm25 {m}: exact_shapley vs random over {s['queries']} queries: effect r={s['effect']:+.2f}, "
                  f"p={s['p']:.1e}")
            assert s["queries"] == 45 and s["p"] < 0.01 and s["effect"] > 0, m


def test_every_ok_value_lies_in_its_declared_range(tmp_path, synthetic):
    """A small suite over every registered ranker, every metric: ok values respect the declared range."""
    from rankers import RANKERS
    # transformers: one query, short inputs and cheap settings (CPU); an untrained cross-encoder stands in
    # for a fine-tuned one (ranges do not depend on training)
    small = {"max_length": 64, "max_doc_len": 40}
    ce = build_ranker("crossencoder", synthetic, seed=0, **small)
    save_ranker(ce, checkpoint_dir("synthetic", "crossencoder", 0, small), "synthetic", {})
    cheap = ("queries = 1\nmax_length = 64\nmax_doc_len = 40\n"
             "explainers = { integrated_gradients = { n_steps = 2 } }\n"
             "metrics = { infidelity = { n_perturb_samples = 2 }, pairwise_flip = { max_steps = 4 }, "
             "rank_deletion = { max_steps = 5 }, rank_insertion = { max_steps = 5 }, "
             "rank_deletion_gain = { max_steps = 5, random_orders = 4 }, "
             "rank_insertion_gain = { max_steps = 5, random_orders = 4 }, rank_deletion_lerf = { max_steps = 5 } }")
    from hf_tiny import build
    own = {"callable": '\nfunction = "byo_rankers:overlap"',
           "seq2seq": f'\nmodel = "{build("t5", tmp_path / "t5")}"',
           "causal_lm": f'\nmodel = "{build("qwen2", tmp_path / "qwen2")}"'}
    rankers = "\n".join(f"[rankers.{r}]" + (f"\n{cheap}" if RANKERS[r].kind == "transformer" else "") + own.get(r, "")
                         for r in RANKERS)
    metrics = "\n".join(f"[metrics.{m}]" + ("\nmax_stages = 1" if m == "sanity_randomization" else "")
                        for m in METRICS if m != "sensitivity_max")
    p = tmp_path / "all.toml"
    p.write_text(f"""
[suite]
name = "ranges"
collection = "synthetic"
[samples]
queries = 2
top_k = 1
relevant = 1
{rankers}
[explainers.feature_ablation]
[explainers.gradcam]
[explainers.integrated_gradients]
n_steps = 8
[explainers.random]
[explainers.exact_match]
[explainers.exact_shapley]
{metrics}
""")
    d = run_suite(load_suite(p, allow_code=True), tmp_path / "run", progress=False)
    df = pd.read_csv(d / "results.csv", dtype={"qid": str, "docid": str})
    ok = df[df.status == "ok"]
    assert set(ok.ranker) == set(RANKERS)
    for m, g in ok.groupby("metric"):
        lo, hi = METRICS[m].range
        v = g.value.astype(float)
        assert v.notna().all(), m
        assert (lo is None or (v >= lo - 1e-9).all()) and (hi is None or (v <= hi + 1e-9).all()), (m, v.min(), v.max())
    heads = df[df.metric.isin([m for m, s in METRICS.items() if s.headline]) & df.explainer.isin(
        ["feature_ablation", "random", "exact_match"])]
    # defined everywhere, except an anchored gain on a pair whose random and oracle AUCs lie within the declared
    # floor (its one declared skip: the untrained stand-ins here can score every perturbation alike)
    tie = heads.metric.str.endswith("_gain") & heads.message.fillna("").str.contains("too little room to rank")
    assert ((heads.status == "ok") | ((heads.status == "skipped") & tie)).all(), \
        heads[heads.status != "ok"].message.unique()
    # the runner skips exactly the pairs `rexbench list` calls incompatible, with the same reason
    from suites.listing import listing
    listed = {e["name"]: e["incompatible"] for e in listing()["explainers"]}
    for (r, e), g in df.groupby(["ranker", "explainer"]):
        if r in listed[e]:
            assert (g.status == "skipped").all() and (g.message == listed[e][r]).all(), (r, e)
        else:
            assert not g.message.fillna("").str.startswith(f"{e} needs").any(), (r, e)


def test_mean_cis_equal_one_bootstrap_per_group():
    """The vectorised bootstrap of `summarize` gives exactly `mean_ci` of each group (same resamples)."""
    from suites.stats import mean_ci, mean_cis
    rng = np.random.default_rng(3)
    groups = [rng.normal(size=n) for n in (6, 6, 3, 45, 6, 1)] + [np.full(4, 2.0), np.array([])]
    got = mean_cis(groups, seed=7)
    for g, (m, lo, hi) in zip(groups[:-1], got):
        assert (m, lo, hi) == mean_ci(g, seed=7)
        assert lo <= m <= hi
    assert math.isnan(got[-1][0])


def test_minimum_detectable_difference_by_hand():
    """(t_{1-a/2m, n-1} + t_{0.8, n-1}) * sd / sqrt(n) * sqrt(pi / 3), and the queries that bring it under a
    target; a board's resolution from the median spread of paired differences."""
    from scipy.stats import t

    from suites.stats import board_power, minimum_detectable_difference, queries_to_resolve
    want = (t.ppf(1 - 0.05 / 2 / 12, 14) + t.ppf(0.8, 14)) * 0.1 / np.sqrt(15) * np.sqrt(np.pi / 3)
    assert minimum_detectable_difference(0.1, 15, 12) == pytest.approx(want)
    assert minimum_detectable_difference(0.1, 1) == float("inf")
    n = queries_to_resolve(0.1, 0.02, 12)
    assert minimum_detectable_difference(0.1, n, 12) <= 0.02 < minimum_detectable_difference(0.1, n - 1, 12)
    assert queries_to_resolve(0.1, 0.0) is None
    rows = [{"ranker": "r", "explainer": e, "metric": "rank_deletion", "qid": f"q{i}", "docid": "d", "value": v,
             "status": "ok"} for i in range(6) for e, v in (("a", 0.1 * i), ("b", 0.1 * i + (i % 2) * 0.2),
                                                           ("c", 0.5))]
    p = board_power(pd.DataFrame(rows), "r", "rank_deletion", 2)
    sds = sorted([np.std([(i % 2) * 0.2 for i in range(6)], ddof=1), np.std([0.1 * i - 0.5 for i in range(6)], ddof=1),
                  np.std([0.1 * i + (i % 2) * 0.2 - 0.5 for i in range(6)], ddof=1)])
    assert p["queries"] == 6 and p["sd"] == pytest.approx(sds[1])
    assert p["mdd"] == pytest.approx(minimum_detectable_difference(sds[1], 6, 2)) and p["min_meaningful"] == 0.02


def test_variance_components_and_pairs_design_by_hand():
    """Two explainers, 3 queries of 2 pairs; their differences d: q1 (1, 3), q2 (2, 2), q3 (4, 6). Within a query:
    (1 + 1 + 0 + 0 + 1 + 1) / 3 degrees of freedom = 4/3; the query means 2, 2, 5 vary by 3, so between queries
    3 - (4/3) / 2 = 7/3. At p pairs per query a query mean's sd is sqrt(7/3 + 4/3 / p); the design takes the fewest
    pairs whose queries fit those available, and says what the between-query spread alone needs when none does."""
    from suites.stats import pairs_design, queries_to_resolve, variance_components
    d = {"q1": (1, 3), "q2": (2, 2), "q3": (4, 6)}
    rows = [{"ranker": "r", "explainer": e, "metric": "rank_deletion", "qid": q, "docid": f"d{j}",
             "value": (v if e == "a" else 0.0), "status": "ok"} for q, vs in d.items() for j, v in enumerate(vs)
            for e in ("a", "b")]
    c = variance_components(pd.DataFrame(rows), "r", "rank_deletion")
    assert c["within"] == pytest.approx(4 / 3) and c["between"] == pytest.approx(7 / 3)
    assert c["pairs_per_query"] == 2 and c["queries"] == 3
    need = {p: queries_to_resolve(math.sqrt(7 / 3 + 4 / 3 / p), 0.5, 1) for p in range(1, 11)}
    assert need[1] > need[3] > need[10]
    got = pairs_design(c, 0.5, 1, available_queries=need[3])
    assert got["queries_needed"] == need
    first = min(p for p in need if need[p] <= need[3])
    assert got["choice"] == {"pairs_per_query": first, "queries": need[first]}
    none = pairs_design(c, 0.5, 1, available_queries=need[10] - 1)
    assert none["choice"] is None and none["floor_queries"] == queries_to_resolve(math.sqrt(7 / 3), 0.5, 1)
    one_pair = [r for r in rows if r["docid"] == "d0"]          # no query with two pairs: no split
    assert variance_components(pd.DataFrame(one_pair), "r", "rank_deletion") is None


def test_metric_agreement_is_spearman_where_defined_and_nan_without_a_warning_where_an_ordering_is_constant():
    """Three explainers on two queries: metric a (rank_insertion, higher is better) orders them 1 < 2 < 3, metric
    b (rank_comprehensiveness, higher is better) 2, 1, 3 (Spearman by hand: ranks (1, 2, 3) vs (2, 1, 3),
    1 - 6 * 2 / (3 * 8) = 0.5); metric c (insertion) gives every explainer the same value, so its correlations
    are undefined: NaN, and no ConstantInputWarning escapes."""
    import warnings

    from suites.stats import metric_agreement
    a, b, c = "rank_insertion", "rank_comprehensiveness", "insertion"
    vals = {a: [1.0, 2.0, 3.0], b: [2.0, 1.0, 3.0], c: [0.5, 0.5, 0.5]}
    rows = [{"ranker": "r", "explainer": f"e{i}", "qid": q, "docid": "d", "metric": m, "value": v[i],
             "status": "ok"} for m, v in vals.items() for i in range(3) for q in ("1", "2")]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        t = metric_agreement(pd.DataFrame(rows), "r", [a, b, c])
    assert t.loc[a, b] == pytest.approx(0.5) and t.loc[a, a] == pytest.approx(1.0)
    assert np.isnan(t.loc[a, c]) and np.isnan(t.loc[c, c])


def test_rows_of_and_wide_queries_equal_a_fresh_computation_and_are_new_frames_each_call():
    """`rows_of` (the report's split of a large frame) returns exactly `df[(df.ranker == r) & (df.metric == m)]`:
    the same rows, order and index, for every (ranker, metric) present or not, with missing ranker values and a
    non-default index; `wide_queries` equals the pivot of that slice's query values. Changing what either returned
    does not change a later call; a new frame is split anew."""
    from hypothesis import given, settings
    from hypothesis import strategies as st

    from suites.stats import query_values, rows_of, wide_queries

    names = st.sampled_from(["a", "b", "c", None])

    @settings(max_examples=60, deadline=None)
    @given(st.lists(st.tuples(names, st.sampled_from(["m1", "m2"]), st.sampled_from(["e1", "e2"]),
                              st.sampled_from(["q1", "q2", "q3"]), st.sampled_from(["ok", "error"]),
                              st.floats(-1, 1)), max_size=30),
           st.integers(0, 1000))
    def check(rows, offset):
        df = pd.DataFrame(rows, columns=["ranker", "metric", "explainer", "qid", "status", "value"])
        df.index = df.index * 3 + offset
        for r in ("a", "b", "c", "z"):
            for m in ("m1", "m2", "m3"):
                want = df[(df.ranker == r) & (df.metric == m)]
                got = rows_of(df, r, m)
                pd.testing.assert_frame_equal(got, want)
                got["value"] = 99.0
                pd.testing.assert_frame_equal(rows_of(df, r, m), want)
                if (want.status == "ok").any():
                    wide = query_values(want).pivot_table(index="qid", columns="explainer", values="value",
                                                          aggfunc="first")
                    got = wide_queries(df, r, m)
                    pd.testing.assert_frame_equal(got, wide)
                    got.iloc[0, 0] = 99.0
                    pd.testing.assert_frame_equal(wide_queries(df, r, m), wide)

    check()
    one = pd.DataFrame({"ranker": ["a"], "metric": ["m1"], "value": [1.0]})
    assert len(rows_of(one, "a", "m1")) == 1
    del one
    two = pd.DataFrame({"ranker": ["b", "b"], "metric": ["m1", "m1"], "value": [1.0, 2.0]})
    assert len(rows_of(two, "a", "m1")) == 0 and len(rows_of(two, "b", "m1")) == 2
