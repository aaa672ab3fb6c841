"""Word embeddings trained from the collection itself (PPMI + truncated SVD); never downloaded."""
from __future__ import annotations

from typing import Sequence

import numpy as np
import scipy.sparse as sp
from scipy.sparse.linalg import svds

from .text import Vocab


def ppmi_svd(token_lists: Sequence[Sequence[str]], vocab: Vocab, dim: int = 64, window: int = 5,
             seed: int = 0) -> np.ndarray:
    """Embeddings [len(vocab), dim] from a windowed co-occurrence PPMI matrix.

    Rows are L2-normalised; padding (id 0) is the zero vector; words too rare to
    co-occur get a small seeded random vector so cosines stay defined.
    """
    rows, cols = [], []
    for toks in token_lists:
        ids = np.asarray(vocab.encode(toks))
        for off in range(1, window + 1):
            if len(ids) > off:
                rows.append(ids[:-off]); cols.append(ids[off:])
    r, c = np.concatenate(rows), np.concatenate(cols)
    v = len(vocab)
    co = sp.coo_matrix((np.ones(len(r) * 2), (np.r_[r, c], np.r_[c, r])), shape=(v, v)).tocsr()
    co.sum_duplicates()
    total = co.sum()
    row_sum = np.asarray(co.sum(1)).ravel()
    ctx = row_sum ** 0.75
    ctx = ctx / ctx.sum()
    coo = co.tocoo()
    pmi = np.log(coo.data * 1.0 / total) - np.log(row_sum[coo.row] / total) - np.log(ctx[coo.col])
    keep = pmi > 0
    ppmi = sp.csr_matrix((pmi[keep], (coo.row[keep], coo.col[keep])), shape=(v, v))
    k = min(dim, v - 2)
    rng = np.random.default_rng(seed)
    u, s, _ = svds(ppmi, k=k, v0=rng.standard_normal(v), random_state=seed)
    emb = u * np.sqrt(s)
    # svds' sign and order are arbitrary: fix them for determinism.
    order = np.argsort(-s)
    emb = emb[:, order]
    emb *= np.sign(emb[np.abs(emb).argmax(0), np.arange(k)])
    if k < dim:
        emb = np.pad(emb, ((0, 0), (0, dim - k)))
    norm = np.linalg.norm(emb, axis=1, keepdims=True)
    rare = norm[:, 0] < 1e-8
    emb[rare] = rng.standard_normal((int(rare.sum()), dim))
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    emb[0] = 0.0
    return emb.astype(np.float32)
