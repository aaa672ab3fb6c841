"""The seed paper's two uses of a ranking explanation: snippets and query-term importance."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from rankers.base import Ranker

from .base import Explanation, make_pair


@dataclass
class Snippet:
    start: int  # first document token (inclusive)
    end: int    # last document token + 1
    text: str
    mass: float  # sum of attributions inside the window


def best_snippet(expl: Explanation, window: int = 20) -> Snippet:
    """The window of `window` consecutive document tokens with the largest
    attribution mass (ties: earliest window)."""
    s = np.asarray(expl.doc_scores, dtype=np.float64)
    w = max(1, min(int(window), len(s)))
    sums = np.convolve(s, np.ones(w), mode="valid")
    i = int(np.argmax(sums))
    return Snippet(i, i + w, " ".join(expl.doc_tokens[i: i + w]), float(sums[i]))


@torch.no_grad()
def query_term_importance(ranker: Ranker, expl: Explanation) -> list[tuple[str, float]]:
    """(query token, importance), most important first.

    Uses the explanation's query_scores (row sums of its pair map) when it has
    them; otherwise the leave-one-out drop of the score when each query token
    is removed, computed in one batched call.
    """
    q = expl.query_tokens
    if expl.query_scores is not None:
        vals = np.asarray(expl.query_scores, dtype=np.float64)
    else:
        vals = _loo_queries(ranker, q, expl.doc_tokens)
    order = np.argsort(-vals, kind="stable")
    return [(q[i], float(vals[i])) for i in order]


def _loo_queries(ranker: Ranker, q: list[str], doc: list[str]) -> np.ndarray:
    """score(q, d) - score(q without token i, d) for every i: one batched call of |q| + 1 rows."""
    pair = make_pair(ranker, q, doc)
    lq = len(pair.q_ids)
    q_ids = pair.q_ids[None].repeat(lq + 1, 1)
    q_ids[torch.arange(lq), torch.arange(lq)] = 0  # PAD the removed query token; last row is intact
    scores = ranker(q_ids, pair.d_ids[None].expand(lq + 1, -1)).float().cpu().numpy()
    return scores[-1] - scores[:-1]
