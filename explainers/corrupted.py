"""A reference explanation, progressively corrupted: the metric-validity test.

`corrupted(base, fraction)` explains with the explainer `base` (e.g. bm25's `exact_shapley`, the
ground truth, or the `greedy` search oracle where no ground truth exists), then shuffles the scores
of `round(fraction * n)` of the n document tokens among themselves (positions drawn at random,
seeded by the explainer seed and the document). fraction 0 is the reference itself, 1 a random
permutation of its scores (the same values, no information about which token holds which). A metric
that can be trusted degrades monotonically with the fraction (Metric validity in RESULTS.md).
"""
from __future__ import annotations

import zlib

import numpy as np

from rankers.params import Float, Param, Str
from rankers.scorer import Cost

from .base import Explainer, Incompatible, Pair, build_explainer, explainer_class, register_explainer


def shuffle_share(scores, fraction: float, rng: np.random.Generator) -> tuple[np.ndarray, int]:
    """(a copy of `scores` with those of round(fraction * n) positions, drawn at random, shuffled among themselves;
    that number): the corruption of the validity ladders."""
    s = np.asarray(scores, dtype=np.float64).copy()
    n = len(s)
    k = int(round(fraction * n))
    if k >= 2:
        pos = rng.choice(n, size=k, replace=False)
        s[pos] = s[rng.permutation(pos)]
    return s, k


@register_explainer("corrupted")
class CorruptedExplainer(Explainer):
    stochastic = True
    params = {**Explainer.params,
              "base": Str("greedy", doc="the reference explainer whose scores are corrupted (default: the search oracle; "
                          "exact_shapley on bm25)"),
              "fraction": Float(0.5, lo=0.0, hi=1.0, doc="share of document tokens whose scores are shuffled"),
              "base_params": Param((dict,), None, nullable=True, doc="parameters of the base explainer")}

    def __init__(self, ranker, base: str = "greedy", fraction: float = 0.5, base_params: dict | None = None,
                 seed: int = 0, batch_size: int = 256):
        super().__init__(ranker, seed=seed, batch_size=batch_size)
        cls = explainer_class(base)
        if cls is CorruptedExplainer:
            raise ValueError("corrupted: the base cannot itself be corrupted")
        ok, why = cls.compatible(ranker)
        if not ok:
            raise Incompatible(f"corrupted({base}): {why}")
        self.base_name, self.fraction = base, float(fraction)
        self.base = build_explainer(base, ranker, seed=seed, batch_size=batch_size, **(base_params or {}))

    def _attribute(self, pair: Pair) -> dict:
        ex = self.base.attribute_pair(pair)
        self._cost.append(Cost(ex.forward_passes, ex.forward_rows, ex.backward_passes))  # the base's model calls
        rng = np.random.default_rng([self.seed, zlib.crc32(" ".join(pair.doc_tokens).encode())])
        s, k = shuffle_share(ex.doc_scores, self.fraction, rng)
        return {"doc_scores": s, "score": ex.score,
                "info": {"base": self.base_name, "fraction": self.fraction, "shuffled": k}}

