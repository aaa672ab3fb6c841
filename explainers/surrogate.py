"""IR-native local surrogates: `lirme` (Verma & Ganguly, SIGIR 2019) and `exs` (Singh & Anand, WSDM 2019).

Both explain one (query, document) pair by a kernel-weighted linear model over word presence, fitted on
perturbed versions of the document scored by the ranker (batched, one row per sample):

- samples: `n_samples` presence vectors z in {0,1}^n_doc (1 = the word stays, 0 = removed by the ranker's
  mask). Each sample draws its own removal rate uniformly in (0, 1) and drops each word with that rate
  (LIRME's uniform sampling), so sparse and dense perturbations are both seen; row 0 is the full document.
- kernel: w(z) = exp(-D(z)^2 / width^2), D = cosine distance between z and the all-ones vector.
- surrogate: weighted ridge regression y ~ b + sum_j c_j z_j with penalty `alpha` on c (closed form,
  intercept unpenalised); the explanation is c ([n_doc], units of y per word).

They differ in what y is:

- `lirme`: y = the ranker's score of the perturbed document (score units).
- `exs`: y = how the perturbed document would stand in the query's ranking, from the scores of the query's
  top `k` other candidates (the explained document left out): `target = "rank"` (default) the fraction of
  those candidates it outscores; `"score"` its score min-max scaled by the candidates' scores, clipped to
  [0, 1]; `"topk"` 1 if it outscores the k-th candidate, else 0. (EXS's rank-, score- and top-k-based
  relevance.) Units: share of the ranking per word, so values are comparable across rankers.

Cost: n_samples rows (exs: plus the k candidates once).
"""
from __future__ import annotations

import math

import numpy as np
import torch

from rankers.params import Choice, Int, Param
from rankers.scorer import Cost, score_chunks

from .base import Explainer, Incompatible, Pair, register_explainer


def presence_samples(n_doc: int, n_samples: int, rng: np.random.Generator) -> np.ndarray:
    """[n_samples, n_doc] 0/1: row 0 all ones; each other row drops words at its own uniform rate."""
    rates = rng.uniform(0.0, 1.0, size=(n_samples, 1))
    z = (rng.uniform(size=(n_samples, n_doc)) >= rates).astype(np.float64)
    z[0] = 1.0
    return z


def cosine_kernel(z: np.ndarray, width: float) -> np.ndarray:
    """[n_samples] exp(-D^2 / width^2), D = 1 - cos(z, ones); an empty z has D = 1."""
    n = z.shape[1]
    norm = np.sqrt(z.sum(1)) * math.sqrt(n)
    cos = np.divide(z.sum(1), norm, out=np.zeros(len(z)), where=norm > 0)
    return np.exp(-((1.0 - cos) ** 2) / width ** 2)


def weighted_ridge(z: np.ndarray, y: np.ndarray, w: np.ndarray, alpha: float) -> np.ndarray:
    """argmin_c,b sum_i w_i (y_i - b - z_i . c)^2 + alpha |c|^2 -> c [n_doc] (intercept not penalised)."""
    sw = w.sum()
    zm, ym = (w @ z) / sw, float(w @ y) / sw
    zc, yc = z - zm, y - ym
    a = (zc * w[:, None]).T @ zc + alpha * np.eye(z.shape[1])
    return np.linalg.solve(a, (zc * w[:, None]).T @ yc)


class _Surrogate(Explainer):
    stochastic = True
    params = {**Explainer.params,
              "n_samples": Int(200, lo=2, hi=100000, doc="perturbed documents scored (rows)"),
              "width": Param((float,), 0.5, lo=1e-6, doc="kernel width on the cosine distance"),
              "alpha": Param((float,), 1e-3, lo=0.0, doc="ridge penalty on the word coefficients")}

    def __init__(self, ranker, n_samples: int = 200, width: float = 0.5, alpha: float = 1e-3, seed: int = 0,
                 batch_size: int = 256):
        super().__init__(ranker, seed=seed, batch_size=batch_size)
        self.n_samples, self.width, self.alpha = int(n_samples), float(width), float(alpha)

    def _target(self, pair: Pair, scores: np.ndarray) -> tuple[np.ndarray, dict]:
        raise NotImplementedError

    def _attribute(self, pair: Pair) -> dict:
        n = len(pair.d_ids)
        z = presence_samples(n, self.n_samples, np.random.default_rng(self.seed))
        sc = self.tracked(self.scorer(pair, "mask"))
        with torch.no_grad():
            s = np.concatenate([sc(torch.as_tensor(z[i: i + self.batch_size], dtype=torch.float32,
                                                  device=pair.d_ids.device)).double().cpu().numpy()
                                for i in range(0, len(z), self.batch_size)])
        y, info = self._target(pair, s)
        c = weighted_ridge(z, y, cosine_kernel(z, self.width), self.alpha)
        return {"doc_scores": c, "score": float(s[0]), "info": {"n_samples": self.n_samples, **info}}


@register_explainer("lirme")
class Lirme(_Surrogate):
    """LIRME: the surrogate regresses the ranker's score (see the module docstring)."""

    def _target(self, pair: Pair, scores: np.ndarray):
        return scores, {"target": "score"}


@register_explainer("exs")
class Exs(_Surrogate):
    """EXS: the surrogate regresses the perturbed document's standing among the query's top `k` other
    candidates (see the module docstring)."""

    needs_candidates = True
    params = {**_Surrogate.params,
              "k": Int(10, lo=1, hi=1000, doc="the query's top k other candidates define the standing"),
              "target": Choice("rank", ("rank", "score", "topk"), doc="rank: share of them outscored; score: "
                               "min-max scaled score; topk: outscores the k-th")}

    def __init__(self, ranker, n_samples: int = 200, width: float = 0.5, alpha: float = 1e-3, k: int = 10,
                 target: str = "rank", seed: int = 0, batch_size: int = 256):
        super().__init__(ranker, n_samples, width, alpha, seed=seed, batch_size=batch_size)
        self.k, self.target = int(k), target

    def _target(self, pair: Pair, scores: np.ndarray):
        scores = scores + pair.offset  # the document's own score, also under a pairwise target
        others = list(pair.candidates or [])
        if list(pair.doc_tokens) in others:  # the explained document is not its own competitor
            others.remove(list(pair.doc_tokens))
        others = others[: self.k]
        if not others:
            raise Incompatible("exs explains a document's standing in the query's ranking: it needs the query's "
                               "other candidates (a suite run, or rexbench explain --qid)")
        enc = self.ranker.encode(list(pair.query_tokens), [list(t) for t in others])
        c = score_chunks(self.ranker, enc.q_ids, enc.d_ids, batch_size=self.batch_size).astype(np.float64)
        self._cost.append(Cost(math.ceil(len(c) / self.batch_size), len(c)))
        if self.target == "rank":
            y = (scores[:, None] > c[None, :]).mean(1)
        elif self.target == "topk":
            y = (scores > c.min()).astype(np.float64)
        else:
            lo, hi = float(c.min()), float(c.max())
            y = np.clip((scores - lo) / (hi - lo), 0.0, 1.0) if hi > lo else (scores > lo).astype(np.float64)
        return y, {"target": self.target, "k": len(c)}
