"""Pure helpers for perturbation curves: orderings, step schedules, masks and areas."""
from __future__ import annotations

import math

import numpy as np

from explainers.schedule import curve_masks, step_counts  # noqa: F401 -- the schedule the curves score
from rankers.errors import BadInput


def attribution_order(scores) -> np.ndarray:
    """Token indices by attribution, descending; ties keep document order (stable).

    NaN attributions are a `BadInput` (there is no faithful way to order them).
    """
    s = np.asarray(scores, dtype=np.float64)
    if s.ndim != 1 or len(s) == 0:
        raise BadInput("attributions must be a non-empty 1-D array")
    if not np.isfinite(s).all():
        raise BadInput("attributions contain NaN or infinite values")
    return np.argsort(-s, kind="stable")


def attribution_orders(scores, n_orders: int, seed: int = 0) -> list[np.ndarray]:
    """Orders to average a curve over: one when no two attributions tie, else `n_orders`
    orders that rank tied tokens uniformly at random (seeded). A curve averaged over
    them estimates the expectation over all tie orders, so a constant attribution scores
    like the random explainer in expectation instead of like "first words first"."""
    first = attribution_order(scores)
    s = np.asarray(scores, dtype=np.float64)
    if n_orders <= 1 or len(np.unique(s)) == len(s):
        return [first]
    rng = np.random.default_rng(seed)
    return [np.lexsort((rng.random(len(s)), -s)) for _ in range(n_orders)]


EMPTY_NOT_BELOW = ("normalised curve not defined for this pair: the empty document scores at least as high as "
                   "the full one; use the rank_* metrics (defined on every pair)")


def normalise(scores: np.ndarray, s_full: float, s_empty: float, eps: float = 1e-9) -> np.ndarray | None:
    """(s - s_empty) / (s_full - s_empty); None unless the full document outscores the empty one
    (removing every token must lower the score for 'fraction of the score kept' to mean anything)."""
    span = s_full - s_empty
    if not math.isfinite(span) or span <= eps * max(1.0, abs(s_full)):
        return None
    return (np.asarray(scores, dtype=np.float64) - s_empty) / span


def auc(x: np.ndarray, y: np.ndarray) -> float:
    """Trapezoid area under y(x), x in [0, 1]."""
    return float(np.trapezoid(y, x))


def standing(ranks: np.ndarray, n_others: int) -> np.ndarray:
    """1 - (rank - 1) / n_others in [0, 1]: 1 above every other candidate, 0 below all."""
    return 1.0 - (np.asarray(ranks, dtype=np.float64) - 1) / n_others


def ranks_among(scores: np.ndarray, others: np.ndarray) -> np.ndarray:
    """1-based rank of each score among the other candidates' scores (ties in the document's favour)."""
    others = np.sort(np.asarray(others, dtype=np.float64))
    return 1 + len(others) - np.searchsorted(others, np.asarray(scores, dtype=np.float64), side="right")
