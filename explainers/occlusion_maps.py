"""Occlusion at the seed's own granularity (issue 33): query x document cells.

`pair_occlusion`: each cell of the interaction matrix removed alone at the interaction layer (`pair_removal`:
KNRM the cell's kernel values, MatchPyramid the matrix cell, late interaction the similarity cell):
pair_map[i, j] = s(full) - s(without cell i, j), n_query x n_doc + 1 rows in batched calls (the cost is
recorded); doc_scores and query_scores are its column and row sums (a word's cells together). The pair-level
competitor of Grad-CAM's map.
"""
from __future__ import annotations

import math

import torch

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

