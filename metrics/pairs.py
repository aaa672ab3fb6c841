"""The seed's claim at its own granularity: pair maps scored as pair maps, and the snippet use.

- pair_deletion / pair_insertion: the query x document cells of the explanation's pair map are
  removed from the full interaction matrix (insertion: added to the empty one) in map order
  (descending; ties averaged over `tie_orders` seeded random orders), at the ranker's interaction
  layer (`pair_removal`: KNRM the cell's kernel values, MatchPyramid the matrix cell,
  late_interaction the similarity cell); y = the document's standing among its query's other
  candidates (as rank_deletion), value = trapezoid AUC over the fraction of cells in [0, 1].
  Deletion: lower is better; insertion: higher. An explanation without a pair map, or a ranker
  without cell-level removal, is skipped with the reason.
- query_deletion: the seed's query-intent use: the explanation's query-term scores (pair-map row sums,
  or an explainer's own query scores) order the query words; they are removed most important first,
  and at each step every candidate is re-scored for the reduced query; y = the explained document's
  standing among the re-scored candidates, value = AUC over the fraction of query words removed (with
  every word removed no query is left and the standing is taken as chance, 0.5).
  Lower is better (the words the explanation calls important are the ones that made the document
  stand out). Explanations without query scores are skipped.
- snippet_sufficiency: the standing of the explainer's best `w`-word window
  (`explainers.applications.best_snippet`) alone, every other word removed, in [0, 1]; higher is
  better. Baselines: `lead` (the first w words) and `random` (a random window in effect).
"""
from __future__ import annotations

import contextlib

import numpy as np
import torch

from rankers.params import Int
from rankers.scorer import score_chunks

from .base import MetricResult, memo_call, pair_memo, register_metric, require
from .curves import attribution_orders, auc, ranks_among, standing

_PAIR_PARAMS = {"max_steps": Int(100, lo=1, hi=10000, doc="steps of max(1, cells // max_steps) cells: at most "
                                                          "1/max_steps of the map per step (default 100: 1%, so the "
                                                          "curve does not saturate on large maps), cell by cell on "
                                                          "maps of at most max_steps cells"),
                "tie_orders": Int(8, lo=1, hi=256, doc="random orders of tied cells averaged")}


def pair_counts(n: int, max_steps: int) -> np.ndarray:
    """Cells removed (inserted) at each step of a pair curve: 0, k, 2k, ..., n with k = max(1, n // max_steps),
    so no step moves more than 1/max_steps of the n cells."""
    k = max(1, n // int(max_steps))
    return np.unique(np.append(np.arange(0, n, k), n))


class _PairCurve:
    kind = "deletion"

    @classmethod
    def fn(cls, ctx, max_steps: int = 100, tie_orders: int = 8) -> MetricResult:
        require("pair_removal" in ctx.ranker.capabilities,
                f"ranker {ctx.ranker.name!r} cannot remove single query x document cells (pair_removal)")
        pm = ctx.explanation.pair_map
        require(pm is not None, f"explainer {ctx.explanation.explainer!r} gives no pair map")
        require(ctx.other_scores is not None and len(ctx.other_scores) > 0, "no candidate list for ranks")
        pm = np.asarray(pm, dtype=np.float64)
        nq, nd = pm.shape
        n = nq * nd
        counts = pair_counts(n, max_steps)
        rows = []
        for order in attribution_orders(pm.ravel(), tie_orders, seed=ctx.seed):
            for c in counts:
                m = torch.ones(n) if cls.kind == "deletion" else torch.zeros(n)
                m[torch.as_tensor(order[:c], dtype=torch.long)] = 0.0 if cls.kind == "deletion" else 1.0
                rows.append(m.view(nq, nd))
        masks = torch.stack(rows).to(ctx.pair.d_ids.device)
        q, d = ctx.pair.q_ids[None].expand(len(masks), -1), ctx.pair.d_ids[None].expand(len(masks), -1)
        s = score_chunks(ctx.ranker, q, d, pair_mask=masks, batch_size=ctx.batch_size).reshape(-1, len(counts))
        r = ranks_among(s, ctx.other_scores).mean(0)
        x = counts / n
        return MetricResult(auc(x, standing(r, len(ctx.other_scores))), curve={"x": x.tolist(), "y": r.tolist()},
                            info={"cells": n, "orders": len(s), "n_others": len(ctx.other_scores),
                                  "largest_step": float(np.diff(counts).max() / n)})


@register_metric("pair_deletion", "lower", "AUC of the standing vs fraction of query x document cells removed in "
                 "pair-map order", range=(0, 1), curve=True, params=_PAIR_PARAMS)
def pair_deletion(ctx, max_steps: int = 100, tie_orders: int = 8):
    return _PairDeletion.fn(ctx, max_steps, tie_orders)


@register_metric("pair_insertion", "higher", "AUC of the standing vs fraction of query x document cells inserted in "
                 "pair-map order", range=(0, 1), curve=True, params=_PAIR_PARAMS)
def pair_insertion(ctx, max_steps: int = 100, tie_orders: int = 8):
    return _PairInsertion.fn(ctx, max_steps, tie_orders)


class _PairDeletion(_PairCurve):
    kind = "deletion"


class _PairInsertion(_PairCurve):
    kind = "insertion"


@register_metric("snippet_sufficiency", "higher", "standing of the best w-word window alone among the candidates",
                 range=(0, 1), params={"w": Int(20, lo=1, hi=100000, doc="words in the snippet")})
def snippet_sufficiency(ctx, w: int = 20):
    from explainers.applications import best_snippet
    require(ctx.other_scores is not None and len(ctx.other_scores) > 0, "no candidate list for ranks")
    snip = best_snippet(ctx.explanation, w)
    n = len(ctx.pair.d_ids)
    mask = torch.zeros(1, n, device=ctx.pair.d_ids.device)
    mask[0, snip.start: snip.end] = 1.0
    with torch.no_grad():
        s = float(ctx.scorer()(mask)[0])
    st = float(standing(ranks_among(np.array([[s]]), ctx.other_scores), len(ctx.other_scores))[0, 0])
    return MetricResult(st, info={"start": snip.start, "end": snip.end, "w": min(int(w), n)})


@register_metric("query_deletion", "lower", "AUC of the standing among re-scored candidates vs fraction of query "
                 "words removed in query-score order", range=(0, 1), curve=True, reads="query")
def query_deletion(ctx):
    qs = ctx.explanation.query_scores
    require(qs is not None, f"explainer {ctx.explanation.explainer!r} gives no query-term scores")
    require(ctx.other_docs is not None and len(ctx.other_docs) > 0, "no candidate documents to re-score")
    qs = np.asarray(qs, dtype=np.float64)
    lq = len(ctx.pair.q_ids)
    order = attribution_orders(qs[:lq], 1, seed=ctx.seed)[0]
    r = ctx.ranker
    enc = r.encode(list(ctx.pair.query_tokens), [list(ctx.pair.doc_tokens)] + [list(t) for t in ctx.other_docs])
    docs = tuple(tuple(t) for t in ctx.other_docs)
    # rankers that encode the document alone encode the candidates once for every reduced query of the pair
    reuse = getattr(r, "reuse_doc_passes", None)
    passes = pair_memo(ctx.pair).setdefault(("doc_passes", id(r)), {})
    st = []
    with reuse(passes) if reuse is not None else contextlib.nullcontext(), torch.no_grad():
        for k in range(lq):
            q = enc.q_ids.clone()
            q[:, torch.as_tensor(order[:k], dtype=torch.long)] = 0   # PAD: the query word is gone
            # every explainer of the pair that removes the same words asks for the same call: made once
            key = ("query_deletion", id(r), docs, ctx.batch_size, frozenset(order[:k].tolist()))
            s = memo_call(ctx.pair, key, lambda: score_chunks(r, q, enc.d_ids, batch_size=ctx.batch_size))
            st.append(float(standing(ranks_among(s[:1], s[1:]), len(ctx.other_docs))[0]))
    st.append(0.5)  # no query left: every document scores alike under an empty query; the standing is chance
    x = np.arange(lq + 1) / lq
    return MetricResult(auc(x, np.asarray(st)), curve={"x": x.tolist(), "y": st}, info={"query_words": lq})
