"""Removal diagnostics (issue 32): does a faithfulness curve measure the model, or the removal operator?

A deletion curve reads the explained document's standing among its query's other candidates as words are
removed. If removing words *at random* already sinks the document, the curve measures how the ranker reacts
to the operator (PAD tokens, a blanked pooling bin), not which words matter. `removal_diagnostic` measures it:
the standing after removing a share of the words in random orders, and the empty document's standing.

A (ranker, operator) whose median standing after random removal of half the words is below
`OPERATOR_DOMINATED_BELOW` is labelled operator-dominated: its curve metrics give no verdicts.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from .curves import ranks_among, standing

#: shares of the document's words removed at random
SHARES = (0.1, 0.2, 0.3, 0.5)
#: a (ranker, operator) is operator-dominated when the median standing after random removal of half the words
#: falls below this
OPERATOR_DOMINATED_BELOW = 0.5


def random_removal_masks(n: int, shares: Sequence[float], n_orders: int, seed: int) -> tuple[torch.Tensor, list]:
    """Masks [len(shares) * n_orders + 1, n]: for each share and random order, the first round(share * n)
    words of the order removed (at least one); then the empty document. Returns (masks, [(share, order)...,
    (1.0, None)])."""
    rng = np.random.default_rng(seed)
    orders = [rng.permutation(n) for _ in range(n_orders)]
    rows, keys = [], []
    for share in shares:
        k = min(max(int(round(share * n)), 1), n)
        for o, order in enumerate(orders):
            m = torch.ones(n)
            m[torch.from_numpy(order[:k])] = 0
            rows.append(m)
            keys.append((float(share), o))
    rows.append(torch.zeros(n))
    keys.append((1.0, None))
    return torch.stack(rows), keys


@torch.no_grad()
def removal_diagnostic(ranker, query_tokens: Sequence[str], doc_tokens: Sequence[str], others: np.ndarray,
                       shares: Sequence[float] = SHARES, n_orders: int = 8, seed: int = 0) -> dict:
    """The explained document's standing (1 - (rank - 1) / n_others; 1 = above every other candidate) after
    random removal of each share of its words (the mean over `n_orders` random orders), its standing intact and
    empty, all among `others` (the other candidates' scores [n_others]). Model calls: one batch of
    len(shares) * n_orders + 2 rows. Returns {"full": s, "empty": s, "shares": {share: mean standing},
    "orders": n_orders}."""
    others = np.asarray(others, dtype=np.float64)
    enc = ranker.encode(list(query_tokens), [list(doc_tokens)])
    n = enc.n_doc[0]
    masks, keys = random_removal_masks(n, shares, n_orders, seed)
    masks = torch.cat([torch.ones(1, n), masks]).to(enc.d_ids.device)
    d = enc.d_ids[:, :n].expand(len(masks), -1)
    q = enc.q_ids.expand(len(masks), -1)
    scores = ranker(q, d, masks).double().cpu().numpy()
    st = standing(ranks_among(scores, others), len(others))
    by_share: dict[float, list[float]] = {}
    for (share, _), s in zip(keys[:-1], st[1:-1]):
        by_share.setdefault(share, []).append(float(s))
    return {"full": float(st[0]), "empty": float(st[-1]), "shares": {s: float(np.mean(v)) for s, v in by_share.items()},
            "orders": int(n_orders)}


def operator_dominated(half_standings: Sequence[float]) -> bool:
    """The label: median standing after random removal of half the words below `OPERATOR_DOMINATED_BELOW`."""
    return bool(len(half_standings)) and float(np.median(half_standings)) < OPERATOR_DOMINATED_BELOW
