"""`PairScorer`: one (query, document) pair as a batched function of a document-side input.

Every explainer and metric goes through it, so model calls are counted in one place.

Modes:
- "mask": input [B, Ld] in [0, 1], 1 = token present (the removal operator).
- "embedding": input [B, Ld, E], the document's token embeddings (rankers with
  an `embedding` layer only).

The scorer subtracts `offset` (the contrast document's score for the pairwise
target s(q, d+) - s(q, d-)), so attributions explain the margin. `base_mask`
[Ld] (optional) multiplies every input mask: the pair as seen through a fixed
soft perturbation (used by sensitivity metrics).
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from .base import Ranker
from .text import PAD_ID


@dataclass
class Cost:
    """Model calls (batched forward passes), rows scored and backward passes."""

    forward_passes: int = 0
    forward_rows: int = 0
    backward_passes: int = 0


class PairScorer(nn.Module):
    def __init__(self, ranker: Ranker, q_ids: torch.Tensor, d_ids: torch.Tensor, mode: str = "mask",
                 offset: float = 0.0, batch_size: int = 256, base_mask: torch.Tensor | None = None):
        """q_ids: [Lq], d_ids: [Ld] (one pair, no padding)."""
        super().__init__()
        if mode not in ("mask", "embedding"):
            raise ValueError(f"mode must be 'mask' or 'embedding', not {mode!r}")
        if mode == "embedding" and ranker.embedding is None:
            raise ValueError(f"ranker {ranker.name!r} has no embedding layer")
        self.ranker, self.mode = ranker, mode
        self.q_ids, self.d_ids = q_ids, d_ids
        self.offset, self.batch_size = float(offset), int(batch_size)
        self.base_mask = base_mask
        self.cost = Cost()

    @property
    def n_doc(self) -> int:
        return int(self.d_ids.shape[0])

    def full_input(self) -> torch.Tensor:
        """The unperturbed input: ones [1, Ld] or the embeddings [1, Ld, E] (detached)."""
        if self.mode == "mask":
            return torch.ones(1, self.n_doc, device=self.d_ids.device)
        return self.ranker.embedding(self.d_ids[None]).detach()

    def _count_backward(self, _grad):
        self.cost.backward_passes += 1

    def _score(self, x: torch.Tensor) -> torch.Tensor:
        b = x.shape[0]
        q = self.q_ids[None].expand(b, -1)
        d = self.d_ids[None].expand(b, -1)
        bm = None if self.base_mask is None else self.base_mask[None].expand(b, -1)
        if self.mode == "mask":
            out = self.ranker(q, d, x if bm is None else x * bm)
        else:
            out = self.ranker.score_embedded(q, x, bm, d)
        self.cost.forward_passes += 1
        self.cost.forward_rows += b
        if out.requires_grad:
            out.register_hook(self._count_backward)
        return out - self.offset

    def forward(self, x: torch.Tensor, *_ignored) -> torch.Tensor:
        """Scores [B] for inputs x [B, Ld] (mask) or [B, Ld, E] (embedding), in chunks of batch_size."""
        if x.shape[0] <= self.batch_size:
            return self._score(x)
        return torch.cat([self._score(x[s: s + self.batch_size]) for s in range(0, x.shape[0], self.batch_size)])


@torch.no_grad()
def score_rows(ranker: Ranker, jobs: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]],
               batch_size: int = 256) -> list[np.ndarray]:
    """Cross-pair batching: jobs = [(q_ids [Lq], d_ids [Ld_i], masks [R_i, Ld_i])], pairs of one query
    (or any pairs with equally long query ids); their rows are scored in batches of `batch_size` rows
    that may span pairs (documents padded with PAD, masks with 0; every ranker's score ignores
    padding). Returns raw scores [R_i] per job (float64, CPU)."""
    if not jobs:
        return []
    dev = jobs[0][1].device
    ld = max(int(d.shape[0]) for _, d, _ in jobs)
    q = torch.nn.utils.rnn.pad_sequence([q for q, _, _ in jobs], batch_first=True, padding_value=PAD_ID)
    qs, ds, ms, sizes = [], [], [], []
    for i, (_, d, m) in enumerate(jobs):
        n = int(m.shape[0])
        sizes.append(n)
        qs.append(q[i][None].expand(n, -1))
        ds.append(torch.nn.functional.pad(d, (0, ld - d.shape[0]), value=PAD_ID)[None].expand(n, -1))
        ms.append(torch.nn.functional.pad(m.to(dev).float(), (0, ld - m.shape[1]), value=0.0))
    q_all, d_all, m_all = torch.cat(qs), torch.cat(ds), torch.cat(ms)
    out = torch.cat([ranker(q_all[s: s + batch_size], d_all[s: s + batch_size], m_all[s: s + batch_size]).double()
                     for s in range(0, len(m_all), batch_size)]).cpu().numpy()
    return list(np.split(out, np.cumsum(sizes)[:-1]))


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class Timer:
    """Elapsed seconds: perf_counter on CPU; CUDA events after synchronisation on a GPU."""

    def __init__(self, device: torch.device | str = "cpu"):
        self.device = torch.device(device)
        self.seconds = float("nan")

    def __enter__(self):
        if self.device.type == "cuda":
            synchronize(self.device)
            self._start, self._end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            self._start.record()
        else:
            self._t0 = time.perf_counter()
        return self

    def __exit__(self, *exc):
        if self.device.type == "cuda":
            self._end.record()
            self._end.synchronize()
            self.seconds = self._start.elapsed_time(self._end) / 1000.0
        else:
            self.seconds = time.perf_counter() - self._t0
