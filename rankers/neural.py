"""Interaction rankers over the query x document cosine matrix: KNRM and MatchPyramid."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .base import Ranker, is_hard_mask, shared_rows
from .params import REMOVAL_TRAINING, Choice, Int
from .registry import register_ranker
from .text import PAD_ID, UNK_ID, Vocab

#: KNRM's margin of every negative over its empty version (chosen on dev nDCG@10, see KNRM)
EMPTY_MARGIN = 0.1
#: KNRM's scoring head starts in U(-a, a) with bias 0 (`train_defaults` `head_init`). With nn.Linear's default
#: (a = 1/sqrt(11) = 0.30) the start depends on the seed's sign pattern: on Cranfield dev (nDCG@10, never test)
#: seed 1 stalled at 0.117 (first-epoch loss 7.0; seed 0 reached 0.267, loss 2.6) and its test nDCG@10 fell below
#: the report's quality floor; from a = 0.014 seeds 0, 1, 2 reached 0.241, 0.247, 0.248
HEAD_INIT = 0.014


class _Tap(nn.Identity):
    """A named identity layer: a stable hook point for Captum layer methods."""


class _EmbeddingRanker(Ranker):
    capabilities = ("mask_gradient", "embedding", "interaction_layer", "single_use_modules", "randomisable",
                    "pair_removal")
    params = {"dim": Int(64, lo=2, hi=4096, doc="embedding size (PPMI-SVD initialised)"),
              "max_doc_len": Int(256, lo=1, hi=100000, doc="document tokens kept (longer ones are truncated and recorded)"),
              "max_query_len": Int(32, lo=1, hi=10000, doc="query tokens kept"),
              "removal_training": REMOVAL_TRAINING}

    def __init__(self, vocab: Vocab, dim: int = 64, max_doc_len: int = 256, max_query_len: int = 32,
                 removal_training: float = 0.0):
        super().__init__(vocab, max_doc_len=max_doc_len, max_query_len=max_query_len)
        self.dim = dim
        self.removal_training = float(removal_training)
        self.embedding = nn.Embedding(len(vocab), dim, padding_idx=PAD_ID)
        self.interaction_layer = _Tap()

    @classmethod
    def from_collection(cls, collection, seed: int = 0, **params) -> "_EmbeddingRanker":
        """Untrained, with PPMI-SVD embeddings of the collection (documents and train queries)."""
        from .embeddings import ppmi_svd
        torch.manual_seed(seed)
        model = cls(collection.vocab, **params)
        toks = list(collection.doc_tokens.values()) + [collection.query_tokens[q] for q in collection.split("train")]
        emb = ppmi_svd(toks, collection.vocab, dim=model.dim, seed=seed)
        with torch.no_grad():
            model.embedding.weight.copy_(torch.from_numpy(emb))
        return model

    def config(self) -> dict:
        out = {"dim": self.dim, "max_doc_len": self.max_doc_len, "max_query_len": self.max_query_len}
        return {**out, "removal_training": self.removal_training} if self.removal_training else out

    def forward(self, q_ids, d_ids, d_mask=None, pair_mask=None):
        """pair_mask [B, Lq, Ld] in [0, 1] (optional): 0 removes the (query token, document token) cell at the
        interaction layer (KNRM: the cell's kernel values; MatchPyramid: the cell of the matrix)."""
        if shared_rows(q_ids, d_ids):  # one pair under many masks: embed once
            emb = self.embedding(d_ids[:1]).expand(len(d_ids), -1, -1)
        else:
            emb = self.embedding(d_ids)
        self._pair_mask = pair_mask
        try:
            return self.score_embedded(q_ids, emb, d_mask, d_ids)
        finally:
            self._pair_mask = None

    def _cosine(self, q_ids, d_emb, d_mask, d_ids):
        """Cosine matrix [B, Lq, Ld] (or [1, Lq, Ld] when every row is the same pair,
        which broadcasts) and masks q_m [B, Lq], d_m [B, Ld]."""
        q_m = (q_ids != PAD_ID).float()
        d_m = (d_ids != PAD_ID).float() if d_ids is not None else torch.ones(d_emb.shape[:2], device=d_emb.device)
        if d_mask is not None:
            d_m = d_m * d_mask
        shared = shared_rows(q_ids, d_emb)
        if shared:
            q_ids, d_emb = q_ids[:1], d_emb[:1]
        q = F.normalize(self.embedding(q_ids), dim=-1, eps=1e-6)
        d = F.normalize(d_emb, dim=-1, eps=1e-6)
        sim = q @ d.transpose(1, 2)
        # an unknown word (<unk>, free text only: a collection's own words are all in its vocabulary) is
        # unrelated to every word, another unknown one included: cosine 0, never the exact-match kernel
        unk = (q_ids == UNK_ID)[:, :, None]
        if d_ids is not None:
            unk = unk | (d_ids[:1] if shared else d_ids)[:, None, :].eq(UNK_ID)
        if bool(unk.any()):
            sim = sim.masked_fill(unk, 0.0)
        return (sim if self.interaction_layer is None else self.interaction_layer(sim)), q_m, d_m


@register_ranker("knrm", kind="interaction")
class KNRM(_EmbeddingRanker):
    """K-NRM (Xiong et al., 2017): RBF kernel pooling over the cosine matrix.

    Kernel map K[b, k, i, j] = exp(-(s_ij - mu_k)^2 / (2 sigma_k^2)) * d_mask_j,
    exposed as `feature_layer` (one channel per kernel, grid = (query token,
    document token)); soft-TF phi_k = sum_i log(1 + sum_j K[k, i, j]); score =
    w . phi + b.

    The empty document must rank last: removing every token of a document removes
    all its evidence. A plain pairwise loss never asks for that, and K-NRM as usually
    trained learns negative weights for the low-similarity kernels (they count the
    words that do not match the query), so a real document scores below the empty one
    (the bias): the empty document outranked all candidates in 33 of 45 Cranfield test
    queries and normalised deletion curves were undefined. Training therefore adds the
    empty version of every negative as a further negative (`train_defaults`
    `empty_margin`): relu(margin - s(q, d-) + s(q, empty)). Tried on Cranfield dev (seed 0,
    nDCG@10; never on test): the original K-NRM pooling 0.01 * log(max(x, 1e-10)) alone still
    ranked the empty document first in every test query (dev 0.18); non-negative kernel
    weights ranked it last but at dev 0.09 (log1p) / 0.16 (log); the floored log with the
    empty negative reached 0.12; log1p with the empty negative (this class) 0.22 at margin 1
    and 0.27 at margin 0.1 (the default; empty document below >= 95% of the candidates in
    44 of 45 test queries).
    """

    train_defaults = {"empty_margin": EMPTY_MARGIN, "head_init": HEAD_INIT}

    capabilities = (*_EmbeddingRanker.capabilities, "feature_layer")
    params = {**_EmbeddingRanker.params, "n_kernels": Int(11, lo=2, hi=101, doc="RBF kernels (the last is exact match)"),
              "kernels": Choice("rbf", ("rbf", "exact"), doc="\"exact\": the exact-match kernel alone, read from "
                                "word identity: score = w sum_i log(1 + tf_i) + b with w >= 0, whose per-word Shapley "
                                "shares are exact (`exact_contributions`): a neural reference with known "
                                "contributions")}

    def __init__(self, vocab: Vocab, dim: int = 64, n_kernels: int = 11, max_doc_len: int = 256,
                 max_query_len: int = 32, kernels: str = "rbf", removal_training: float = 0.0):
        super().__init__(vocab, dim, max_doc_len, max_query_len, removal_training)
        self.kernels = kernels
        self.n_kernels = n_kernels if kernels == "rbf" else 1
        if kernels == "exact":   # the exact-match kernel alone (its config says n_kernels = 1, which reloads it)
            mus, sigmas = torch.ones(1), torch.full((1,), 1e-3)
            # its score reads word identity, never the cosine matrix: no interaction layer to explain (pair-level
            # attributions read the kernel values, `feature_layer`, as its pair removal does)
            self.capabilities = (*(c for c in type(self).capabilities if c != "interaction_layer"),
                                 "exact_contributions")
        else:
            mus = torch.linspace(-1, 1, n_kernels)[:-1] + 1.0 / (n_kernels - 1)
            mus = torch.cat([mus, torch.ones(1)])
            sigmas = torch.full((n_kernels,), 0.1)
            sigmas[-1] = 1e-3
        self.register_buffer("mu", mus.view(1, -1, 1, 1))
        self.register_buffer("sigma", sigmas.view(1, -1, 1, 1))
        self.feature_layer = _Tap()
        if kernels == "exact":
            self.interaction_layer = None
        self.out = nn.Linear(self.n_kernels, 1)
        if kernels == "exact":  # w = softplus(out.weight) >= 0: a match never lowers the score (trained on TREC DL with
            # a free sign the weight went negative, every empty document above its full one); the buffer marks the
            # parametrisation, so a checkpoint of the free-sign version does not load as this one
            self.register_buffer("nonnegative_weight", torch.ones(()))

    def init_head(self, a: float) -> None:
        """Draw the scoring head's weights from U(-a, a) (torch's generator) and zero its bias: a head that
        starts near 0 lets the kernels, not the initial sign pattern, decide what a match is worth."""
        with torch.no_grad():
            self.out.weight.uniform_(-a, a)
            self.out.bias.zero_()

    def _weight(self) -> torch.Tensor:
        """The exact-match kernel's weight w (>= 0): softplus of the head's raw weight."""
        return nn.functional.softplus(self.out.weight[0, 0])

    def config(self) -> dict:
        out = {**super().config(), "n_kernels": self.n_kernels}
        return {**out, "kernels": self.kernels} if self.kernels != "rbf" else out

    def score_embedded(self, q_ids, d_emb, d_mask=None, d_ids=None):
        sim, q_m, d_m = self._cosine(q_ids, d_emb, d_mask, d_ids)
        if self.kernels == "exact" and d_ids is not None:   # word identity: exactly 1 or 0
            k = self._match(q_ids, d_ids)[:, None].to(sim.dtype)
        else:
            k = torch.exp(-((sim[:, None] - self.mu) ** 2) / (2 * self.sigma ** 2))
        k = k * d_m[:, None, None, :]
        if getattr(self, "_pair_mask", None) is not None:
            k = k * self._pair_mask[:, None]
        if torch.is_grad_enabled() and not k.requires_grad:  # the exact kernel reads word identity, no parameter:
            k = k.requires_grad_()                           # a leaf, so the score's gradient at it exists (Grad-CAM)
        k = self.feature_layer(k)
        phi = (torch.log1p(k.sum(-1)) * q_m[:, None, :]).sum(-1)
        if self.kernels == "exact":
            return phi[:, 0] * self._weight() + self.out.bias[0]
        return self.out(phi).squeeze(-1)

    @staticmethod
    def _match(q_ids: torch.Tensor, d_ids: torch.Tensor) -> torch.Tensor:
        """[B, Lq, Ld]: the query and document word are the same known word."""
        ok_q = (q_ids != PAD_ID) & (q_ids != UNK_ID)
        ok_d = (d_ids != PAD_ID) & (d_ids != UNK_ID)
        return (q_ids[:, :, None] == d_ids[:, None, :]) & ok_q[:, :, None] & ok_d[:, None, :]

    def exact_contributions(self, q_ids: torch.Tensor, d_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """`kernels = "exact"`: exact per-document-word Shapley shares and leave-one-out marginals (q_ids [Lq],
        d_ids [Ld], one pair). The score is w sum_i log(1 + tf_i) + b: the copies of a query word's matches are
        symmetric players and the query words add up, so each match of query word i gets w log(1 + tf_i) / tf_i;
        the shares sum to s(d) - s(empty). loo[j] = s(d) - s(d without word j)."""
        if self.kernels != "exact":
            raise ValueError("exact contributions exist for kernels = \"exact\" only")
        m = self._match(q_ids[None], d_ids[None])[0].to(self.out.weight.dtype)      # [Lq, Ld]
        tf = m.sum(1)
        w = self._weight().detach()
        share = torch.where(tf > 0, w * torch.log1p(tf) / tf.clamp(min=1), torch.zeros_like(tf))
        loo = torch.where(tf > 0, w * (torch.log1p(tf) - torch.log1p(tf - 1)), torch.zeros_like(tf))
        return share @ m, loo @ m


@register_ranker("matchpyramid", kind="interaction")
class MatchPyramid(_EmbeddingRanker):
    """MatchPyramid-style CNN (Pang et al., 2016) over the cosine matrix.

    A 3x3 'same'-padded conv + ReLU gives feature maps [B, C, Lq, Ld] aligned
    with (query token, document token) - the `feature_layer` Grad-CAM reads;
    masked positions are zeroed. Dynamic (adaptive) max pooling to
    `pool` = (Pq, Pd) and a 2-layer MLP give the score.

    Removal is deletion: with a mask of 0s and 1s (metrics, perturbation explainers) the removed words leave
    the matrix and the pooling bins the shorter document, exactly the score of the text without them; soft
    masks (gradients) zero the words' columns in place, the differentiable path.
    """

    capabilities = (*_EmbeddingRanker.capabilities, "feature_layer")
    params = {**_EmbeddingRanker.params, "channels": Int(8, lo=1, hi=1024, doc="conv feature maps"),
              "hidden": Int(32, lo=1, hi=4096, doc="MLP hidden units")}

    def __init__(self, vocab: Vocab, dim: int = 64, channels: int = 8, pool: tuple[int, int] = (3, 10),
                 hidden: int = 32, max_doc_len: int = 256, max_query_len: int = 32, removal_training: float = 0.0):
        super().__init__(vocab, dim, max_doc_len, max_query_len, removal_training)
        self.channels, self.pool, self.hidden = channels, tuple(pool), hidden
        self.conv = nn.Conv2d(1, channels, kernel_size=3, padding=1)
        self.feature_layer = _Tap()
        self.mlp = nn.Sequential(nn.Linear(channels * self.pool[0] * self.pool[1], hidden), nn.ReLU(),
                                 nn.Linear(hidden, 1))

    def config(self) -> dict:
        return {**super().config(), "channels": self.channels, "pool": list(self.pool), "hidden": self.hidden}

    def score_embedded(self, q_ids, d_emb, d_mask=None, d_ids=None):
        if d_ids is not None and getattr(self, "_pair_mask", None) is None and is_hard_mask(d_mask):
            # removal is deletion: removed words leave the matrix, so the convolution sees the words that are
            # now neighbours and the dynamic pooling bins the shorter document (zeroed columns kept in place
            # would blank whole bins: deleting a prefix then wins by position, not by content)
            d_emb, d_ids, d_mask = *_kept_columns(d_emb, d_ids, d_mask), None
        sim, q_m, d_m = self._cosine(q_ids, d_emb, d_mask, d_ids)
        grid = q_m[:, :, None] * d_m[:, None, :]
        if getattr(self, "_pair_mask", None) is not None:
            grid = grid * self._pair_mask
        a = F.relu(self.conv((sim * grid)[:, None])) * grid[:, None]
        a = self.feature_layer(a)
        n_d = (d_ids != PAD_ID).sum(-1) if d_ids is not None else torch.full_like(q_m[:, 0], d_emb.shape[1]).long()
        pooled = _dynamic_max_pool(_dynamic_max_pool(a, n_d, self.pool[1]).transpose(2, 3),
                                   (q_ids != PAD_ID).sum(-1), self.pool[0])  # [B, C, Pd, Pq]
        return self.mlp(pooled.flatten(1)).squeeze(-1)


def _kept_columns(d_emb: torch.Tensor, d_ids: torch.Tensor, d_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The kept words of each row moved to its front, in order ([B, Ld', E], [B, Ld']; PAD after them)."""
    keep = (d_mask > 0) & (d_ids != PAD_ID)
    order = torch.argsort((~keep).to(torch.int8), dim=1, stable=True)
    width = max(int(keep.sum(1).max()), 1)
    order = order[:, :width]
    kept = keep.gather(1, order)
    ids = torch.where(kept, d_ids.gather(1, order), torch.full_like(order, PAD_ID))
    emb = d_emb.expand(len(d_ids), -1, -1).gather(1, order[..., None].expand(-1, -1, d_emb.shape[-1]))
    return emb * kept[..., None].to(emb.dtype), ids


def _dynamic_max_pool(a: torch.Tensor, lengths: torch.Tensor, bins: int) -> torch.Tensor:
    """Max-pool the last axis of a [B, C, X, L] map into `bins` per example by its true length.

    Column j < lengths[b] goes to bin floor(j * bins / lengths[b]); padding
    columns are dropped, so a score never depends on how a batch was padded.
    Maps are non-negative, so empty bins (length < bins) read 0. Returns [B, C, X, bins].
    """
    b, c, x, l = a.shape
    j = torch.arange(l, device=a.device)[None]
    n = lengths.clamp(min=1)[:, None]
    idx = torch.where(j < n, torch.div(j * bins, n, rounding_mode="floor"), torch.full_like(j, bins))
    idx = idx[:, None, None, :].expand(b, c, x, l)
    out = a.new_zeros(b, c, x, bins + 1).scatter_reduce(3, idx, a, reduce="amax", include_self=True)
    return out[..., :bins]


@register_ranker("random", kind="baseline", trainable=False)
class RandomRanker(_EmbeddingRanker):
    """Chance-level baseline: score = w . mean_j(E[d_j]) with seeded random E and w.

    It ignores the query, so its effectiveness is that of a random ordering,
    yet it is differentiable in the document mask like every other ranker.
    """

    capabilities = ("mask_gradient", "embedding", "single_use_modules", "randomisable")
    params = {"dim": Int(16, lo=1, hi=4096), "max_doc_len": Int(256, lo=1, hi=100000, doc="document tokens kept (longer ones are truncated and recorded)")}

    def __init__(self, vocab: Vocab, dim: int = 16, seed: int = 0, max_doc_len: int = 256, max_query_len: int = 32):
        super().__init__(vocab, dim, max_doc_len, max_query_len)
        self.seed = seed
        self.interaction_layer = None  # the score never looks at query-document interactions
        g = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            self.embedding.weight.copy_(torch.randn(len(vocab), dim, generator=g))
            self.embedding.weight[PAD_ID] = 0
        self.register_buffer("w", torch.randn(dim, generator=g))

    @classmethod
    def from_collection(cls, collection, seed: int = 0, **params) -> "RandomRanker":
        return cls(collection.vocab, seed=seed, **params)

    def config(self) -> dict:
        return {**super().config(), "seed": self.seed}

    def score_embedded(self, q_ids, d_emb, d_mask=None, d_ids=None):
        d_m = (d_ids != PAD_ID).float() if d_ids is not None else torch.ones(d_emb.shape[:2], device=d_emb.device)
        if d_mask is not None:
            d_m = d_m * d_mask
        mean = (d_emb * d_m[..., None]).sum(1) / d_m.sum(1, keepdim=True).clamp(min=1)
        return mean @ self.w
