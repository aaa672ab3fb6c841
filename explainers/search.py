"""Search oracle (Hase et al. 2021, "The out-of-distribution problem in explainability and search methods
for feature importance explanations"): an ordering of the document's tokens found by querying the model.

`greedy_order(score, n, counts, kind)`: on the curve's step schedule `counts` (tokens removed / inserted
after each step, `explainers.schedule.step_counts`, as the curve metrics), each step scores every token still in play alone on
top of what is already removed (deletion) or inserted (insertion), one batched model call of up to n
rows, and takes the `counts[i+1] - counts[i]` tokens whose removal lowers (insertion: whose insertion
raises) the score most. Step-wise approximation: tokens taken in one step are chosen by their single
effects, not re-searched one at a time (exact one-at-a-time greed is `max_steps = null` on the metric:
every step one token). Cost: sum over steps of the tokens in play, at most n x steps rows (n = 150 words,
20 steps: <= 3000 rows, ~1500 on average), in `len(counts) - 1` batched calls.
"""
from __future__ import annotations

from typing import Callable

import numpy as np
import torch

from .base import Explainer, Pair, register_explainer
from rankers.params import Choice, Int


def greedy_order(score: Callable[[torch.Tensor], np.ndarray], n: int, counts: np.ndarray, kind: str) -> np.ndarray:
    """Token indices in the order the search takes them (deletion: removed first; insertion: inserted first).

    score(masks [R, n]) -> scores [R] (1 keeps a token, 0 removes it)."""
    if kind not in ("deletion", "insertion"):
        raise ValueError(f"kind must be 'deletion' or 'insertion', not {kind!r}")
    taken: list[int] = []
    left = list(range(n))
    base = torch.ones(n) if kind == "deletion" else torch.zeros(n)
    for c0, c1 in zip(counts[:-1], counts[1:]):
        k = int(c1 - c0)
        if k <= 0 or not left:
            continue
        if k >= len(left):
            gains = np.zeros(len(left))  # the rest, in document order
        else:
            rows = base.repeat(len(left), 1)
            rows[torch.arange(len(left)), torch.tensor(left)] = 0.0 if kind == "deletion" else 1.0
            s = np.asarray(score(rows), dtype=np.float64)
            gains = -s if kind == "deletion" else s  # deletion: the lowest score first
        pick = [left[i] for i in np.argsort(-gains, kind="stable")[:k]]
        for j in pick:
            base[j] = 0.0 if kind == "deletion" else 1.0
            left.remove(j)
        taken += pick
    return np.array(taken + left, dtype=np.int64)


def order_scores(order: np.ndarray) -> np.ndarray:
    """Attributions [n] whose descending order is `order` (n for the first token, 1 for the last)."""
    n = len(order)
    out = np.empty(n, dtype=np.float64)
    out[order] = np.arange(n, 0, -1, dtype=np.float64)
    return out


@register_explainer("greedy")
class GreedyExplainer(Explainer):
    """The search oracle as an explanation: doc_scores rank the tokens in the order `greedy_order` takes
    them (`kind` = "deletion": the order that lowers the score fastest; "insertion": raises it fastest),
    on a schedule of `max_steps` steps. Its cost (forward passes and rows) is recorded like any explainer's;
    it is an upper reference for curve metrics, not an explanation a user would read."""

    params = {**Explainer.params, "kind": Choice("deletion", ("deletion", "insertion")),
              "max_steps": Int(20, lo=1, hi=10000, doc="search steps (the curve metrics' schedule)")}

    def __init__(self, ranker, seed: int = 0, batch_size: int = 256, kind: str = "deletion", max_steps: int = 20):
        super().__init__(ranker, seed, batch_size)
        self.kind, self.max_steps = kind, int(max_steps)

    def _attribute(self, pair: Pair) -> dict:
        from .schedule import step_counts
        sc = self.tracked(self.scorer(pair, "mask"))
        n = len(pair.d_ids)
        with torch.no_grad():
            order = greedy_order(lambda m: sc(m.to(pair.d_ids.device)).double().cpu().numpy(), n,
                                 step_counts(n, self.max_steps), self.kind)
        return {"doc_scores": order_scores(order), "info": {"kind": self.kind, "steps": self.max_steps}}
