"""Removal diagnostics (issue 32) by hand: the standing of a document after random removal, on a toy whose
scores are sums of word weights, against values computed here from the same random orders."""
import numpy as np
import pytest

from metrics.diagnostics import operator_dominated, random_removal_masks, removal_diagnostic
from toys import AdditiveRanker


def test_removal_diagnostic_by_hand():
    w = {"a": 4.0, "b": 3.0, "c": 2.0, "d": 1.0}
    r = AdditiveRanker(w)
    doc = ["a", "b", "c", "d"]
    others = np.array([9.0, 7.5, 5.5, 2.5, 0.5])    # the full document (10) outscores all five
    got = removal_diagnostic(r, ["a"], doc, others, shares=(0.25, 0.5), n_orders=3, seed=7)
    assert got["full"] == 1.0 and got["empty"] == 0.0   # 0 is below every other candidate
    rng = np.random.default_rng(7)
    orders = [rng.permutation(4) for _ in range(3)]
    for share, k in ((0.25, 1), (0.5, 2)):
        st = []
        for o in orders:
            s = 10.0 - sum(w[doc[j]] for j in o[:k])
            st.append(1 - sum(x > s for x in others) / 5)   # rank among others, ties in the document's favour
        assert got["shares"][share] == pytest.approx(np.mean(st))
    assert got["orders"] == 3


def test_masks_remove_at_least_one_word_and_end_empty():
    masks, keys = random_removal_masks(3, (0.1, 0.5), 2, seed=0)
    assert masks.shape == (5, 3) and keys[-1] == (1.0, None)
    assert (masks[:2].sum(1) == 2).all()          # round(0.3) = 0 -> at least one word removed
    assert (masks[2:4].sum(1) == 1).all()          # round(1.5) = 2 removed
    assert masks[-1].sum() == 0


def test_operator_dominated_label():
    assert operator_dominated([0.1, 0.3, 0.9]) and not operator_dominated([0.5, 0.6, 0.2])
    assert not operator_dominated([])


def test_report_shows_diagnostics_and_draws_no_verdicts_for_an_operator_dominated_ranker(tmp_path, capsys,
                                                                                           monkeypatch):
    from pathlib import Path

    from suites.cli import main
    monkeypatch.syspath_prepend(str(Path(__file__).parent))
    p = tmp_path / "s.toml"
    p.write_text('[suite]\nname = "diag"\ncollection = "synthetic"\n[samples]\nqueries = 4\ntop_k = 1\nrelevant = 0\n'
                 '[rankers.bm25]\n[rankers.len]\ntype = "callable"\nfunction = "fault_rankers:length"\n'
                 '[explainers.random]\n[explainers.occlusion]\n[metrics.rank_deletion]\n')
    out = tmp_path / "run"
    assert main(["run", str(p), "--allow-code", "--out", str(out), "--quiet"]) == 0
    assert main(["report", str(out)]) == 0
    md = (out / "RESULTS.md").read_text()
    sec = md.split("## Removal diagnostics", 1)[1].split("\n## ", 1)[0]
    rows = {line.split(" | ")[0].strip("| "): line for line in sec.splitlines() if line.startswith("| ")}
    assert rows["len"].rstrip(" |").endswith("operator-dominated") and rows["bm25"].rstrip(" |").endswith("ok")
    assert md.index("## The answer") < md.index("## Removal diagnostics") < md.index("## Ranker pages")
    matrix = md.split("## Trust matrix", 1)[1].split("\n## ", 1)[0]
    row = next(line for line in matrix.splitlines() if line.startswith("| [len ⚠]"))
    assert "operator-dominated" in md.split("What this evidence does not support", 1)[1]
    assert "_" in row and not any(mark in row for mark in "▲▼≈?")      # greyed, no verdict
    len_page = (out / "report" / "len.md").read_text()
    assert "flagged: operator-dominated" in len_page and "**better**" not in len_page and "**worse**" not in len_page
    assert "### bm25: versus random" in (out / "report" / "bm25.md").read_text()


# ----------------------------------------------------------------------------- the search oracle
def _auc_loss(weights_of, counts, kind="deletion"):
    """Deletion AUC of the raw score along each order (trapezoid over the fraction removed): lower is better."""
    from metrics.curves import auc

    def loss(orders):
        out = []
        for o in orders:
            ys = [weights_of([j for j in range(len(o)) if j not in set(o[:c])]) for c in counts]
            out.append(auc(counts / counts[-1], np.array(ys)))
        return np.array(out)
    return loss


def test_local_search_beats_greedy_where_a_key_word_is_written_twice():
    """score = 10 while a copy of "key" is present, plus small weights: greedy removes the small words first
    (removing one copy of "key" alone changes nothing); moving both copies to the front is found."""
    from explainers.search import greedy_order, improve_order
    doc = ["key", "a", "b", "c", "key"]
    small = {"a": 3.0, "b": 2.0, "c": 1.0}

    def score_of(kept):
        words = [doc[j] for j in kept]
        return 10.0 * ("key" in words) + sum(small.get(w, 0.0) for w in words)

    counts = np.arange(6)

    def score(masks):
        return np.array([score_of([j for j in range(5) if m[j] > 0]) for m in masks.numpy()])
    greedy = greedy_order(score, 5, counts, "deletion")
    loss = _auc_loss(score_of, counts)
    ids = np.array([0, 1, 2, 3, 0])
    better, used = improve_order(greedy, loss, ids, max_orders=20)
    assert loss([better])[0] < loss([greedy])[0]
    assert set(better[:2].tolist()) == {0, 4} and used <= 20


def test_local_search_keeps_an_optimal_order_on_an_additive_toy():
    from itertools import permutations

    from explainers.search import improve_order
    w = np.array([0.5, 4.0, 1.0, 3.0, 2.0])
    counts = np.arange(6)
    loss = _auc_loss(lambda kept: float(w[kept].sum()), counts)
    optimal = np.argsort(-w)
    best_possible = min(loss([np.array(p)])[0] for p in permutations(range(5)))
    got, _ = improve_order(optimal, loss, np.arange(5), max_orders=30)
    assert loss([got])[0] == pytest.approx(best_possible) == pytest.approx(loss([optimal])[0])
    worst = optimal[::-1].copy()
    got, _ = improve_order(worst, loss, np.arange(5), max_orders=200, seed=1)
    assert loss([got])[0] <= loss([worst])[0]  # never worse than its seed


def test_knapsack_against_every_choice():
    from itertools import product

    from explainers.search import _knapsack
    rng = np.random.default_rng(3)
    for _ in range(30):
        values = [rng.normal(size=rng.integers(1, 4)) for _ in range(rng.integers(1, 5))]
        k = int(rng.integers(1, sum(len(v) for v in values) + 1))
        best = max(sum(v[j - 1] for v, j in zip(values, c) if j) for c in product(*[range(len(v) + 1) for v in values])
                   if sum(c) == k)
        got = _knapsack(values, k)
        assert sum(got) == k and sum(v[j - 1] for v, j in zip(values, got) if j) == pytest.approx(best)


def _bm25_like(doc, idf):
    """Score of the kept words: sum over query words of idf * tf / (tf + 1) (saturating in tf, adds over words)."""
    def score_of(kept):
        words = [doc[j] for j in kept]
        return sum(v * words.count(w) / (words.count(w) + 1) for w, v in idf.items())

    def score(masks):
        return np.array([score_of([j for j in range(len(doc)) if m[j] > 0]) for m in masks.numpy()])
    return score_of, score


def test_type_greedy_insertion_is_best_at_every_step_where_token_greedy_takes_copies():
    """Insertion on a saturating additive score: one step of 2 tokens. Token greedy ranks tokens by their single
    effect (each copy of "x" alone: 3 * 1/2 = 1.5) and takes two copies of "x" (score 3 * 2/3 = 2); the best pair
    is one "x" and the "y" (1.5 + 2 * 1/2 = 2.5), found by the type greedy's knapsack, checked against every pair."""
    from itertools import combinations

    from explainers.search import greedy_order, type_greedy_order
    doc = ["x", "x", "x", "y", "z"]
    idf = {"x": 3.0, "y": 2.0}
    score_of, score = _bm25_like(doc, idf)
    counts = np.array([0, 2, 5])
    ids = np.array([0, 0, 0, 1, 2])
    best = max(score_of(list(c)) for c in combinations(range(5), 2))
    tok = greedy_order(score, 5, counts, "insertion")
    typed, rows = type_greedy_order(score, 5, counts, "insertion", ids)
    assert score_of(tok[:2].tolist()) == pytest.approx(2.0)
    assert score_of(typed[:2].tolist()) == pytest.approx(best) == pytest.approx(2.5)
    assert sorted(typed.tolist()) == list(range(5)) and rows == 1 + 5  # the step's start and one row per token


def test_type_greedy_deletion_takes_every_copy_of_a_key_word_together():
    """Deletion with one token a step: removing one copy of "key" alone changes nothing (score = 10 while a copy
    is present), so token greedy removes "a" first; the type greedy scores both copies removed at once, a move
    that does not fit one token: at the second step (2 tokens due) it takes both copies."""
    from explainers.search import type_greedy_order
    doc = ["key", "a", "b", "key"]
    small = {"a": 3.0, "b": 1.0}

    def score(masks):
        out = []
        for m in masks.numpy():
            words = [doc[j] for j in range(4) if m[j] > 0]
            out.append(10.0 * ("key" in words) + sum(small.get(w, 0.0) for w in words))
        return np.array(out)
    ids = np.array([0, 1, 2, 0])
    order, _ = type_greedy_order(score, 4, np.array([0, 2, 4]), "deletion", ids)
    assert set(order[:2].tolist()) == {0, 3}


def test_search_order_stays_within_its_budget_and_starts_from_the_better_seed():
    from explainers.search import SEARCH_BUDGET, greedy_rows, search_order
    doc = ["x", "x", "x", "y", "z", "y"]
    idf = {"x": 3.0, "y": 2.0}
    score_of, score = _bm25_like(doc, idf)
    counts = np.array([0, 2, 4, 6])
    calls = []

    def counted(masks):
        calls.append(len(masks))
        return score(masks)

    def loss(orders):  # minus the insertion AUC of the raw score
        calls.append(len(orders) * len(counts))
        return np.array([-np.trapezoid([score_of(o[:c].tolist()) for c in counts], counts / 6) for o in orders])
    ids = np.array([0, 0, 0, 1, 2, 1])
    order, cost = search_order(counted, loss, 6, counts, "insertion", ids)
    assert cost["seed"] == "type_greedy" and -loss([order])[0] >= -cost["greedy_loss"]
    assert sum(calls[:-1]) <= SEARCH_BUDGET * greedy_rows(6, counts)
    assert cost["greedy_rows"] + cost["type_greedy_rows"] + cost["search_rows"] == sum(calls[:-1])


def test_anchors_section_counts_pairs_where_an_explainer_beats_the_oracle(tmp_path, capsys):
    import json as js
    import sqlite3

    from suites.cli import main
    p = tmp_path / "s.toml"
    p.write_text('[suite]\nname = "anch"\ncollection = "synthetic"\n[samples]\nqueries = 4\ntop_k = 2\nrelevant = 0\n'
                 '[rankers.bm25]\n[explainers.random]\n[explainers.occlusion]\nwindow = 1\n[explainers.greedy]\n'
                 '[metrics.rank_deletion_gain]\nmax_steps = 5\n')
    out = tmp_path / "run"
    assert main(["run", str(p), "--out", str(out), "--quiet"]) == 0
    assert main(["report", str(out)]) == 0
    md = (out / "RESULTS.md").read_text()
    row = next(line for line in md.split("## Anchors", 1)[1].splitlines() if line.startswith("| bm25 | deletion"))
    con = sqlite3.connect(out / "results.sqlite")
    got = con.execute("SELECT qid, docid, explainer, info FROM results WHERE status = 'ok' AND explainer != 'greedy'"
                      " AND metric = 'rank_deletion_gain'").fetchall()
    con.close()
    best: dict = {}
    for q, d, _, info in got:
        i = js.loads(info)
        best[(q, d)] = max(best.get((q, d), -1.0), i["oracle_auc"] - i["auc"])
    share = sum(v > 0.01 for v in best.values()) / len(best)
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[2] == str(len(best)) and cells[3] == f"{share:.0%}"


def test_anchors_set_the_oracles_cost_against_shapley_sampling_by_hand():
    import json

    import pandas as pd

    from suites.report.diagnostics import anchors_section
    rows = []
    for q, (g, srch) in enumerate(((100, 60), (80, 40), (120, 0))):
        for e, auc in (("shapley_sampling", 0.30 if q == 0 else 0.50), ("random", 0.6)):
            rows.append({"ranker": "r", "explainer": e, "metric": "rank_deletion_gain", "qid": f"q{q}", "docid": "d",
                         "value": 0.5, "status": "ok", "message": None,
                         "info": json.dumps({"auc": auc, "oracle_auc": 0.40, "random_auc": 0.6,
                                             "oracle": {"greedy_rows": g, "search_rows": srch}})})
    exps = [{"ranker": "r", "explainer": "shapley_sampling", "forward_rows": n} for n in (90, 110, 130)]
    md = "\n".join(anchors_section(pd.DataFrame(rows), {}, exps))
    row = next(line for line in md.splitlines() if line.startswith("| r | deletion"))
    # oracle rows per pair: 160, 120, 120 -> median 120; the sampler: median 110; it beats the oracle (AUC 0.30 <
    # 0.40 - 0.01) on 1 of its 3 pairs
    assert row.endswith("| 120 | 110 | 33% |") and "shapley_sampling's rows per explanation" in md


def test_anchors_say_whether_the_oracle_could_start_from_the_explanations():
    """An oracle that recorded its starts (it began from the pair's explanations where they were better): the
    section says no explanation can beat it and counts the pairs it started from one (1 of 2 here, seed
    "gradcam"); a run whose oracle recorded none says an explanation could beat it, and that column is '-'."""
    import json

    import pandas as pd

    from suites.report.diagnostics import anchors_section

    def frame(with_starts):
        rows = []
        for q, seed in (("q0", "gradcam"), ("q1", "type_greedy")):
            oracle = {"greedy_rows": 10, "search_rows": 5, "seed": seed, **({"starts": 2} if with_starts else {})}
            rows.append({"ranker": "r", "explainer": "gradcam", "metric": "rank_deletion_gain", "qid": q,
                         "docid": "d", "value": 1.0, "status": "ok", "message": None,
                         "info": json.dumps({"auc": 0.4, "oracle_auc": 0.4, "random_auc": 0.6, "oracle": oracle})})
        return pd.DataFrame(rows)
    new = "\n".join(anchors_section(frame(True), {}))
    old = "\n".join(anchors_section(frame(False), {}))
    assert "so no explanation can beat it" in new and "| r | deletion | 2 | 0% | +0.000 | 0% | 50% | 0 |" in new
    assert "an explanation could beat it" in old and "| r | deletion | 2 | 0% | +0.000 | 0% | - | 0 |" in old
