"""Re-rank a split's BM25 candidates and score the run with ir-measures."""
from __future__ import annotations

MEASURE_NAMES = {"ndcg@10": "nDCG@10", "mrr@10": "RR@10", "map": "AP"}


def run_ranker(ranker, collection, split: str = "test", batch_size: int = 128) -> dict[str, dict[str, float]]:
    """qid -> docid -> score over each query's candidate list."""
    run = {}
    for q in collection.split(split):
        cands = collection.candidates(q)
        scores = ranker.score_tokens(collection.query_tokens[q], [collection.doc_tokens[d] for d in cands],
                                     batch_size=batch_size)
        run[q] = {d: float(s) for d, s in zip(cands, scores)}
    return run


def evaluate(ranker, collection, split: str = "test") -> dict:
    """{"queries", "ndcg@10", "mrr@10", "map"} on `split` (graded qrels, ir-measures/pytrec_eval)."""
    import ir_measures
    measures = {k: ir_measures.parse_measure(v) for k, v in MEASURE_NAMES.items()}
    run = run_ranker(ranker, collection, split)
    qrels = {q: collection.qrels.get(q, {}) for q in run}
    agg = ir_measures.calc_aggregate(list(measures.values()), qrels, run)
    return {"queries": len(run), **{k: float(agg[m]) for k, m in measures.items()}}
