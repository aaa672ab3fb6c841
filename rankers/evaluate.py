"""Re-rank a split's BM25 candidates and score the run with ir-measures."""
from __future__ import annotations

MEASURE_NAMES = {"ndcg@10": "nDCG@10", "mrr@10": "RR@10", "map": "AP"}


import numpy as np
import torch


def run_ranker(ranker, collection, split: str = "test", batch_size: int = 128) -> dict[str, dict[str, float]]:
    """qid -> docid -> score over each query's candidate list."""
    run = {}
    queries, docs = collection.units(ranker.analyzer)
    for q in collection.split(split):
        cands = collection.candidates(q)
        scores = ranker.score_tokens(queries[q], [docs[d] for d in cands], batch_size=batch_size)
        run[q] = {d: float(s) for d, s in zip(cands, scores)}
    return run


@torch.no_grad()
def empty_document_standing(ranker, collection, run: dict[str, dict[str, float]]) -> dict:
    """Where the empty document (every token of the top candidate removed by the ranker's mask)
    ranks among each query's candidates: "empty_below_95": fraction of queries in which it scores
    below at least 95% of the candidates; "empty_below_mean": mean fraction of candidates above it.
    Removing all evidence should lower the score, or deletion curves end above where they start."""
    fracs = []
    queries, docs = collection.units(ranker.analyzer)
    for q, scores in run.items():
        enc = ranker.encode(queries[q], [docs[next(iter(scores))]])
        empty = float(ranker(enc.q_ids, enc.d_ids, torch.zeros(enc.d_ids.shape, device=enc.d_ids.device))[0])
        fracs.append(float(np.mean(np.array(list(scores.values())) > empty)))
    return {"empty_below_95": float(np.mean(np.array(fracs) >= 0.95)), "empty_below_mean": float(np.mean(fracs))}


def evaluate(ranker, collection, split: str = "test", empty: bool = False,
             run: dict[str, dict[str, float]] | None = None) -> dict:
    """{"queries", "ndcg@10", "mrr@10", "map"} on `split` (graded qrels, ir-measures/pytrec_eval);
    with `empty`, also `empty_document_standing`. `run`: the ranker's `run_ranker` scores when already
    computed (e.g. by the same weights under another removal operator, which scores unperturbed text alike)."""
    run = run_ranker(ranker, collection, split) if run is None else run
    out = evaluate_run(collection, run)
    return {**out, **empty_document_standing(ranker, collection, run)} if empty else out


def evaluate_run(collection, run: dict[str, dict[str, float]]) -> dict:
    """{"queries", "ndcg@10", "mrr@10", "map"} of a run (qid -> docid -> score) with ir-measures: nDCG on the
    graded judgments; MRR and MAP count a document relevant from grade `collection.rel_threshold` (TREC DL: 2,
    its convention; elsewhere 1)."""
    import ir_measures
    rel = int(getattr(collection, "rel_threshold", 1))
    names = {k: (v if k == "ndcg@10" or rel == 1 else v.replace("@", f"(rel={rel})@") if "@" in v
                 else f"{v}(rel={rel})") for k, v in MEASURE_NAMES.items()}
    measures = {k: ir_measures.parse_measure(v) for k, v in names.items()}
    qrels = {q: collection.qrels.get(q, {}) for q in run}
    agg = ir_measures.calc_aggregate(list(measures.values()), qrels, run)
    return {"queries": len(run), **{k: float(agg[m]) for k, m in measures.items()}}


def per_query_ndcg(collection, run: dict[str, dict[str, float]]) -> dict[str, float]:
    """qid -> nDCG@10 of a run (ir-measures, graded judgments): the unit of a paired test between rankers."""
    import ir_measures
    m = ir_measures.parse_measure(MEASURE_NAMES["ndcg@10"])
    qrels = {q: collection.qrels.get(q, {}) for q in run}
    out = {q: 0.0 for q in run}
    for x in ir_measures.iter_calc([m], qrels, run):
        out[x.query_id] = float(x.value)
    return out
