"""Agreement with ground truth.

- groundtruth_spearman: Spearman (scipy.stats, ties at mean ranks) between the explanation's
  doc_scores and bm25's exact Shapley shares over the document tokens that match the query
  (the others all share 0, and ranking them against each other says nothing); exact ground
  truth when the explained ranker is bm25, **agreement with BM25** otherwise (the report
  labels it so: a semantic ranker that should credit non-matching words is not wrong to
  disagree). Undefined (error) with fewer than two matching tokens or equal shares among
  them. Higher is better.
- rationale_precision: precision@k of the top-k attributed tokens against the
  planted rationale positions, k = number of rationale tokens (synthetic).
- rationale_auprc: average precision (scikit-learn) of the attributions as
  scores for the rationale labels (synthetic).
"""
from __future__ import annotations

import math

import numpy as np
from scipy.stats import spearmanr
from sklearn.metrics import average_precision_score


from .base import MetricResult, register_metric, require
from .curves import attribution_order


def exact_shapley(bm25, pair, analyzer: str = "index") -> np.ndarray:
    """bm25's exact Shapley shares [n_doc] for the pair's units. Original-text words (analyzer
    "words") are scored through their index terms; a word's share is the sum of its terms' shares."""
    from explainers.baselines import index_terms
    if analyzer == "index":
        q, d, owner = pair.query_tokens, pair.doc_tokens, None
    else:
        q = [t for ts in index_terms(analyzer, pair.query_tokens) for t in ts]
        terms = index_terms(analyzer, pair.doc_tokens)
        d = [t for ts in terms for t in ts]
        owner = [j for j, ts in enumerate(terms) for _ in ts]
    if not q or not d:
        return np.zeros(len(pair.doc_tokens))
    enc = bm25.encode(q, [d])
    shap, _ = bm25.exact_contributions(enc.q_ids[0], enc.d_ids[0])
    shap = shap.double().cpu().numpy()
    if owner is None:
        return shap
    out = np.zeros(len(pair.doc_tokens))
    np.add.at(out, np.asarray(owner[: len(shap)], dtype=int), shap)
    return out


def _spearman(a, b) -> MetricResult:
    if np.ptp(a) == 0 or np.ptp(b) == 0:
        return MetricResult(math.nan, "error", "constant attributions or ground truth: Spearman undefined")
    return MetricResult(float(spearmanr(a, b).statistic))


@register_metric("groundtruth_spearman", "higher", "Spearman rho vs bm25 exact Shapley shares over query-matching "
                 "tokens (ground truth on bm25, BM25 agreement elsewhere)", range=(-1, 1))
def groundtruth_spearman(ctx, **_):
    require(ctx.bm25 is not None, "no bm25 ground truth available")
    truth = exact_shapley(ctx.bm25, ctx.pair, ctx.ranker.analyzer)
    match = truth != 0
    info = {"matching_tokens": int(match.sum())}
    if match.sum() < 2:
        return MetricResult(math.nan, "error", f"{int(match.sum())} document token(s) match the query: Spearman "
                            "needs two", info=info)
    res = _spearman(np.asarray(ctx.explanation.doc_scores)[match], truth[match])
    res.info.update(info)
    return res


def _labels(ctx) -> np.ndarray:
    require(bool(ctx.rationale), "no rationale positions for this pair (synthetic relevant documents only)")
    y = np.zeros(len(ctx.explanation.doc_scores), dtype=int)
    y[[p for p in ctx.rationale if p < len(y)]] = 1
    require(y.any(), "rationale positions fall beyond the truncated document")
    return y


@register_metric("rationale_precision", "higher", "precision@k vs planted rationale, k = |rationale|", range=(0, 1))
def rationale_precision(ctx, **_):
    y = _labels(ctx)
    k = int(y.sum())
    top = attribution_order(ctx.explanation.doc_scores)[:k]
    return MetricResult(float(y[top].mean()), info={"k": k})


@register_metric("rationale_auprc", "higher", "average precision vs planted rationale", range=(0, 1))
def rationale_auprc(ctx, **_):
    y = _labels(ctx)
    s = np.asarray(ctx.explanation.doc_scores, dtype=np.float64)
    attribution_order(s)  # rejects NaN
    return MetricResult(float(average_precision_score(y, s)), info={"positives": int(y.sum())})
