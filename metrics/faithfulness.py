"""Faithfulness of one explanation, from batched perturbations of the explained document.

Removal operator: the ranker's token mask (0 = token removed; bm25 keeps the
document length fixed, interaction rankers zero the token's interactions).
Tokens are taken in attribution order (descending); where attributions tie, every
curve is averaged over `tie_orders` random orders of the tied tokens (seeded), so a
constant explanation scores like the random explainer in expectation.

Headline metrics (bounded, defined on every sample of every ranker, invariant to any
increasing transform of the ranker's scores, so comparable across rankers):
- rank_deletion / rank_insertion: tokens are removed from the full document / added
  to the empty one; y = the document's rank among its query's other candidates
  (unperturbed scores); value = trapezoid AUC over x = fraction of tokens in [0, 1] of
  the standing 1 - (rank - 1) / n_others in [0, 1]. Deletion: lower is better;
  insertion: higher.
- rank_comprehensiveness / rank_sufficiency (ERASER's AOPC, DeYoung et al. 2020, on
  the standing): mean over the top-k% bins {1, 5, 10, 20, 50} (k tokens = ceil(k% n),
  at least 1) of standing(full) - standing(without top-k) and standing(full) -
  standing(only top-k); in [-1, 1]. Comprehensiveness: higher; sufficiency: lower.

Score-normalised variants (Petsiuk et al. 2018; ERASER), kept for comparison with the
literature but not headlines: deletion / insertion (AUC of y = (s_k - s_empty) /
(s_full - s_empty)) and comprehensiveness / sufficiency (AOPC of (s_full - s) /
(s_full - s_empty)). Unbounded (partial documents may outscore the full one) and
ill-conditioned when s_full - s_empty is small; undefined (status skipped) unless
s_full > s_empty.

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
from rankers.scorer import score_chunks

from .base import MetricResult, Skip, register_metric, require
from .curves import (EMPTY_NOT_BELOW, attribution_orders, auc, curve_masks, normalise, ranks_among, standing,
                     step_counts)

ERASER_BINS = (1, 5, 10, 20, 50)
_BINS = Param((list,), list(ERASER_BINS), each=Float(None, lo=0.01, hi=100.0), doc="top-k% bins, each in (0, 100]")
_STEPS = Int(20, lo=1, hi=10000, doc="curve steps (fewer when the document is shorter)")
_TIES = Int(8, lo=1, hi=256, doc="random orders of tied tokens averaged (only when attributions tie)")


def _order(ctx):
    return attribution_orders(ctx.explanation.doc_scores, 1)[0]


def _orders(ctx, tie_orders):
    return attribution_orders(ctx.explanation.doc_scores, tie_orders, seed=ctx.seed)


def _full_empty(ctx):
    """Masks [2, n]: the full and the empty document."""
    n = len(ctx.pair.d_ids)
    return torch.stack([torch.ones(n), torch.zeros(n)])


def _need_ranks(ctx):
    require(ctx.other_scores is not None and len(ctx.other_scores) > 0, "no candidate list for ranks")


class _Curve:
    """Deletion / insertion curves, averaged over the random orders of tied tokens."""

    kind = "deletion"
    rank = False

    @classmethod
    def plan(cls, ctx, max_steps=20, tie_orders=8):
        if cls.rank:
            _need_ranks(ctx)
        orders = _orders(ctx, tie_orders)
        counts = step_counts(len(orders[0]), max_steps)
        return torch.cat([curve_masks(o, counts, cls.kind) for o in orders] + [_full_empty(ctx)])

    @classmethod
    def finish(cls, ctx, scores, max_steps=20, tie_orders=8):
        n = len(ctx.pair.d_ids)
        counts = step_counts(n, max_steps)
        x = counts / n
        s = scores[:-2].reshape(-1, len(counts))  # [orders, steps]
        s_full, s_empty = scores[-2], scores[-1]
        info = {"s_full": float(s_full), "s_empty": float(s_empty), "orders": len(s)}
        if cls.rank:
            r = ranks_among(s, ctx.other_scores).mean(0)  # mean rank over tie orders
            return MetricResult(auc(x, standing(r, len(ctx.other_scores))), curve={"x": x.tolist(), "y": r.tolist()},
                                info={**info, "n_others": len(ctx.other_scores)})
        y = normalise(s, s_full, s_empty)
        if y is None:
            raise Skip(EMPTY_NOT_BELOW)
        y = y.mean(0)
        return MetricResult(auc(x, y), curve={"x": x.tolist(), "y": y.tolist()}, info=info)


_CURVE_PARAMS = {"max_steps": _STEPS, "tie_orders": _TIES}


@register_metric("deletion", "lower", "AUC of (s - s_empty) / (s_full - s_empty) vs fraction deleted",
                 range=(None, None), curve=True, params=_CURVE_PARAMS)
class Deletion(_Curve):
    kind = "deletion"


@register_metric("insertion", "higher", "AUC of (s - s_empty) / (s_full - s_empty) vs fraction inserted",
                 range=(None, None), curve=True, params=_CURVE_PARAMS)
class Insertion(_Curve):
    kind = "insertion"


@register_metric("rank_deletion", "lower", "AUC of the standing among the candidates vs fraction deleted",
                 range=(0, 1), curve=True, params=_CURVE_PARAMS, headline=True)
class RankDeletion(_Curve):
    kind, rank = "deletion", True


@register_metric("rank_insertion", "higher", "AUC of the standing among the candidates vs fraction inserted",
                 range=(0, 1), curve=True, params=_CURVE_PARAMS, headline=True)
class RankInsertion(_Curve):
    kind, rank = "insertion", True


class _Eraser:
    """ERASER AOPC over top-k% bins, averaged over the random orders of tied tokens."""

    keep_top = False
    rank = False

    @classmethod
    def plan(cls, ctx, bins=ERASER_BINS, tie_orders=8):
        if cls.rank:
            _need_ranks(ctx)
        orders = _orders(ctx, tie_orders)
        n = len(orders[0])
        counts = np.array([max(1, math.ceil(b / 100 * n)) for b in bins])
        kind = "insertion" if cls.keep_top else "deletion"
        return torch.cat([curve_masks(o, counts, kind) for o in orders] + [_full_empty(ctx)])

    @classmethod
    def finish(cls, ctx, scores, bins=ERASER_BINS, tie_orders=8):
        s = scores[:-2].reshape(-1, len(bins))
        s_full, s_empty = scores[-2], scores[-1]
        if cls.rank:
            n_others = len(ctx.other_scores)
            st_full = standing(ranks_among(np.array([s_full]), ctx.other_scores), n_others)[0]
            drops = (st_full - standing(ranks_among(s, ctx.other_scores), n_others)).mean(0)
        else:
            if normalise(s, s_full, s_empty) is None:
                raise Skip(EMPTY_NOT_BELOW)
            drops = ((s_full - s) / (s_full - s_empty)).mean(0)
        return MetricResult(float(drops.mean()), info={"bins": list(bins), "drops": drops.tolist(), "orders": len(s)})


_ERASER_PARAMS = {"bins": _BINS, "tie_orders": _TIES}


@register_metric("comprehensiveness", "higher", "AOPC of (s_full - s) / (s_full - s_empty), top-k% removed",
                 range=(None, None), params=_ERASER_PARAMS)
class Comprehensiveness(_Eraser):
    keep_top = False


@register_metric("sufficiency", "lower", "AOPC of (s_full - s) / (s_full - s_empty), only top-k% kept",
                 range=(None, None), params=_ERASER_PARAMS)
class Sufficiency(_Eraser):
    keep_top = True


@register_metric("rank_comprehensiveness", "higher", "AOPC of the standing lost, top-k% removed", range=(-1, 1),
                 params=_ERASER_PARAMS, headline=True)
class RankComprehensiveness(_Eraser):
    keep_top, rank = False, True


@register_metric("rank_sufficiency", "lower", "AOPC of the standing lost, only top-k% kept", range=(-1, 1),
                 params=_ERASER_PARAMS, headline=True)
class RankSufficiency(_Eraser):
    keep_top, rank = True, True


@register_metric("pairwise_flip", "lower", "fraction of d+ tokens deleted before s(q,d+) < s(q,d-)",
                 range=(0, 1), params={"max_steps": Int(None, lo=1, hi=10000, nullable=True, doc="null: one token at a time")})
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


@register_metric("listwise_tau", "lower", "Kendall tau, the query's top-k ranking before vs after deleting each "
                 "document's top k_frac tokens", range=(-1, 1), scope="query",
                 params={"k": Int(10, lo=2, hi=1000, doc="the ranker's top k candidates form the ranking compared"),
                         "k_frac": Float(0.2, lo=0.01, hi=1.0, doc="fraction of top tokens deleted"),
                         "batch_size": Int(256, lo=1, hi=65536)})
def listwise_tau_metric(qctx, k: int = 10, k_frac: float = 0.2, batch_size: int = 256) -> MetricResult:
    """Query scope: one value per (query, explainer) over the ranker's top k candidates; candidates the suite
    did not explain are explained here with the same explainer (cost: up to k explanations per query). Without
    a ranking (a bare QueryContext) the explained documents are the list."""
    if qctx.ranking and qctx.explain is not None:
        top = qctx.ranking[:k]
        exps = [qctx.by_doc[d] if d in qctx.by_doc else qctx.explain(d) for d in top]
    else:
        exps = list(qctx.explanations)
    res = listwise_tau(qctx.ranker, qctx.query_tokens, [e.doc_tokens for e in exps], exps, k_frac, batch_size)
    res.info["k"] = len(exps)
    return res


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
        order = attribution_orders(ex.doc_scores, 1)[0]
        k = max(1, math.ceil(k_frac * len(order)))
        mask[2 * i + 1, :n] = curve_masks(order, np.array([k]), "deletion")[0]
    s = score_chunks(ranker, q_ids, d_ids, mask, batch_size=batch_size)  # the whole list in batched calls
    before, after = s[0::2], s[1::2]
    info = {"k_frac": k_frac, "n_docs": len(before)}
    if np.ptp(before) == 0:
        return MetricResult(math.nan, "error", "all candidates score the same: no ranking to compare", info=info)
    if np.ptp(after) == 0:  # tau-b is undefined; no trace of the original order is left
        return MetricResult(0.0, message="ranking erased: all scores tied after deletion", info=info)
    return MetricResult(float(kendalltau(before, after).statistic), info=info)
