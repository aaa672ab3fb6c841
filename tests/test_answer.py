"""The report's first screen and what feeds it, checked by hand on toy runs: identical explainers collapsed, roles,
flags (quality floor), the primary family's report-wide Holm, verdicts, the cost count, the operator comparison,
the seed's-claim tally and the training-seed study's exclusions."""

import numpy as np
import pandas as pd
import pytest
from scipy.stats import kendalltau, wilcoxon

from suites.report.aliases import alias_groups, collapse, label
from suites.report.roles import role
from suites.stats import holm, verdict

SUITE_EXPLAINERS = {"gradcam": {}, "gradcam_l5": {"type": "gradcam", "layer": 5}, "integrated_gradients": {},
                    "saliency": {}, "occlusion": {}, "random": {}, "exact_match": {}, "greedy": {},
                    "greedy_c50": {"type": "corrupted", "base": "greedy", "fraction": 0.5}, "exact_pairs": {}}


def _rows(ranker, values: dict, metric="rank_deletion", n=12, seed=0):
    """values: explainer -> f(q, rng) -> value."""
    rng = np.random.default_rng(seed)
    out = []
    for q in range(n):
        for e, f in values.items():
            out.append({"ranker": ranker, "explainer": e, "metric": metric, "qid": f"q{q}", "docid": "d",
                        "value": f(q, rng), "status": "ok", "message": None})
    return out


def test_roles():
    assert [role(e, SUITE_EXPLAINERS) for e in SUITE_EXPLAINERS] == [
        "reference", "gradcam variant", "competitor", "competitor", "competitor", "baseline", "baseline", "oracle",
        "corrupted", "exact"]


def test_identical_explainers_are_one_entry():
    rows = _rows("r", {"gradcam": lambda q, g: 0.1 * q, "gradcam_l5": lambda q, g: 0.1 * q,
                       "saliency": lambda q, g: 0.1 * q + 1e-3, "integrated_gradients": lambda q, g: 0.1 * q})
    rows += [{"ranker": "r", "explainer": "occlusion", "metric": "rank_deletion", "qid": f"q{q}", "docid": "d",
              "value": np.nan, "status": "skipped", "message": "n/a"} for q in range(12)]
    rows += [{**x, "explainer": "random"} for x in rows if x["explainer"] == "occlusion"]   # both never ran
    df = pd.DataFrame(rows)
    g = alias_groups(df, SUITE_EXPLAINERS)
    # the reference is kept (first by role), then the suite's order; differing by 1e-3 is not identical, and two
    # explainers that never ran are nobody's aliases
    assert g == {"r": {"gradcam": ["integrated_gradients", "gradcam_l5"]}}
    assert label(g, "r", "gradcam") == "gradcam (= integrated_gradients, gradcam_l5)"
    assert set(collapse(df, g).explainer) == {"gradcam", "saliency", "occlusion", "random"}
    # identical on one metric but not on another: two entries
    more = pd.DataFrame(rows + _rows("r", {"gradcam": lambda q, g: 0.5, "gradcam_l5": lambda q, g: 0.6,
                                           "integrated_gradients": lambda q, g: 0.5}, metric="rank_insertion"))
    assert alias_groups(more, SUITE_EXPLAINERS) == {"r": {"gradcam": ["integrated_gradients"]}}


def test_verdicts_by_hand():
    assert verdict(0.10, 0.05, 0.15, 0.01, 0.02) == "better"
    assert verdict(-0.10, -0.15, -0.05, 0.01, 0.02) == "worse"
    assert verdict(0.01, 0.005, 0.015, 0.01, 0.02) == "negligible"        # significant but below the minimum
    assert verdict(0.001, -0.01, 0.01, 0.6, 0.02) == "negligible"         # CI inside +-0.02
    assert verdict(0.10, -0.05, 0.25, 0.2, 0.02) == "not resolved"        # never "no difference"


def _meta(explainers=SUITE_EXPLAINERS, rankers=None):
    return {"suite": {"explainers": explainers, "rankers": rankers or {}, "collection": "toy", "seed": 0},
            "environment": {"device": "cpu", "device_name": "toy"}}


def _effectiveness(nd: dict):
    return pd.DataFrame([{"ranker": r, "ndcg@10": v} for r, v in nd.items()])


def test_quality_floor_and_empty_document_flags():
    from metrics.curves import EMPTY_NOT_BELOW
    from suites.report.flags import empty_above_full, quality_floor, ranker_flags
    eff = _effectiveness({"bm25": 0.30, "random": 0.10, "good": 0.25, "weak": 0.19, "empty": 0.3})
    assert quality_floor(eff) == pytest.approx(0.20)              # midpoint of random and the first stage
    rows = []
    for r in ("good", "weak", "empty"):
        for q in range(4):
            above = r == "empty" and q < 3                          # 3 of 4 pairs: empty document >= full
            rows.append({"ranker": r, "explainer": "random", "metric": "deletion", "qid": f"q{q}", "docid": "d",
                         "value": np.nan if above else 0.5, "status": "skipped" if above else "ok",
                         "message": EMPTY_NOT_BELOW if above else None})
    df = pd.DataFrame(rows)
    assert empty_above_full(df) == {"good": 0.0, "weak": 0.0, "empty": 0.75}
    flags = ranker_flags(df, eff)
    assert set(flags) == {"weak", "empty"} and "0.190 < 0.200" in flags["weak"] and "75%" in flags["empty"]


def test_primary_family_is_holm_over_the_whole_report():
    """Two rankers: every competitor against Grad-CAM and random and Grad-CAM against random, one Holm over all of
    them; baselines, variants and the oracle are exploratory; the flagged ranker is outside the family."""
    from suites.report.evidence import gather
    good = lambda q, g: 0.2 + 0.01 * q + g.normal(0, 0.002)     # noqa: E731
    mid = lambda q, g: 0.4 + 0.01 * q + g.normal(0, 0.002)      # noqa: E731
    bad = lambda q, g: 0.6 + 0.01 * q + g.normal(0, 0.002)      # noqa: E731
    rows = []
    for r, s in (("a", 0), ("b", 1), ("weak", 2)):
        rows += _rows(r, {"gradcam": mid, "integrated_gradients": good, "saliency": bad, "random": bad,
                          "exact_match": good, "gradcam_l5": good, "greedy": good}, seed=s)
    df = pd.DataFrame(rows)
    ev = gather(_meta(), df, _effectiveness({"bm25": 0.3, "random": 0.1, "a": 0.3, "b": 0.3, "weak": 0.12}), [])
    fam = ev.comparisons.primary
    assert set(fam.ranker) == {"a", "b"} and "weak" in ev.flags
    got = {(x.ranker, x.reference, x.explainer) for x in fam.itertuples()}
    want = {(r, ref, e) for r in "ab" for ref, e in (("gradcam", "integrated_gradients"), ("gradcam", "saliency"),
                                                      ("random", "integrated_gradients"), ("random", "saliency"),
                                                      ("random", "gradcam"))}
    assert got == want
    # the family's p: Wilcoxon on the paired query values, Holm over all 10 at once
    p = []
    for x in fam.itertuples():
        w = df[(df.ranker == x.ranker)].pivot_table(index="qid", columns="explainer", values="value")
        p.append(wilcoxon(w[x.explainer], w[x.reference], zero_method="zsplit").pvalue)
    assert fam.p_family.tolist() == pytest.approx(holm(p))
    v = {(x.ranker, x.reference, x.explainer): x.verdict for x in fam.itertuples()}
    assert v[("a", "gradcam", "integrated_gradients")] == "better" and v[("a", "gradcam", "saliency")] == "worse"
    # exploratory rows keep their own table's Holm and are not marked primary
    t = ev.comparisons.table("a", "rank_deletion", "gradcam").set_index("explainer")
    assert not t.loc["exact_match", "primary"] and t.loc["integrated_gradients", "primary"]
    assert ev.comparisons.table("weak", "rank_deletion", "gradcam").primary.sum() == 0


def test_trust_matrix_and_answer_card():
    from suites.report.answer import answer_card, first_screen, not_supported, trust_matrix
    from suites.report.evidence import gather
    good = lambda q, g: 0.2 + 0.01 * q + g.normal(0, 0.002)     # noqa: E731
    mid = lambda q, g: 0.4 + 0.01 * q + g.normal(0, 0.002)      # noqa: E731
    rows = []
    for r, s in (("a", 0), ("weak", 2)):
        rows += _rows(r, {"gradcam": mid, "integrated_gradients": good, "random": lambda q, g: 0.7 + 0.01 * q},
                      seed=s)
    rows += [{**x, "explainer": "saliency"} for x in rows if x["explainer"] == "integrated_gradients"]
    df = pd.DataFrame(rows)
    ev = gather(_meta(), df, _effectiveness({"bm25": 0.3, "random": 0.1, "a": 0.3, "weak": 0.12}), [])
    t = trust_matrix(ev).set_index("ranker")
    ig = df[(df.ranker == "a") & (df.explainer == "integrated_gradients")].value.mean()
    assert t.loc["a", "integrated_gradients"] == f"{ig:.3f} ▲" and "saliency" not in t  # its alias everywhere
    screen = "\n".join(first_screen(ev, {}))
    assert "a: integrated_gradients = saliency · weak: integrated_gradients = saliency" in screen
    assert t.loc["a", "gradcam"] == f"{df[(df.ranker == 'a') & (df.explainer == 'gradcam')].value.mean():.3f}"
    assert t.loc["weak ⚠", "integrated_gradients"].startswith("_") and "▲" not in t.loc["weak ⚠"].to_string()
    card = "\n".join(answer_card(ev))
    assert "of 1 comparisons the competitor is 1 better" in card and "[anchored but not validated; n = 12]" in card
    assert "weak (below the quality floor" in "\n".join(not_supported(ev))


def test_explanation_cost_counts_each_explanation_once():
    """An explanation whose first metric row was skipped still counts (the matchpyramid_seed2 undercount)."""
    from suites.report.cost import explanation_costs
    rows = []
    for q in range(3):
        for m, st in (("deletion", "skipped" if q < 2 else "ok"), ("rank_deletion", "ok")):
            rows.append({"ranker": "r", "explainer": "x", "qid": f"q{q}", "docid": "d", "metric": m, "status": st,
                         "seconds": 0.1 * (q + 1), "forward_passes": 1, "backward_passes": 0, "peak_mem_mb": 1.0})
    exps = [{"ranker": "r", "explainer": "x", "qid": f"q{q}", "docid": "d", "forward_rows": 5 + q} for q in range(3)]
    c = explanation_costs(pd.DataFrame(rows), exps)
    assert len(c) == 3 and c.seconds.tolist() == pytest.approx([0.1, 0.2, 0.3]) and c.rows.tolist() == [5, 6, 7]


def test_operator_comparison_pairs_tables_that_skip_differently_and_tau_by_hand():
    from suites.report.operators import operator_pairs, operator_tau
    suite = {"ce": {"queries": 4, "skip": ["lime"]}, "ce_del": {"type": "ce", "removal": "delete", "skip": ["x"]},
             "other": {"type": "ce", "removal": "delete", "model": "elsewhere"}}
    assert operator_pairs(suite, {"ce", "ce_del", "other"}) == [("ce", "ce_del")]
    means_a = {"e1": 0.1, "e2": 0.2, "e3": 0.3, "e4": 0.4, "only_a": 0.9}
    means_b = {"e1": 0.2, "e2": 0.1, "e3": 0.3, "e4": 0.4}
    rows = _rows("ce", {e: (lambda q, g, v=v: v) for e, v in means_a.items()}, n=5)
    rows += _rows("ce_del", {e: (lambda q, g, v=v: v) for e, v in means_b.items()}, n=5)
    t = operator_tau(pd.DataFrame(rows), "ce", "ce_del", "rank_deletion")
    order = ["e1", "e2", "e3", "e4"]                                 # only_a was not run under delete
    assert t["explainers"] == 4 and t["tau"] == pytest.approx(
        kendalltau([means_a[e] for e in order], [means_b[e] for e in order]).statistic)
    assert t["best_a"] == "e1" and t["best_b"] == "e2"              # rank_deletion: lower is better


def test_seed_claim_tally_counts_real_competitors_per_granularity():
    from suites.report.claim import seed_claim_section
    from suites.report.evidence import gather
    rng = np.random.default_rng(0)
    rows = []
    for q in range(16):
        base = rng.uniform(0.3, 0.6)
        for e, v in (("gradcam", base), ("exact_pairs", base - 0.2), ("gradcam_l5", base + 1e-5),
                     ("integrated_gradients", base - 0.2 + rng.normal(0, 0.01)), ("exact_match", base - 0.3),
                     ("occlusion", base + 1e-4)):
            for m in ("pair_deletion", "rank_deletion"):
                rows.append({"ranker": "knrm", "explainer": e, "metric": m, "qid": f"q{q}", "docid": "d",
                             "value": v, "status": "ok", "message": None})
    ev = gather(_meta(), pd.DataFrame(rows), pd.DataFrame(), [])
    md = "\n".join(seed_claim_section(ev, {"knrm": "report/knrm.md"}))
    lines = {line.split(" | ")[0].strip("| "): line for line in md.splitlines() if line.startswith("| ")}
    # pair: integrated_gradients better, occlusion negligible; exact_pairs, the variant and the baseline left out
    assert "| pair_deletion | knrm | 2 | 1 | 0 | 1 | 0 | exploratory | integrated_gradients, occlusion | " \
           "integrated_gradients |" in lines["pair"]
    assert "| 2 | 1 | 0 | 1 | 0 | primary |" in lines["word"]
    assert "[knrm](report/knrm.md)" in md


def test_a_mostly_constant_document_explanation_competes_only_on_the_map_and_the_query():
    """RankingSHAP explains the query's words and gives every document word 0: its word curves read a tie order, so
    it is out of the word-level family, tally and matrix verdicts, and in at query level, where it is read."""
    from suites.report.answer import CONSTANT_MARK, trust_matrix
    from suites.report.claim import claim_rows
    from suites.report.evidence import gather
    se = {**SUITE_EXPLAINERS, "ranking_shap": {}}
    rows = []
    for m in ("rank_deletion", "query_deletion"):
        rows += _rows("knrm", {"gradcam": lambda q, g: 0.4 + g.normal(0, 0.01),
                               "ranking_shap": lambda q, g: 0.7 + g.normal(0, 0.01),
                               "integrated_gradients": lambda q, g: 0.2 + g.normal(0, 0.01)}, metric=m, n=16)
    exps = [{"ranker": "knrm", "explainer": e, "doc_scores": s} for e, s in
            (("ranking_shap", [0.0, 0.0, 0.0]), ("ranking_shap", [0.0, 0.0]), ("ranking_shap", [0.0, 1.0]),
             ("integrated_gradients", [0.1, 0.3]), ("gradcam", [0.2, 0.0]))]     # ranking_shap: 2 of 3 constant
    ev = gather(_meta(se), pd.DataFrame(rows), _effectiveness({"bm25": 0.3, "random": 0.1, "knrm": 0.3}), exps)
    assert ev.comparisons.constant == {("knrm", "ranking_shap")}
    fam = ev.comparisons.primary
    assert set(fam[fam.reference == "gradcam"].explainer) == {"integrated_gradients"}   # rank_deletion is headline
    claim = claim_rows(ev)
    assert set(claim[claim.granularity == "word"].explainer) == {"integrated_gradients"}
    assert set(claim[claim.granularity == "query"].explainer) == {"integrated_gradients", "ranking_shap"}
    cell = trust_matrix(ev).iloc[0]
    assert cell["ranking_shap"].endswith(CONSTANT_MARK) and "▼" not in cell["ranking_shap"]
    assert cell["integrated_gradients"].endswith("▲")


def test_seed_study_leaves_out_flagged_models_and_non_competitors():
    from suites.report.evidence import gather
    from suites.report.seed_section import seed_explainers, seed_section
    rows = []
    for r, s in (("knrm", 0), ("knrm_seed1", 1), ("knrm_seed2", 2)):
        rows += _rows(r, {"gradcam": lambda q, g: 0.4 + g.normal(0, 0.05),
                          "integrated_gradients": lambda q, g: 0.2 + g.normal(0, 0.05),
                          "saliency": lambda q, g: 0.3 + g.normal(0, 0.05),
                          "occlusion": lambda q, g: 0.5 + g.normal(0, 0.05),
                          "greedy": lambda q, g: 0.1, "greedy_c50": lambda q, g: 0.5 + g.normal(0, 0.05),
                          "random": lambda q, g: 0.7 + g.normal(0, 0.05)}, seed=s)
    exps = [{"ranker": "knrm", "explainer": "occlusion", "doc_scores": [1.0, 1.0]}]   # constant: left out
    rankers = {"knrm": {}, "knrm_seed1": {"type": "knrm", "train_seed": 1}, "knrm_seed2": {"type": "knrm",
                                                                                        "train_seed": 2}}
    ev = gather(_meta(rankers=rankers), pd.DataFrame(rows),
                _effectiveness({"bm25": 0.3, "random": 0.1, "knrm": 0.3, "knrm_seed1": 0.11, "knrm_seed2": 0.28}),
                exps)
    assert seed_explainers(ev) == {"gradcam", "integrated_gradients", "saliency"}
    md = "\n".join(seed_section(ev))
    assert "### knrm: knrm (seed 0), knrm_seed2 (seed 2)" in md and "knrm_seed1 (seed 1: below the quality" in md
    assert "| rank_deletion ↓ | 2 | 12 | 3 |" in md
