"""The step schedule of deletion/insertion curves: how many words are removed (or inserted) after each
step. The search oracle (`explainers.search`) orders words on this schedule and the curve metrics
(`metrics.curves`) score it, so it lives here, below both."""
from __future__ import annotations

import numpy as np
import torch

from rankers.errors import BadInput


def step_counts(n: int, max_steps: int | None = 20) -> np.ndarray:
    """Numbers of tokens removed/inserted at each step: 0..n, every token when
    n <= max_steps, else `max_steps` + 1 evenly spaced counts (rounded)."""
    if n < 1:
        raise BadInput("a curve needs at least one document token")
    if max_steps is None or n <= max_steps:
        return np.arange(n + 1)
    return np.unique(np.round(np.linspace(0, n, max_steps + 1)).astype(int))


def curve_masks(order: np.ndarray, counts: np.ndarray, kind: str) -> torch.Tensor:
    """Masks [len(counts), n]: deletion removes the first c tokens of `order`,
    insertion keeps only them (starting from the empty document)."""
    n = len(order)
    rank = np.empty(n, dtype=np.int64)
    rank[order] = np.arange(n)  # position of each token in the order
    top = torch.from_numpy(rank)[None, :] < torch.from_numpy(np.asarray(counts))[:, None]
    if kind == "deletion":
        return (~top).float()
    if kind == "insertion":
        return top.float()
    raise ValueError(f"kind must be 'deletion' or 'insertion', not {kind!r}")
