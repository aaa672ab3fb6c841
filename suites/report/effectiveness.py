"""RESULTS.md "Ranker effectiveness": nDCG@10, MRR@10 and MAP of every ranker on the test split, what it read,
its training, and a paired test on per-query nDCG@10 against the candidates' first stage where they came with one
(TREC DL's shipped BM25), else against the run's bm25 row (Cranfield, Vaswani: the candidates are BM25's top-100)."""
from __future__ import annotations

import numpy as np
import pandas as pd

from ..run.prepare import FIRST_STAGE
from ..stats import mean_ci, paired_test
from .common import fmt, md_table

PER_QUERY = "ndcg@10 per query"


#: the row a collection's rankers are compared with where the candidates came without a first stage of their own
#: (Cranfield, Vaswani: rexbench's BM25 top-100, which its `bm25` ranker re-ranks)
BM25 = "bm25"


def reference_of(names) -> str | None:
    """The row a collection's rankers are tested against: the candidates' own first stage where the run has it,
    else the run's bm25 row (the same candidates re-ranked by BM25), else None."""
    names = set(names)
    return FIRST_STAGE if FIRST_STAGE in names else (BM25 if BM25 in names else None)


def _paired_reference(rankers: pd.DataFrame) -> dict[tuple[str, str], tuple[float, float, float, float, int, str]]:
    """(collection, ranker) -> (mean paired difference of per-query nDCG@10 against the collection's reference
    row (`reference_of`), its query-bootstrap 95% CI low and high, the Wilcoxon p, n queries both scored, the
    reference's name)."""
    if PER_QUERY not in rankers:
        return {}
    out = {}
    for coll, g in rankers.groupby("collection", sort=False):
        ref = reference_of(g.ranker)
        base = next((v for v in g[g.ranker == ref][PER_QUERY] if isinstance(v, dict)), None)
        if base is None:
            continue
        for r, pq in zip(g.ranker, g[PER_QUERY]):
            if r == ref or not isinstance(pq, dict):
                continue
            q = sorted(set(pq) & set(base))
            if len(q) < 2:
                continue
            a, b = np.array([pq[x] for x in q]), np.array([base[x] for x in q])
            m, lo, hi = mean_ci(a - b)
            out[(coll, r)] = (m, lo, hi, paired_test(a, b), len(q), ref)
    return out


def versus_reference(rankers: pd.DataFrame) -> dict[tuple[str, str], str]:
    """(collection, ranker) -> "+0.052 [+0.010, +0.094], p=0.01, n=43": the mean paired difference of per-query
    nDCG@10 against the collection's reference row (`reference_of`), its query-bootstrap CI and the Wilcoxon p."""
    return {k: f"{m:+.3f} [{lo:+.3f}, {hi:+.3f}], p={p:.2g}, n={n}"
            for k, (m, lo, hi, p, n, _) in _paired_reference(rankers).items()}


def below_reference(rankers: pd.DataFrame, alpha: float = 0.05) -> dict[str, tuple[float, float, str]]:
    """ranker -> (its nDCG@10, the reference's, the reference's name) for the rankers that rank below their
    collection's reference row (`reference_of`): the paired 95% CI of the per-query difference lies below 0 and
    the Wilcoxon p is below `alpha`."""
    if not {"collection", "ndcg@10", PER_QUERY} <= set(rankers.columns):
        return {}
    own = {(c, r): float(v) for c, r, v in zip(rankers.collection, rankers.ranker, rankers["ndcg@10"])}
    return {r: (own[(c, r)], own[(c, ref)], ref) for (c, r), (m, lo, hi, p, n, ref) in
            _paired_reference(rankers).items() if hi < 0 and p < alpha}


def effectiveness_section(rankers: pd.DataFrame) -> list[str]:
    if rankers.empty:
        return []
    md = ["## Ranker effectiveness (test split, BM25 top-100 re-ranked, ir-measures)", ""]
    t = rankers.copy()
    t["train s"] = [fmt(x, 1) if x is not None and not pd.isna(x) else "-" for x in t.get("train_seconds")]
    for c in ("ndcg@10", "mrr@10", "map"):
        t[c] = t[c].map(lambda v: fmt(v, 4))
    cols = ["collection", "ranker", "queries", "ndcg@10", "mrr@10", "map", "train s"]
    if "units" in t:  # what the ranker read: original-text words or index tokens
        t["units"] = t["units"].map(lambda v: v if isinstance(v, str) else "index")
        cols.insert(2, "units")
    vs = versus_reference(rankers)
    refs = {reference_of(g.ranker) for _, g in rankers.groupby("collection", sort=False)} - {None}
    ref = {FIRST_STAGE: "first stage", BM25: BM25}[next(iter(refs))] if len(refs) == 1 else "reference"
    if vs:
        col = f"nDCG@10 vs {ref} [95% CI], Wilcoxon"
        t[col] = [vs.get((c, r), "-") for c, r in zip(t.collection, t.ranker)]
        cols.insert(cols.index("ndcg@10") + 1, col)
    if "removal_training" in t and t.removal_training.map(lambda v: isinstance(v, dict)).any():
        t["removal training"] = t.removal_training.map(
            lambda v: f"{v.get('operator')}, {float(v.get('share', 0)):.0%} of pairs" if isinstance(v, dict) else "-")
        cols.append("removal training")
    if "empty_below_95" in t:
        t["empty doc below 95% of candidates"] = t.empty_below_95.map(lambda v: f"{v:.0%} of queries"
                                                                      if v == v else "-")
        cols.append("empty doc below 95% of candidates")
    md += [md_table(t[cols]), ""]
    if vs:
        against = {FIRST_STAGE: "the candidates' own first stage (as given)",
                   BM25: "the bm25 row (the candidates are BM25's top-100; bm25 re-ranks them)"}
        md += [f"nDCG@10 vs {ref}: the mean paired difference of per-query nDCG@10 against "
               + "; ".join(against[x] for x in sorted(refs))
               + ", a 95% CI resampling queries, the Wilcoxon signed-rank p and n queries.", ""]
    return md + ["The last column: in what share of queries the empty document (every token removed by the ranker's "
                 "mask) scores below at least 95% of the candidates; removing all evidence should lower the score.",
                 ""]
