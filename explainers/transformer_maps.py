"""Explainers that read a transformer ranker's internals: attention, and the bi-encoder's
exact query x document decomposition."""
from __future__ import annotations

import numpy as np
import torch

from .aggregate import pieces_to_words
from .base import Explainer, Pair, register_explainer


def _pieces_to_pairs(m: np.ndarray, q_of_row, d_of_col, nq: int, nd: int) -> np.ndarray:
    """Sum a piece x piece matrix into a word x word pair map [nq, nd] (rows/cols with index -1 dropped)."""
    out = np.zeros((nq, nd))
    qi, dj = np.asarray(q_of_row), np.asarray(d_of_col)
    rows, cols = np.nonzero(qi >= 0)[0], np.nonzero(dj >= 0)[0]
    np.add.at(out, (qi[rows][:, None], dj[cols][None, :]), m[np.ix_(rows, cols)])
    return out


class _AttentionReader(Explainer):
    """An explainer that reads the attention weights of the unperturbed pair's forward pass."""

    requires = ("attention",)

    def _attentions(self, pair: Pair) -> tuple[dict, float]:
        """(the capture of `capture(layer=-1, attentions=True)`, the pair's score) from one forward pass."""
        sc = self.tracked(self.scorer(pair, "mask"))
        with torch.no_grad(), self.ranker.capture(layer=-1, attentions=True) as cap:
            score = float(sc(sc.full_input())[0])
        return cap, score


@register_explainer("attention")
class AttentionExplainer(_AttentionReader):
    """Attention baseline: the last encoder layer's attention averaged over heads.

    Cross-encoder: doc_scores = attention from the position the score is read from ([CLS]; a
    decoder's last token; a mean-pooling head, e.g. ModernBERT's: the mean over every attended position;
    seq2seq: the first decoder step's cross-attention, last decoder layer)
    to each document word's pieces (summed); pair_map[i, j] = attention from query word i's pieces
    to document word j's pieces (summed). Bi-encoder: doc_scores = mean attention
    each document word receives within the document pass; no pair map.
    """

    def _attribute(self, pair: Pair) -> dict:
        cap, score = self._attentions(pair)
        nq, nd = len(pair.query_tokens), len(pair.doc_tokens)
        if "pair" in cap:
            _, widx, qidx, att = cap["pair"]
            a = att[0].mean(0).float().cpu().numpy()        # [P, P]
            w, q = widx[0].cpu().numpy(), qidx[0].cpu().numpy()
            summary = cap["pair_summary"][0].float().cpu().numpy() if "pair_summary" in cap else a[0]
            return {"doc_scores": pieces_to_words(summary, w, nd), "pair_map": _pieces_to_pairs(a, q, w, nq, nd),
                    "score": score}
        _, widx, _, att = cap["doc"]
        a = att[0].mean(0).float().cpu().numpy()
        return {"doc_scores": pieces_to_words(a.mean(0), widx[0].cpu().numpy(), nd), "score": score}


def rollout(attentions, reads: torch.Tensor) -> np.ndarray:
    """Attention rollout (Abnar & Zuidema 2020), residual-aware, heads averaged: per layer
    A' = 0.5 * mean_heads(A) + 0.5 * I with rows renormalised, R = A'_L ... A'_1, and the relevance of
    each input piece as read by the score: reads @ R. attentions: every layer's [B, heads, P, P];
    reads: [B, P]. Returns [B, P]."""
    r = None
    for a in attentions:
        a = a.float().mean(1)
        a = 0.5 * a + 0.5 * torch.eye(a.shape[-1], device=a.device)
        a = a / a.sum(-1, keepdim=True)
        r = a if r is None else a @ r
    return torch.einsum("bp,bpq->bq", reads.float(), r).cpu().numpy()


@register_explainer("attention_rollout")
class AttentionRolloutExplainer(_AttentionReader):
    """Attention rollout (`rollout`) from the position the score is read at: [CLS] (encoder
    cross-encoders), the last token (decoders), every attended position alike (mean-pooling heads, the
    bi-encoder's and late interaction's document pass), the first decoder step's cross-attention over the
    encoder (seq2seq); pieces summed into words. No pair map."""

    def _attribute(self, pair: Pair) -> dict:
        cap, score = self._attentions(pair)
        side = "pair" if "pair" in cap else "doc"
        widx = cap[side][1][0].cpu().numpy()
        rel = rollout(cap[f"{side}_attentions"], cap[f"{side}_reads"])[0]
        return {"doc_scores": pieces_to_words(rel, widx, len(pair.doc_tokens)), "score": score}


@register_explainer("pooled_interaction")
class PooledInteractionExplainer(Explainer):
    """Exact term-pair decomposition of a bi-encoder's cosine.

    With u = mean_i h_i (query piece states), v = mean_j g_j (document piece
    states, pooling weights w_j), score = u.v / (|u||v|) = sum_ij
    h_i.g_j w_j / (n_q sum(w) |u||v|): each (query piece, document piece) term
    is one addend (similarity "dot": the same without the norms); pieces are summed into words,
    special tokens dropped
    ([CLS]/[SEP] terms stay in the score but not in the map). One forward pass.
    """

    requires = ("pooled_states",)

    def _attribute(self, pair: Pair) -> dict:
        r = self.ranker
        sc = self.tracked(self.scorer(pair, "mask"))
        with torch.no_grad(), r.capture(layer=-1) as cap:
            score = float(sc(sc.full_input())[0])
        hq, qw, _, _ = cap["query"]
        hd, dw, _, _ = cap["doc"]
        hq, hd = hq[0].float(), hd[0].float()        # last-layer states = what is pooled
        u, v = hq.mean(0), hd.mean(0)
        norm = u.norm() * v.norm() if r.similarity == "cosine" else 1.0  # dot product: no normalisation
        terms = (hq @ hd.T) / (len(hq) * len(hd) * norm)
        m = terms.cpu().numpy()
        nq, nd = len(pair.query_tokens), len(pair.doc_tokens)
        pm = _pieces_to_pairs(m, qw[0].cpu().numpy(), dw[0].cpu().numpy(), nq, nd)
        return {"pair_map": pm, "score": score, "info": {"special_token_share": float(m.sum() - pm.sum())}}
