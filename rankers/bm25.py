"""BM25 as a differentiable torch ranker with exact per-token contributions.

Scoring (Robertson/Lucene variant, k1=1.2, b=0.75 by default)::

    score(q, d) = sum_{i in query tokens} f_i(tf_i)
    f_i(tf)     = idf(q_i) * tf * (k1 + 1) / (tf + k1 * (1 - b + b * |d| / avgdl))
    idf(t)      = log(1 + (N - df_t + 0.5) / (df_t + 0.5))

Masking: `d_mask[j]` in [0, 1] scales token j's contribution to the term
frequencies, tf_i = sum_j d_mask[j] * [d_j == q_i]. The document length |d| is
held fixed at the number of real (non-pad) tokens, so removing a token changes
only the counts. Under that convention the score is a sum of one-dimensional
games, and each occurrence's exact Shapley share is f_i(tf_i) / tf_i and its
exact leave-one-out marginal is f_i(tf_i) - f_i(tf_i - 1) (see
`BM25.exact_contributions`).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import scipy.sparse as sp
import torch

from .base import Ranker, shared_rows
from .params import Float, Int
from .registry import register_ranker
from .text import PAD_ID, UNK_ID, Vocab


class BM25Index:
    """Sparse inverted index for fast first-stage retrieval over a whole collection."""

    def __init__(self, doc_ids: Sequence[str], doc_tokens: Sequence[Sequence[str]], vocab: Vocab,
                 k1: float = 1.2, b: float = 0.75):
        self.doc_ids = list(doc_ids)
        self.vocab, self.k1, self.b = vocab, k1, b
        rows, cols = [], []
        for r, toks in enumerate(doc_tokens):
            ids = vocab.encode(toks)
            rows.extend([r] * len(ids))
            cols.extend(ids)
        tf = sp.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(len(self.doc_ids), len(vocab)))
        tf.sum_duplicates()
        self.n_docs = len(self.doc_ids)
        self.doc_len = np.asarray([len(t) for t in doc_tokens], dtype=np.float64)
        self.avgdl = float(self.doc_len.mean()) if self.n_docs else 1.0
        df = np.bincount(tf.indices, minlength=len(vocab)).astype(np.float64)
        self.idf = np.log1p((self.n_docs - df + 0.5) / (df + 0.5))
        self.idf[[PAD_ID, UNK_ID]] = 0.0
        norm = k1 * (1 - b + b * self.doc_len / self.avgdl)
        w = tf.tocoo()
        data = self.idf[w.col] * w.data * (k1 + 1) / (w.data + norm[w.row])
        self.weights = sp.csr_matrix((data, (w.row, w.col)), shape=tf.shape)

    def score_all(self, query_tokens: Sequence[str]) -> np.ndarray:
        """BM25 score of every document for one query: [n_docs]."""
        q = np.bincount(self.vocab.encode(query_tokens), minlength=len(self.vocab)).astype(np.float64)
        return self.weights @ q

    def retrieve(self, query_tokens: Sequence[str], k: int = 100) -> list[tuple[str, float]]:
        """Top-k (doc_id, score), ties broken by collection order."""
        s = self.score_all(query_tokens)
        order = np.lexsort((np.arange(len(s)), -s))[:k]
        return [(self.doc_ids[i], float(s[i])) for i in order]


@register_ranker("bm25", kind="lexical", trainable=False)
class BM25(Ranker):
    """Differentiable BM25 over token ids; see the module docstring for masking."""

    capabilities = ("mask_gradient", "single_use_modules", "exact_contributions")
    removal_semantics = ("not deletion: a removed word leaves the term counts but the document length |d| stays "
                         "fixed (the convention that makes each word's exact Shapley share closed-form)")

    params = {"k1": Float(1.2, lo=0.001, hi=100.0, doc="term-frequency saturation"), "b": Float(0.75, lo=0.0, hi=1.0,
              doc="length normalisation"), "max_doc_len": Int(512, lo=1, hi=100000, doc="document tokens kept (longer ones are truncated and recorded)")}

    def __init__(self, vocab: Vocab, idf: torch.Tensor | None = None, avgdl: float = 1.0,
                 k1: float = 1.2, b: float = 0.75, max_doc_len: int = 512):
        super().__init__(vocab, max_doc_len=max_doc_len)
        self.k1, self.b = float(k1), float(b)
        self.register_buffer("idf", torch.zeros(len(vocab)) if idf is None else idf.float())
        self.register_buffer("avgdl", torch.tensor(float(avgdl)))

    @classmethod
    def from_collection(cls, collection, seed: int = 0, **params) -> "BM25":
        """BM25 with the collection's idf and average length (nothing to train)."""
        return cls.from_index(collection.index, **params)

    @classmethod
    def from_index(cls, index: BM25Index, **kw) -> "BM25":
        return cls(index.vocab, torch.from_numpy(index.idf), index.avgdl, **{"k1": index.k1, "b": index.b, **kw})

    def config(self) -> dict:
        return {"k1": self.k1, "b": self.b, "max_doc_len": self.max_doc_len}

    def _term_scores(self, q_ids, d_ids, d_mask):
        """Per-query-token f_i(tf_i), tf_i and the length norm: [B, Lq], [B, Lq], [B, 1]."""
        present = (d_ids != PAD_ID).float()
        mask = present if d_mask is None else d_mask * present
        qm, dm = (q_ids[:1], d_ids[:1]) if shared_rows(q_ids, d_ids) else (q_ids, d_ids)  # [1 or B, ...]
        match = (qm[:, :, None] == dm[:, None, :]) & (qm[:, :, None] > UNK_ID)
        tf = (match.float() * mask[:, None, :]).sum(-1)
        norm = self.k1 * (1 - self.b + self.b * present.sum(-1, keepdim=True) / self.avgdl)
        f = self.idf[q_ids] * tf * (self.k1 + 1) / (tf + norm)
        return f, tf, norm, match

    def forward(self, q_ids: torch.Tensor, d_ids: torch.Tensor, d_mask: torch.Tensor | None = None) -> torch.Tensor:
        f, *_ = self._term_scores(q_ids, d_ids, d_mask)
        return f.sum(-1)

    @torch.no_grad()
    def exact_contributions(self, q_ids: torch.Tensor, d_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Exact per-document-token Shapley shares and leave-one-out marginals.

        q_ids: [Lq], d_ids: [Ld] (one pair). Returns (shapley [Ld], loo [Ld]);
        shapley sums to the score, loo[j] = score(d) - score(d without token j).
        """
        f, tf, norm, match = self._term_scores(q_ids[None], d_ids[None], None)
        f, tf, norm, match = f[0], tf[0], norm[0], match[0].float()
        tf1 = (tf - 1).clamp(min=0)
        f_minus = self.idf[q_ids[None]][0] * tf1 * (self.k1 + 1) / (tf1 + norm)
        share = torch.where(tf > 0, f / tf.clamp(min=1), torch.zeros_like(f))
        marginal = torch.where(tf > 0, f - f_minus, torch.zeros_like(f))
        return share @ match, marginal @ match
