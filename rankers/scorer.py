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


def default_batch_size(device: str | torch.device, ranker: Ranker | None = None) -> int:
    """Rows per model call when a suite says `batch_size = "auto"` (the default).

    CPU: the ranker's `cpu_batch_size` (16 for transformers, 128 for the others, 64 without a ranker).
    Measured on the 2-core development machine (Cranfield, the perturbation metrics of 8 pairs, seconds
    at 16/32/64/128/256 rows per call): cross-encoder 6.0/6.0/6.6/6.6/7.1, bi-encoder 8.7/10.0/11.0/13.0/
    13.8, KNRM 0.15/0.12/0.11/0.12/0.13, MatchPyramid 0.20/0.14/0.11/0.10/0.12: on a CPU large calls
    only help small models (per-call overhead); transformers lose up to 1.6x (caches).
    CUDA: 512 with >= 32 GiB of device memory, 256 with >= 12 GiB, else 128 (a GPU needs large calls to
    fill; not measured on a GPU here; a shard that runs out of memory is retried at half the batch)."""
    device = torch.device(device)
    if device.type != "cuda":
        return int(getattr(ranker, "cpu_batch_size", 64)) if ranker is not None else 64
    gib = torch.cuda.get_device_properties(device).total_memory / 2 ** 30
    return 512 if gib >= 32 else 256 if gib >= 12 else 128


def resolve_batch_size(batch_size: int | str, device: str | torch.device, ranker: Ranker | None = None) -> int:
    """`batch_size` as given, or the default of `device` (and `ranker`) for "auto"."""
    return default_batch_size(device, ranker) if batch_size == "auto" else int(batch_size)


@torch.no_grad()
def score_chunks(ranker: Ranker, q_ids: torch.Tensor, d_ids: torch.Tensor, d_mask: torch.Tensor | None = None,
                 pair_mask: torch.Tensor | None = None, batch_size: int = 256) -> np.ndarray:
    """Scores [B] (float64, CPU) of rows q_ids [B, Lq], d_ids [B, Ld] (optional d_mask [B, Ld], pair_mask
    [B, Lq, Ld] for rankers with `pair_removal`) in model calls of at most `batch_size` rows."""
    out = []
    for a in range(0, len(d_ids), batch_size):
        sl = slice(a, a + batch_size)
        kw = {} if pair_mask is None else {"pair_mask": pair_mask[sl]}
        out.append(ranker(q_ids[sl], d_ids[sl], None if d_mask is None else d_mask[sl], **kw)
                   .double().cpu().numpy())
    return np.concatenate(out) if out else np.zeros(0)


@torch.no_grad()
def score_rows(ranker: Ranker, jobs: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]],
               batch_size: int = 256) -> list[np.ndarray]:
    """Cross-pair batching: jobs = [(q_ids [Lq_i], d_ids [Ld_i], masks [R_i, Ld_i])], e.g. the pairs of one
    query; their rows are scored in model calls of up to `batch_size` rows that may span pairs. Pairs
    are taken shortest document first, so a call holds documents of similar length, and each call is
    padded (PAD ids, mask 0) only to its own longest query and document; every ranker's score ignores
    padding. Returns raw scores [R_i] per job (float64, CPU), in the order of `jobs`."""
    out = [np.empty(int(m.shape[0])) for _, _, m in jobs]
    order = sorted(range(len(jobs)), key=lambda i: (int(jobs[i][1].shape[0]), i))
    batch: list[tuple[int, int, int]] = []  # (job, first row, end row)
    filled = 0
    for i in order:
        n, start = int(jobs[i][2].shape[0]), 0
        while start < n:
            take = min(n - start, batch_size - filled)
            batch.append((i, start, start + take))
            filled, start = filled + take, start + take
            if filled == batch_size:
                _score_batch(ranker, jobs, batch, out)
                batch, filled = [], 0
    if batch:
        _score_batch(ranker, jobs, batch, out)
    return out


def _score_batch(ranker: Ranker, jobs, batch: list[tuple[int, int, int]], out: list[np.ndarray]) -> None:
    """One model call over row ranges of several jobs, padded to the call's longest query and document."""
    lq = max(int(jobs[i][0].shape[0]) for i, _, _ in batch)
    ld = max(int(jobs[i][1].shape[0]) for i, _, _ in batch)
    dev = jobs[batch[0][0]][1].device
    pad = torch.nn.functional.pad
    qs, ds, ms = [], [], []
    for i, a, b in batch:
        q, d, m = jobs[i]
        qs.append(pad(q, (0, lq - q.shape[0]), value=PAD_ID)[None].expand(b - a, -1))
        ds.append(pad(d, (0, ld - d.shape[0]), value=PAD_ID)[None].expand(b - a, -1))
        ms.append(pad(m[a:b].to(dev).float(), (0, ld - m.shape[1]), value=0.0))
    scores = ranker(torch.cat(qs), torch.cat(ds), torch.cat(ms)).double().cpu().numpy()
    k = 0
    for i, a, b in batch:
        out[i][a:b] = scores[k: k + b - a]
        k += b - a


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
