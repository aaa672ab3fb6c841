"""Query-side Integrated Gradients: the gradient competitor of query_occlusion for query_deletion.

The query's words are attributed at their word-piece input embeddings (the rankers whose score reads encoder
inputs: every transformer family and late interaction, `encoder_inputs`), along the straight path from the zero
embedding at the query's pieces (every other input as it is) to the query as given:

    query_scores[i] = sum over the pieces p of word i of  x_p . mean_k grad_p f(alpha_k)     [n_query]

with alpha_k = (k + 1/2) / n_steps (the midpoint Riemann rule) and x_p the piece's embedding [E]. The attributions
sum to f(x) - f(query pieces at zero) up to the rule's error (`info['delta']`). KNRM and MatchPyramid read the
query's embeddings only through cosines, which are constant along that path (IG would be ~0), and bm25 has no
embeddings: they are skipped with the reason (query_occlusion covers them).
"""
from __future__ import annotations

import numpy as np
import torch

from rankers.params import Int

from .aggregate import pieces_to_words
from .base import Explainer, Pair, register_explainer
from .lrp import frozen


def _query_pieces(side: str, b) -> torch.Tensor | None:
    """[U, P] bool: the query's word pieces in one encoder pass (the pair's query part, or the query's own pass)."""
    if side == "pair" and b.qidx is not None:
        return b.qidx >= 0
    if side == "query":
        return b.widx >= 0
    return None


@register_explainer("query_integrated_gradients")
class QueryIntegratedGradients(Explainer):
    """Integrated Gradients over the query's word-piece embeddings (see the module docstring): n_steps forward and
    backward passes of the pair; query words only (`query_only`)."""

    requires = ("encoder_inputs",)
    query_only = True
    params = {**Explainer.params, "n_steps": Int(20, lo=1, hi=10000, doc="Riemann steps (midpoint rule)")}

    def __init__(self, ranker, n_steps: int = 20, seed: int = 0, batch_size: int = 256):
        super().__init__(ranker, seed=seed, batch_size=batch_size)
        self.n_steps = int(n_steps)

    def _path_score(self, sc, alpha: float, grads: list | None):
        """The pair's score with the query's piece embeddings scaled by `alpha`; with `grads`, also what the backward
        needs per pass that holds the query: (x [U, P, E], its query pieces [U, P], the scaled embeddings with grad,
        the word of each piece [U, P])."""
        def run(orig, side, embeds, b):
            sel = _query_pieces(side, b)
            if sel is None:
                return orig(side, embeds, b)
            x = embeds.detach()
            e = torch.where(sel[..., None], alpha * x, x)
            if grads is not None:
                e = e.requires_grad_()
                grads.append((x, sel, e, b.qidx if side == "pair" else b.widx))
            return orig(side, e, b)
        with self.ranker.wrapped_run(run):
            return sc(sc.full_input())[0]

    def _attribute(self, pair: Pair) -> dict:
        sc = self.tracked(self.scorer(pair, "mask"))
        nq = len(pair.query_tokens)
        total, words = None, []
        with frozen(self.ranker):
            for k in range(self.n_steps):
                seen: list = []
                f = self._path_score(sc, (k + 0.5) / self.n_steps, seen)
                g = torch.autograd.grad(f, [e for _, _, e, _ in seen])
                parts = [((x * gi).sum(-1) * sel)[0] for (x, sel, _, _), gi in zip(seen, g)]
                total = parts if total is None else [t + p for t, p in zip(total, parts)]
                words = [w[0] for _, _, _, w in seen]
        scores = np.zeros(nq)
        for t, w in zip(total, words):
            scores += pieces_to_words((t / self.n_steps).detach().double().cpu().numpy(), w.tolist(), nq)
        with torch.no_grad():
            full = float(self._path_score(sc, 1.0, None))
            empty = float(self._path_score(sc, 0.0, None))
        return {"query_scores": scores, "score": full,
                "info": {"delta": float(scores.sum() - (full - empty)), "baseline_score": empty}}
