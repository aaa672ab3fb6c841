"""Faithfulness of one explanation, from batched perturbations of the explained document.

Removal operator: the ranker's token mask (0 = token removed; bm25 keeps the
document length fixed, interaction rankers zero the token's interactions).

- deletion / insertion (Petsiuk et al. 2018): tokens ordered by attribution
  (descending, ties by position) are removed from the full document / added to
  the empty one; y = (s_k - s_empty) / (s_full - s_empty), x = fraction of
  tokens; value = trapezoid AUC in x in [0, 1]. Deletion: lower is better;
  insertion: higher. Unless s_full > s_empty the normalisation is undefined or
  inverted: the value is NaN with status error (the rank variants still apply).
- rank_deletion / rank_insertion: the same steps, y = the document's rank among
  its query's other candidates (unperturbed); value = AUC of the standing
  1 - (rank - 1) / n_others in [0, 1] (same directions as above).
- comprehensiveness / sufficiency (ERASER, DeYoung et al. 2020): AOPC over the
  top-k% bins {1, 5, 10, 20, 50} (k tokens = ceil(k% n), at least 1) of
  (s_full - s_without_topk) and (s_full - s_only_topk), divided by
  (s_full - s_empty) so rankers are comparable. Comprehensiveness: higher is
  better; sufficiency: lower.
- pairwise_flip: for the margin s(q,d+) - s(q,d-), the fraction of d+'s tokens
  deleted in attribution order before d+ scores below d- (every step
  evaluated, or `max_steps` evenly spaced ones: then the value is the first
  evaluated fraction at which it has flipped, an upper bound); 1.0 with
  message 'never flips' if it never does. Lower is better.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from rankers.params import Float, Int, Param

from .base import MetricResult, Skip, register_metric, require
from .curves import EMPTY_NOT_BELOW, attribution_order, auc, curve_masks, normalise, ranks_among, step_counts

ERASER_BINS = (1, 5, 10, 20, 50)
_BINS = Param((list,), list(ERASER_BINS), each=Float(None, lo=0.01, hi=100.0), doc="top-k% bins, each in (0, 100]")


def _order(ctx):
    return attribution_order(ctx.explanation.doc_scores)


def _full_empty(ctx):
    """Masks [2, n]: the full and the empty document."""
    n = len(ctx.pair.d_ids)
    return torch.stack([torch.ones(n), torch.zeros(n)])


class _Curve:
    kind = "deletion"
    rank = False

    @classmethod
    def plan(cls, ctx, max_steps=20):
        if cls.rank:
            require(ctx.other_scores is not None and len(ctx.other_scores) > 0, "no candidate list for ranks")
        order = _order(ctx)
        counts = step_counts(len(order), max_steps)
        return torch.cat([curve_masks(order, counts, cls.kind), _full_empty(ctx)])

    @classmethod
    def finish(cls, ctx, scores, max_steps=20):
        n = len(ctx.pair.d_ids)
        counts = step_counts(n, max_steps)
        x = counts / n
        s, s_full, s_empty = scores[:-2], scores[-2], scores[-1]
        if cls.rank:
            r = ranks_among(s, ctx.other_scores)
            standing = 1 - (r - 1) / len(ctx.other_scores)
            return MetricResult(auc(x, standing), curve={"x": x.tolist(), "y": r.astype(float).tolist()})
        y = normalise(s, s_full, s_empty)
        if y is None:
            return MetricResult(math.nan, "error", EMPTY_NOT_BELOW, curve={"x": x.tolist(), "y": s.tolist()},
                                info={"s_full": float(s_full), "s_empty": float(s_empty)})
        return MetricResult(auc(x, y), curve={"x": x.tolist(), "y": y.tolist()},
                            info={"s_full": float(s_full), "s_empty": float(s_empty)})


@register_metric("deletion", "lower", "AUC of normalised score vs fraction deleted", range=(None, None), curve=True,
                 params={"max_steps": Int(20, lo=1, doc="curve steps (fewer when the document is shorter)")})
class Deletion(_Curve):
    kind = "deletion"


@register_metric("insertion", "higher", "AUC of normalised score vs fraction inserted", range=(None, None),
                 curve=True, params={"max_steps": Int(20, lo=1, doc="curve steps (fewer when the document is shorter)")})
class Insertion(_Curve):
    kind = "insertion"


@register_metric("rank_deletion", "lower", "AUC of rank standing vs fraction deleted", range=(0, 1), curve=True,
                 params={"max_steps": Int(20, lo=1, doc="curve steps (fewer when the document is shorter)")})
class RankDeletion(_Curve):
    kind, rank = "deletion", True


@register_metric("rank_insertion", "higher", "AUC of rank standing vs fraction inserted", range=(0, 1), curve=True,
                 params={"max_steps": Int(20, lo=1, doc="curve steps (fewer when the document is shorter)")})
class RankInsertion(_Curve):
    kind, rank = "insertion", True


class _Eraser:
    keep_top = False

    @classmethod
    def plan(cls, ctx, bins=ERASER_BINS):
        order = _order(ctx)
        n = len(order)
        counts = np.array([max(1, math.ceil(b / 100 * n)) for b in bins])
        return torch.cat([curve_masks(order, counts, "insertion" if cls.keep_top else "deletion"), _full_empty(ctx)])

    @classmethod
    def finish(cls, ctx, scores, bins=ERASER_BINS):
        s, s_full, s_empty = scores[:-2], scores[-2], scores[-1]
        span = s_full - s_empty
        if normalise(s, s_full, s_empty) is None:
            return MetricResult(math.nan, "error", EMPTY_NOT_BELOW)
        drops = (s_full - s) / span
        return MetricResult(float(drops.mean()), info={"bins": list(bins), "drops": drops.tolist()})


@register_metric("comprehensiveness", "higher", "AOPC of normalised score drop, top-k% removed",
                 range=(None, None), params={"bins": _BINS})
class Comprehensiveness(_Eraser):
    keep_top = False


@register_metric("sufficiency", "lower", "AOPC of normalised score drop, only top-k% kept", range=(None, None),
                 params={"bins": _BINS})
class Sufficiency(_Eraser):
    keep_top = True


@register_metric("pairwise_flip", "lower", "fraction of d+ tokens deleted before s(q,d+) < s(q,d-)",
                 range=(0, 1), params={"max_steps": Int(None, lo=1, nullable=True, doc="null: one token at a time")})
class PairwiseFlip:
    @staticmethod
    def plan(ctx, max_steps=None):
        require(ctx.contrast_score is not None, "no contrast document d- (needs a lower-ranked candidate)")
        order = _order(ctx)
        return curve_masks(order, step_counts(len(order), max_steps), "deletion")

    @staticmethod
    def finish(ctx, scores, max_steps=None):
        n = len(ctx.pair.d_ids)
        x = step_counts(n, max_steps) / n
        if scores[0] < ctx.contrast_score:
            raise Skip("d+ already scores below d-")
        below = np.nonzero(scores < ctx.contrast_score)[0]
        curve = {"x": x.tolist(), "y": (scores - ctx.contrast_score).tolist()}
        if len(below) == 0:
            return MetricResult(1.0, message="never flips", curve=curve)
        return MetricResult(float(x[below[0]]), curve=curve)


@register_metric("listwise_tau", "lower", "Kendall tau, candidate ranking before vs after deleting top-k%",
                 range=(-1, 1), params={"k_frac": Float(0.2, lo=0.01, hi=1.0, doc="fraction of top tokens deleted"),
                                        "batch_size": Int(256, lo=1)})
def listwise_tau_metric(ctx, **_):
    raise Skip("listwise_tau is computed per query by the suite runner (metrics.faithfulness.listwise_tau)")


def listwise_tau(ranker, query_tokens, docs_tokens, explanations, k_frac: float = 0.2,
                 batch_size: int = 256) -> MetricResult:
    """Kendall tau (scipy.stats) between the candidates' original scores and their
    scores after deleting each document's top ceil(k_frac * n) attributed tokens.
    Lower = the explanations capture what orders the list (RankingSHAP-style).
    When every score is tied after deletion the order is erased: value 0."""
    from scipy.stats import kendalltau

    if len(docs_tokens) < 2:
        raise Skip("listwise_tau needs at least two candidates")
    enc = ranker.encode(list(query_tokens), [list(t) for t in docs_tokens])  # truncated and padded once
    q_ids, d_ids = enc.q_ids.repeat_interleave(2, 0), enc.d_ids.repeat_interleave(2, 0)  # rows: intact, deleted
    mask = torch.ones(d_ids.shape, device=d_ids.device)
    for i, (n, ex) in enumerate(zip(enc.n_doc, explanations)):
        order = attribution_order(ex.doc_scores)
        k = max(1, math.ceil(k_frac * len(order)))
        mask[2 * i + 1, :n] = curve_masks(order, np.array([k]), "deletion")[0]
    with torch.no_grad():  # one batched call (chunked) for the whole list
        s = torch.cat([ranker(q_ids[a: a + batch_size], d_ids[a: a + batch_size], mask[a: a + batch_size])
                       for a in range(0, len(d_ids), batch_size)]).double().cpu().numpy()
    before, after = s[0::2], s[1::2]
    info = {"k_frac": k_frac, "n_docs": len(before)}
    if np.ptp(before) == 0:
        return MetricResult(math.nan, "error", "all candidates score the same: no ranking to compare", info=info)
    if np.ptp(after) == 0:  # tau-b is undefined; no trace of the original order is left
        return MetricResult(0.0, message="ranking erased: all scores tied after deletion", info=info)
    return MetricResult(float(kendalltau(before, after).statistic), info=info)
