"""Anchored rank curves: values that read as "how far from random towards the best order found".

- rank_deletion_gain / rank_insertion_gain: (A_random - A) / (A_random - A_oracle), where A is the
  explanation's rank_deletion (rank_insertion) AUC on the pair, A_random the expected AUC of a uniformly
  random token order on the same pair and A_oracle the AUC of the search oracle's order (`search_oracle`:
  a local search on the metric's own objective within `explainers.search.SEARCH_BUDGET` x the greedy's rows,
  started from the best of the step-wise greedy searches and the pair's explanations; same step schedule and
  removal operator). One formula for both directions: 0 = random, 1 = the oracle, higher is better; comparable
  across rankers and pairs. The oracle is never worse than the best order of any explanation of the pair, so a
  gain reaches 1 where an explanation is as good as anything found and never exceeds it (an explanation whose
  attributions tie averages its gain over tie orders; the oracle starts from the best of them); below 0 is worse
  than random. RESULTS.md reports how often the search improved on every explanation and how often it started
  from one. A pair whose random and oracle AUCs lie within `MIN_SPAN` (0.05) of each other has too
  little room to rank explanations (the ratio would divide by noise): `skipped` and counted, never 0 or 1.
  A_random: the mean over `random_orders` permutations drawn from a stream of their own (independent of
  every explainer's), or every permutation when there are at most that many (exact for short documents);
  both anchors are computed once per (ranker, pair, schedule) and shared by every explainer of the pair;
  the oracle's cost (greedy and search rows) is in each row's info, and so is its consistency ladder
  (`oracle_ladder`: the AUC of the oracle's order with 25/50/100% of its ranks shuffled, 3 x steps rows a pair),
  which RESULTS.md's metric validity reads on every ranker where the gains ran, transformers included.
- rank_deletion_lerf: least relevant first (ROAD / M4's LeRF): tokens removed in ascending attribution
  order; AUC of the standing, higher is better, in [0, 1]. Its info holds the MoRF AUC and the area
  between the two curves (`lerf_minus_morf`, in [-1, 1]; higher = the explanation separates what
  matters from what does not).
"""
from __future__ import annotations

import itertools
import math
import zlib

import numpy as np
import torch

from explainers.corrupted import shuffle_share
from explainers.search import search_order
from rankers.params import Int

from .base import MetricResult, Skip, memo_call, pair_memo, register_metric, require
from .curves import attribution_orders, auc, curve_masks, ranks_among, standing, step_counts

_STEPS = Int(20, lo=1, hi=10000, doc="curve steps (fewer when the document is shorter)")
_TIES = Int(8, lo=1, hi=256, doc="random orders of tied tokens averaged (only when attributions tie)")
_RANDOM = Int(16, lo=1, hi=1000, doc="random orders averaged for the random anchor (all orders when fewer)")
#: below this |A_random - A_oracle| (AUC of the standing, in [0, 1]) a pair has too little room to rank
#: explanations: the ratio would divide by noise (skipped and counted, never 0 or 1)
MIN_SPAN = 0.05

def _standing_auc(ctx, masks: torch.Tensor, counts: np.ndarray) -> np.ndarray:
    """AUC of the standing curve of each order: masks [orders * steps, n] -> [orders]. The same masks of the same
    pair (e.g. two explainers whose orders coincide) are scored once: the same call, the same values."""
    sc = ctx.scorer()

    def call():
        with torch.no_grad():
            return sc(masks.to(ctx.pair.d_ids.device)).double().cpu().numpy()
    m = masks.cpu().numpy()
    key = ("standing_rows", id(ctx.ranker), sc.batch_size, m.shape, m.tobytes())
    s = memo_call(ctx.pair, key, call).reshape(-1, len(counts))
    x = counts / counts[-1]
    st = standing(ranks_among(s, ctx.other_scores), len(ctx.other_scores))
    return np.array([auc(x, row) for row in st])


def _random_orders(n: int, k: int, seed: int) -> list[np.ndarray]:
    """The random anchor's orders: every permutation of a short document, else `k` drawn from a stream of
    their own (seeded by `seed` and a fixed tag), independent of any explainer's random numbers, so a random
    explainer is compared with orders it did not produce and centres on a gain of 0."""
    if n <= 8 and math.factorial(n) <= k:
        return [np.array(p) for p in itertools.permutations(range(n))]
    rng = np.random.default_rng([seed, 0x5EA2C4])
    return [rng.permutation(n) for _ in range(k)]


def explanation_starts(ctx, kind: str, counts: np.ndarray, tie_orders: int) -> dict[str, tuple[np.ndarray, float]]:
    """The pair's explanations (`_explained`: every explainer of the pair; query-only ones left out) as starts of
    the oracle's search: name -> (its best order, that order's loss, sign * standing AUC). Each explanation's
    orders are those its own gain averages over (`attribution_orders`, same ties and seed), scored in the same
    batch, so the rows are shared with its gain (`_standing_auc`'s per-pair memo), not scored twice."""
    sign = 1.0 if kind == "deletion" else -1.0
    n, out = len(ctx.pair.d_ids), {}
    for name, ex in sorted(_explained(ctx).items()):
        if getattr(ex, "query_only", False) or len(ex.doc_scores) != n:
            continue
        orders = attribution_orders(ex.doc_scores, tie_orders, seed=ctx.seed)
        losses = sign * _standing_auc(ctx, torch.cat([curve_masks(o, counts, kind) for o in orders]), counts)
        k = int(np.argmin(losses))
        out[name] = (orders[k], float(losses[k]))
    return out


def _explained(ctx) -> dict:
    """The pair's explanations: `ctx.peers` (a suite run: every explainer of the pair), else the one explained."""
    return ctx.peers or {getattr(ctx.explanation, "explainer", "explanation"): ctx.explanation}


def search_oracle(ctx, kind: str, counts: np.ndarray, tie_orders: int = 1) -> tuple[np.ndarray, dict]:
    """The oracle's order: `explainers.search.search_order` on the metric's own objective, the standing AUC
    (deletion lowest, insertion highest): a local search within its declared budget from the best of the step-wise
    greedy searches and the pair's explanations (`explanation_starts`). Returns (order, cost info)."""
    sc = ctx.scorer()
    sign = 1.0 if kind == "deletion" else -1.0

    def loss(orders):
        return sign * _standing_auc(ctx, torch.cat([curve_masks(o, counts, kind) for o in orders]), counts)
    starts = explanation_starts(ctx, kind, counts, tie_orders)
    with torch.no_grad():
        order, cost = search_order(lambda m: sc(m.to(ctx.pair.d_ids.device)).double().cpu().numpy(), loss,
                                   len(ctx.pair.d_ids), counts, kind, ctx.pair.d_ids.cpu().numpy(), ctx.seed,
                                   starts=starts)
    g_loss, s_loss = cost.pop("greedy_loss"), cost.pop("seed_loss")
    return order, {**cost, "greedy_auc": sign * g_loss, "seed_auc": sign * s_loss}


#: the corrupted shares of the oracle's stored order whose AUCs every gain row records (the consistency ladder)
LADDER = (0.25, 0.5, 1.0)


def corrupt_order(order: np.ndarray, fraction: float, rng: np.random.Generator) -> np.ndarray:
    """`order` with the ranks of round(fraction * n) of its tokens shuffled among themselves (the `corrupted`
    explainer's corruption, applied to the scores n - position that the order implies)."""
    n = len(order)
    score = np.empty(n)
    score[order] = n - np.arange(n)
    return np.argsort(-shuffle_share(score, fraction, rng)[0], kind="stable")


def anchors(ctx, kind: str, counts: np.ndarray, random_orders: int, tie_orders: int = 1
            ) -> tuple[float, float, dict, dict]:
    """(A_random, A_oracle, the oracle's cost, the ladder) of the pair, computed once and shared by every explainer
    of it. The ladder: the AUC of the oracle's order with `LADDER` shares of its tokens' ranks shuffled (seeded by
    the document), one batch of len(LADDER) x steps rows: the metric's consistency check on every ranker where
    gains run, transformers included (the oracle is the metric's own optimiser, so it cannot validate it)."""
    memo = pair_memo(ctx.pair)
    key = ("anchors", id(ctx.ranker), kind, tuple(int(c) for c in counts), random_orders, tie_orders, ctx.seed,
           tuple(sorted(_explained(ctx))))
    if key not in memo:
        n = len(ctx.pair.d_ids)
        rand = _random_orders(n, random_orders, ctx.seed)
        a_rand = float(_standing_auc(ctx, torch.cat([curve_masks(o, counts, kind) for o in rand]), counts).mean())
        oracle, cost = search_oracle(ctx, kind, counts, tie_orders)
        rng = np.random.default_rng([ctx.seed, zlib.crc32(" ".join(map(str, ctx.pair.d_ids.tolist())).encode())])
        orders = [oracle] + [corrupt_order(oracle, f, rng) for f in LADDER]
        aucs = _standing_auc(ctx, torch.cat([curve_masks(o, counts, kind) for o in orders]), counts)
        memo[key] = (a_rand, float(aucs[0]), cost, {f"{f:g}": float(v) for f, v in zip(LADDER, aucs[1:])})
    return memo[key]


def _gain(ctx, kind: str, max_steps: int, tie_orders: int, random_orders: int) -> MetricResult:
    require(ctx.other_scores is not None and len(ctx.other_scores) > 0, "no candidate list for ranks")
    n = len(ctx.pair.d_ids)
    counts = step_counts(n, max_steps)
    orders = attribution_orders(ctx.explanation.doc_scores, tie_orders, seed=ctx.seed)
    a = float(_standing_auc(ctx, torch.cat([curve_masks(o, counts, kind) for o in orders]), counts).mean())
    a_rand, a_orc, cost, ladder = anchors(ctx, kind, counts, random_orders, tie_orders)
    info = {"auc": a, "random_auc": a_rand, "oracle_auc": a_orc, "random_orders": random_orders,
            "n_others": len(ctx.other_scores), "oracle": cost, "oracle_ladder": ladder}
    if abs(a_rand - a_orc) < MIN_SPAN:
        raise Skip(f"random orders and the search oracle are within {MIN_SPAN:g} {kind} AUC of each other on this "
                   f"pair ({a_rand:.4g} vs {a_orc:.4g}): too little room to rank explanations")
    return MetricResult((a_rand - a) / (a_rand - a_orc), info=info)


_GAIN_PARAMS = {"max_steps": _STEPS, "tie_orders": _TIES, "random_orders": _RANDOM}


@register_metric("rank_deletion_gain", "higher", "(random - explainer) / (random - oracle) rank_deletion AUC: "
                 "0 random, 1 search oracle", range=(None, None), params=_GAIN_PARAMS, headline=True)
def rank_deletion_gain(ctx, max_steps=20, tie_orders=8, random_orders=16):
    return _gain(ctx, "deletion", max_steps, tie_orders, random_orders)


@register_metric("rank_insertion_gain", "higher", "(random - explainer) / (random - oracle) rank_insertion AUC "
                 "(signed: higher better): 0 random, 1 search oracle", range=(None, None), params=_GAIN_PARAMS,
                 headline=True)
def rank_insertion_gain(ctx, max_steps=20, tie_orders=8, random_orders=16):
    return _gain(ctx, "insertion", max_steps, tie_orders, random_orders)


@register_metric("rank_deletion_lerf", "higher", "AUC of the standing vs fraction deleted, least relevant first",
                 range=(0, 1), params={"max_steps": _STEPS, "tie_orders": _TIES})
def rank_deletion_lerf(ctx, max_steps=20, tie_orders=8):
    require(ctx.other_scores is not None and len(ctx.other_scores) > 0, "no candidate list for ranks")
    n = len(ctx.pair.d_ids)
    counts = step_counts(n, max_steps)
    scores = ctx.explanation.doc_scores
    lerf = attribution_orders(-np.asarray(scores, dtype=np.float64), tie_orders, seed=ctx.seed)
    morf = attribution_orders(scores, tie_orders, seed=ctx.seed)
    masks = torch.cat([curve_masks(o, counts, "deletion") for o in lerf + morf])
    a = _standing_auc(ctx, masks, counts)
    a_lerf, a_morf = float(a[: len(lerf)].mean()), float(a[len(lerf):].mean())
    return MetricResult(a_lerf, info={"morf_auc": a_morf, "lerf_minus_morf": a_lerf - a_morf, "orders": len(lerf)})
