"""A late-interaction ranker with exact pair contributions (ColBERT-style, Khattab & Zaharia 2020).

Token vectors come from an HF encoder (default: the bundled MiniLM), each text encoded alone by the
model's own tokenizer (`rankers.hf_inputs`); a word's vector is the mean of its pieces' last-layer
states, L2-normalised, so the similarity matrix is aligned with the units:

    S[i, j] = cos(query word i, document word j)            S: [n_query, n_doc]
    score   = sum_i max_j S[i, j]                            (MaxSim)

Its exact decomposition (`exact_pairs`, explainer `exact_pairs`) gives each query word's maximal cell
S[i, argmax_j] and 0 elsewhere: the map sums to the score. The document is encoded once; removal acts
on the interaction layer only: a document word with mask m contributes m S[i, j] + (1 - m) (-1) to
every row (at m = 0 it can no longer be any query word's maximum unless nothing else is left; the empty
document scores -n_query, the lowest possible), and a cell with pair mask p likewise
(`pair_removal`). `feature_layer` is S as a one-channel map [B, 1, n_query, n_doc]: Grad-CAM on it is
the seed's method on a modern encoder. Zero-shot (`train = false`, the weights as given).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .base import shared_rows
from .params import Int, Str
from .registry import register_ranker
from .text import PAD_ID, Vocab
from .neural import _Tap
from .biencoder import _SingleTextRanker


@register_ranker("late_interaction", kind="transformer", trainable=False)
class LateInteraction(_SingleTextRanker):
    removal_semantics = ("not deletion: the word's similarity becomes -1, the minimum, which equals deletion except "
                         "that the empty document scores -n_query")
    capabilities = ("mask_gradient", "interaction_layer", "feature_layer", "pair_removal", "exact_pairs",
                    "randomisable", "attention", "encoder_inputs")
    runtime_params = ()
    params = {"model": Str(None, nullable=True, doc="local path or HF id of an encoder (default: the bundled MiniLM)"),
              "max_length": Int(256, lo=8, hi=32768, doc="pieces per encoded text"),
              "max_doc_len": Int(256, lo=1, hi=100000, doc="document words kept"),
              "max_query_len": Int(32, lo=1, hi=10000, doc="query words kept")}

    def __init__(self, vocab: Vocab | None = None, model: str | None = None, max_length: int = 256,
                 max_doc_len: int = 256, max_query_len: int = 32, init_seed: int = 0, tokenizer=None):
        super().__init__(vocab, model, max_length, max_doc_len=max_doc_len, max_query_len=max_query_len,
                         init_seed=init_seed, tokenizer=tokenizer)
        self._load_encoder()
        self.interaction_layer = _Tap()
        self.feature_layer = _Tap()

    def config(self) -> dict:
        return {"model": self.model_name, "max_length": self.max_length, "max_doc_len": self.max_doc_len,
                "max_query_len": self.max_query_len, "init_seed": self.init_seed}

    def word_vectors(self, rows: torch.Tensor, side: str = "doc") -> torch.Tensor:
        """Normalised word vectors [B, L, H] of word-id rows [B, L] (0 at padding); each distinct row is encoded
        once (the encoder is not perturbed by removal). `side` ('query' or 'doc') names the pass for explainers
        that capture it (`capture`, AttnLRP)."""
        b, inv = self._rows(rows, rows)
        states = self._run(side, self.word_embeddings(b.ids), b).score  # [U, P, H]
        n_words = rows.shape[1]
        w = b.widx.clamp(min=0)
        keep = (b.widx >= 0).to(states.dtype)[..., None]
        sums = torch.zeros(states.shape[0], n_words, states.shape[-1], dtype=states.dtype, device=states.device)
        sums.scatter_add_(1, w[..., None].expand_as(states), states * keep)
        counts = torch.zeros(states.shape[0], n_words, 1, dtype=states.dtype, device=states.device)
        counts.scatter_add_(1, w[..., None], keep)
        vec = F.normalize(sums / counts.clamp(min=1), dim=-1, eps=1e-9)
        return vec[inv]

    def similarity(self, q_ids: torch.Tensor, d_ids: torch.Tensor) -> torch.Tensor:
        """S [B, Lq, Ld]: cosine of word vectors (0 at padding); one encoding when every row is the same pair."""
        if shared_rows(q_ids, d_ids):
            return self.similarity(q_ids[:1], d_ids[:1]).expand(len(q_ids), -1, -1)
        query = self.word_vectors(q_ids, "query")
        return query @ self._doc_pass(d_ids, lambda: self.word_vectors(d_ids, "doc")).transpose(1, 2)

    def forward(self, q_ids, d_ids, d_mask=None, pair_mask=None):
        s = self.interaction_layer(self.similarity(q_ids, d_ids))
        q_m = (q_ids != PAD_ID).to(s.dtype)
        d_m = (d_ids != PAD_ID).to(s.dtype)
        keep = torch.ones_like(s)
        if d_mask is not None:
            keep = keep * d_mask[:, None, :].to(s.dtype)
        if pair_mask is not None:
            keep = keep * pair_mask.to(s.dtype)
        s = keep * s + (1 - keep) * -1.0
        s = self.feature_layer(s[:, None])[:, 0]
        s = s.masked_fill(d_m[:, None, :] == 0, -3.0)  # padding is never a maximum
        best = s.max(-1).values                             # [B, Lq]
        return (best * q_m).sum(-1)

    @torch.no_grad()
    def exact_pairs(self, q_ids: torch.Tensor, d_ids: torch.Tensor) -> torch.Tensor:
        """The exact decomposition [Lq, Ld] of one pair's score (q_ids [Lq], d_ids [Ld]): each query word's
        maximal cell, 0 elsewhere; sums to `forward`."""
        s = self.similarity(q_ids[None], d_ids[None])[0]
        out = torch.zeros_like(s)
        j = s.argmax(-1)
        rows = torch.arange(len(q_ids), device=s.device)
        out[rows, j] = s[rows, j]
        return out * (q_ids != PAD_ID).to(s.dtype)[:, None]

    def check_usable_untrained(self) -> None:
        """Zero-shot by design: any encoder's token vectors give a MaxSim score."""
