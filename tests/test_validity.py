"""Metric validity: the corrupted reference explainer, the corruption test and headlines derived from it."""
import numpy as np
import pandas as pd
import pytest

from explainers import Incompatible, build_explainer, make_pair
from rankers.training import build_ranker
from suites.cli import main


def test_corrupted_shuffles_the_declared_share(synthetic):
    bm25 = build_ranker("bm25", synthetic)
    q = synthetic.query_tokens["q001"]
    d = synthetic.doc_tokens[synthetic.relevant("q001")[0]]
    pair = make_pair(bm25, q, d)
    ref = build_explainer("exact_shapley", bm25).attribute_pair(pair).doc_scores
    n = len(ref)
    for frac in (0.0, 0.25, 0.5, 1.0):
        got = build_explainer("corrupted", bm25, base="exact_shapley", fraction=frac, seed=3).attribute_pair(pair)
        assert sorted(got.doc_scores) == pytest.approx(sorted(ref))           # the same values, reassigned
        assert (got.doc_scores != ref).sum() <= round(frac * n)               # only the shuffled positions move
        assert got.info["shuffled"] == (round(frac * n) if round(frac * n) >= 2 else 0)
        if frac == 0:
            np.testing.assert_array_equal(got.doc_scores, ref)
    a, b = (build_explainer("corrupted", bm25, base="exact_shapley", fraction=0.5, seed=s).attribute_pair(pair)
            for s in (3, 3))
    np.testing.assert_array_equal(a.doc_scores, b.doc_scores)                 # seeded
    knrm = build_ranker("knrm", synthetic)
    with pytest.raises(Incompatible, match="exact_contributions"):
        build_explainer("corrupted", knrm, base="exact_shapley")


def _rows(values_by_explainer: dict[str, list[float]], metric: str) -> pd.DataFrame:
    return pd.DataFrame([{"ranker": "r", "explainer": e, "metric": metric, "qid": f"q{i}", "docid": "d", "value": v,
                          "status": "ok"} for e, vs in values_by_explainer.items() for i, v in enumerate(vs)])


def test_corruption_test_verdicts_and_demotion_by_hand():
    from suites.report.validity import demoted_metrics, validity_summary, validity_table
    explainers = {"exact_shapley": {}, "c50": {"type": "corrupted", "base": "exact_shapley", "fraction": 0.5},
                  "c100": {"type": "corrupted", "base": "exact_shapley", "fraction": 1.0}}
    rng = np.random.default_rng(0)
    base = rng.uniform(0.2, 0.3, 12)
    # rank_deletion (lower is better) degrades monotonically: valid
    good = _rows({"exact_shapley": base, "c50": base + 0.2, "c100": base + 0.4}, "rank_deletion")
    # rank_insertion (higher is better) improves at 50% corruption: not monotone, demoted
    bad = _rows({"exact_shapley": base + 0.5, "c50": base + 0.6, "c100": base + 0.1}, "rank_insertion")
    table = validity_table(pd.concat([good, bad]), explainers, ["rank_deletion", "rank_insertion"])
    rows = table.drop(columns=["_metric", "_ok", "_tested", "_circular"]).set_index("metric")
    text = "\n".join(validity_summary(table, ["r"], ["rank_deletion", "rank_insertion"]))
    assert demoted_metrics(table) == {"rank_insertion"}
    assert rows.loc["rank_deletion ↓", ["ranker", "reference", "queries"]].tolist() == ["r", "exact_shapley", 12]
    assert rows.loc["rank_deletion ↓", "verdict"] == "valid" and rows.loc["rank_insertion ↑", "verdict"] == "fails"
    assert "Demoted from headline by this test: rank_insertion." in text


def test_a_metric_failing_on_one_ranker_loses_its_verdicts_there_only_and_too_few_queries_decide_nothing():
    """rank_insertion fails on r and passes on s: no ★ lost, no verdicts on r only (its primary comparisons there
    leave the family). On 5 queries no outcome can pass (smallest exact p 2 / 2^5 = 0.0625): neither valid nor
    failing."""
    from suites.report.primary import Comparisons
    from suites.report.validity import demoted_metrics, validity_status, validity_summary, validity_table, withheld
    explainers = {"exact_shapley": {}, "c100": {"type": "corrupted", "base": "exact_shapley", "fraction": 1.0}}
    rng = np.random.default_rng(1)
    base = rng.uniform(0.2, 0.3, 12)
    bad = _rows({"exact_shapley": base + 0.1, "c100": base + 0.5}, "rank_insertion")            # worse clean: fails
    good = _rows({"exact_shapley": base + 0.5, "c100": base + 0.1}, "rank_insertion").assign(ranker="s")
    few = _rows({"exact_shapley": base[:5] + 0.5, "c100": base[:5] + 0.1}, "rank_insertion").assign(ranker="t")
    table = validity_table(pd.concat([bad, good, few]), explainers, ["rank_insertion"])
    assert withheld(table) == {("r", "rank_insertion")} and demoted_metrics(table) == set()
    assert validity_status(table, "r", "rank_insertion").startswith("fails")
    assert validity_status(table, "s", "rank_insertion") == "validated (exact_shapley)"
    assert validity_status(table, "t", "rank_insertion") == "not validated (too few queries: 5)"
    assert table.set_index("ranker").loc["t", "verdict"] == "too few queries"
    text = "\n".join(validity_summary(table, ["r", "s", "t"], ["rank_insertion"]))
    assert "No verdicts on r: rank_insertion (failed there)." in text and "Demoted" not in text
    df = pd.concat([bad, good]).assign(explainer=lambda d: d.explainer.map({"exact_shapley": "gradcam",
                                                                            "c100": "integrated_gradients"}))
    comps = Comparisons(df, {"integrated_gradients": {}}, ["r", "s"], ["rank_insertion"], ["rank_insertion"], set(),
                        withheld(table))
    assert set(comps.primary.ranker) == {"s"} and not comps.table("r", "rank_insertion", "gradcam").empty


def test_validity_section_from_a_run(tmp_path, capsys):
    p = tmp_path / "v.toml"
    p.write_text("""[suite]
name = "validity"
collection = "synthetic"
[samples]
queries = 8
top_k = 1
relevant = 1
[rankers.bm25]
[explainers.exact_shapley]
[explainers.shap_c50]
type = "corrupted"
base = "exact_shapley"
fraction = 0.5
[explainers.shap_c100]
type = "corrupted"
base = "exact_shapley"
fraction = 1.0
[metrics.rank_deletion]
max_steps = 8
[metrics.rank_insertion]
max_steps = 8
""")
    assert main(["run", str(p), "--out", str(tmp_path / "run"), "--quiet"]) == 0
    assert main(["report", str(tmp_path / "run")]) == 0
    text = (tmp_path / "run" / "RESULTS.md").read_text()
    validity = text.split("## Metric validity", 1)[1].split("\n## ", 1)[0]
    assert text.index("## Metric validity") < text.index("## Ranker pages")
    assert next(line for line in validity.splitlines() if line.startswith("| bm25 |")).count(
        "validated (exact_shapley)") == 2
    page = (tmp_path / "run" / "report" / "bm25.md").read_text()
    ladder = page.split("## Metric validity", 1)[1].split("\n## ", 1)[0]
    assert ladder.count("| valid |") == 2 and "rank_deletion ★" in page


def test_packed_results_regenerate_the_report_byte_for_byte(tmp_path, capsys):
    """`report --pack` writes the per-sample results to commit; on a clean clone (no results.sqlite) the same
    command regenerates RESULTS.md from them, identical."""
    import shutil
    p = tmp_path / "s.toml"
    p.write_text('[suite]\nname = "pack"\ncollection = "synthetic"\n[samples]\nqueries = 3\n[rankers.bm25]\n'
                 '[explainers.exact_shapley]\n[explainers.random]\n[metrics.rank_deletion]\nmax_steps = 5\n')
    run = tmp_path / "run"
    assert main(["run", str(p), "--out", str(run), "--quiet"]) == 0
    assert main(["report", str(run), "--pack"]) == 0
    first = (run / "RESULTS.md").read_text()
    packed = (run / "results.sqlite.gz").read_bytes()
    assert main(["report", str(run), "--pack"]) == 0
    assert (run / "results.sqlite.gz").read_bytes() == packed          # the same results, the same bytes
    clone = tmp_path / "clone"
    clone.mkdir()
    shutil.copy(run / "results.sqlite.gz", clone / "results.sqlite.gz")
    assert main(["report", str(clone)]) == 0
    again = (clone / "RESULTS.md").read_text()
    assert again == first.replace(str(run), str(clone))
    assert not (clone / "results.sqlite").exists()                      # read from a private copy
