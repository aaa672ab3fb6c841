"""Occlusion at the seed's own granularity (issue 33): query x document cells.

`pair_occlusion`: each cell of the interaction matrix removed alone at the interaction layer (`pair_removal`:
KNRM the cell's kernel values, MatchPyramid the matrix cell, late interaction the similarity cell):
pair_map[i, j] = s(full) - s(without cell i, j), n_query x n_doc + 1 rows in batched calls (the cost is
recorded); doc_scores and query_scores are its column and row sums (a word's cells together). The pair-level
competitor of Grad-CAM's map. `pair_shapley`: sampled Shapley values of the cells (antithetic permutations).
`query_occlusion`: each query word left out alone (query words only).
"""
from __future__ import annotations

import math

import numpy as np
import torch

from rankers.params import Int
from rankers.scorer import Cost, score_chunks

from .base import Explainer, Pair, register_explainer


@register_explainer("pair_occlusion")
class PairOcclusionExplainer(Explainer):
    """Leave-one-cell-out at the interaction layer; see the module docstring."""

    requires = ("pair_removal",)

    def _attribute(self, pair: Pair) -> dict:
        nq, nd = len(pair.q_ids), len(pair.d_ids)
        masks = torch.ones(nq * nd + 1, nq, nd, device=pair.d_ids.device)
        cells = torch.arange(nq * nd, device=pair.d_ids.device)
        masks[cells + 1, cells // nd, cells % nd] = 0.0   # row 0: the full matrix
        q, d = pair.q_ids[None].expand(len(masks), -1), pair.d_ids[None].expand(len(masks), -1)
        dm = None if pair.base_mask is None else pair.base_mask[None].expand(len(masks), -1)
        with torch.no_grad():
            s = score_chunks(self.ranker, q, d, dm, pair_mask=masks, batch_size=self.batch_size)
        self._cost.append(Cost(math.ceil(len(masks) / self.batch_size), len(masks)))
        pm = (s[0] - s[1:]).reshape(nq, nd)
        return {"pair_map": pm, "doc_scores": pm.sum(0), "query_scores": pm.sum(1), "score": float(s[0]) - pair.offset}



@register_explainer("query_occlusion")
class QueryOcclusionExplainer(Explainer):
    """The query-level competitor for query_deletion: each query word left out alone (its id set to PAD, as
    query_deletion removes it), the pair re-scored: query_scores[i] = s(q, d) - s(q without word i, d); n_query + 1
    rows in batched calls. It explains query words only (`query_only`): metrics of the document's words are
    skipped with the reason."""

    query_only = True

    def _attribute(self, pair: Pair) -> dict:
        nq = len(pair.q_ids)
        q = pair.q_ids[None].repeat(nq + 1, 1)
        idx = torch.arange(nq, device=q.device)
        q[idx + 1, idx] = 0                                  # row 0: the full query
        d = pair.d_ids[None].expand(nq + 1, -1)
        dm = None if pair.base_mask is None else pair.base_mask[None].expand(nq + 1, -1)
        with torch.no_grad():
            s = score_chunks(self.ranker, q, d, dm, batch_size=self.batch_size)
        self._cost.append(Cost(math.ceil((nq + 1) / self.batch_size), nq + 1))
        return {"query_scores": s[0] - s[1:], "score": float(s[0]) - pair.offset}


@register_explainer("pair_shapley")
class PairShapleyExplainer(Explainer):
    """Sampled Shapley values of the query x document cells at the interaction layer (`pair_removal`), by
    permutation sampling with antithetic pairs (Castro et al. 2009; Mitchell et al. 2022): each of `n_samples`
    permutations (half drawn at random, half their reverses) inserts the cells into the empty matrix in turn,
    and a cell's value is the mean of its marginal contributions, so the values sum to s(full) - s(empty). A map of
    more than `max_steps` cells is inserted in `max_steps` groups of consecutive cells of the permutation, a
    group's marginal shared equally by its cells (an approximation; exact for maps of at most `max_steps` cells).
    n_samples x (steps + 1) rows in batched calls; doc_scores and query_scores are the column and row sums."""

    requires = ("pair_removal",)
    stochastic = True
    params = {**Explainer.params,
              "n_samples": Int(4, lo=2, hi=1000, doc="permutations (even: random ones and their reverses)"),
              "max_steps": Int(200, lo=1, hi=100000, doc="insertion steps per permutation (cells grouped above)")}

    def __init__(self, ranker, n_samples: int = 4, max_steps: int = 200, seed: int = 0, batch_size: int = 256):
        super().__init__(ranker, seed=seed, batch_size=batch_size)
        self.n_samples, self.max_steps = int(n_samples) + int(n_samples) % 2, int(max_steps)

    def _attribute(self, pair: Pair) -> dict:
        nq, nd = len(pair.q_ids), len(pair.d_ids)
        n = nq * nd
        rng = np.random.default_rng(self.seed)
        perms = [rng.permutation(n) for _ in range(self.n_samples // 2)]
        perms += [p[::-1].copy() for p in perms]
        bounds = np.unique(np.round(np.linspace(0, n, min(n, self.max_steps) + 1)).astype(int))
        dev = pair.d_ids.device
        masks = torch.zeros(len(perms), len(bounds), n, device=dev)
        for i, p in enumerate(perms):
            for k, b in enumerate(bounds):
                masks[i, k, torch.as_tensor(p[:b], device=dev)] = 1.0
        masks = masks.reshape(-1, nq, nd)
        q, d = pair.q_ids[None].expand(len(masks), -1), pair.d_ids[None].expand(len(masks), -1)
        dm = None if pair.base_mask is None else pair.base_mask[None].expand(len(masks), -1)
        with torch.no_grad():
            s = score_chunks(self.ranker, q, d, dm, pair_mask=masks, batch_size=self.batch_size)
        self._cost.append(Cost(math.ceil(len(masks) / self.batch_size), len(masks)))
        s = s.reshape(len(perms), len(bounds))
        phi = np.zeros(n)
        for i, p in enumerate(perms):
            for k in range(len(bounds) - 1):
                cells = p[bounds[k]:bounds[k + 1]]
                phi[cells] += (s[i, k + 1] - s[i, k]) / len(cells)
        pm = (phi / len(perms)).reshape(nq, nd)
        return {"pair_map": pm, "doc_scores": pm.sum(0), "query_scores": pm.sum(1),
                "score": float(s[0, -1]) - pair.offset, "info": {"permutations": len(perms),
                                                                "steps": len(bounds) - 1}}
