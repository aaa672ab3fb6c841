"""The one ranker interface every explainer and metric talks to."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
from torch import nn

from .errors import BadInput
from .params import Param
from .text import PAD_ID, Vocab, analyze


@dataclass
class Encoded:
    """A padded batch of (query, document) pairs.

    q_ids: [B, Lq], d_ids: [B, Ld] (PAD_ID = 0 pads); truncated: [B] whether the
    document was cut to the ranker's `max_doc_len`; n_doc: [B] kept doc tokens.
    """

    q_ids: torch.Tensor
    d_ids: torch.Tensor
    truncated: list[bool]
    n_doc: list[int]


def shared_rows(*ts: torch.Tensor) -> bool:
    """True when every tensor is one row expanded over the batch (stride 0), e.g. one
    (query, document) pair under many masks: mask-independent work can then be done once."""
    return all(t is not None and t.dim() > 0 and t.shape[0] > 1 and t.stride(0) == 0 for t in ts)


def is_hard_mask(d_mask: torch.Tensor | None) -> bool:
    """A mask of removed (0) and kept (1) words only, outside any gradient (metrics, perturbation explainers):
    what rankers whose removal is deletion apply as deletion (soft masks take their differentiable path)."""
    return d_mask is not None and not d_mask.requires_grad and bool(((d_mask == 0) | (d_mask == 1)).all())


class Ranker(nn.Module):
    """Scores (query, document) token-id pairs; differentiable in a document token mask.

    `forward(q_ids [B, Lq], d_ids [B, Ld], d_mask [B, Ld] | None) -> scores [B]`.
    `d_mask[b, j]` in [0, 1]: 1 keeps document token j, 0 removes it (the
    removal operator every perturbation explainer and metric uses).

    Layers explainers may use (None when the ranker has no such layer):
    - `embedding`: token embeddings; `score_embedded(q_ids, d_emb, d_mask)`
      then scores from document embeddings [B, Ld, E].
    - `interaction_layer`: output [B, Lq, Ld], the query x document matrix.
    - `feature_layer`: output [B, C, Lq, Ld], feature maps aligned with
      (query token, document token); the Grad-CAM target.
    """

    name = "ranker"
    kind = "?"
    #: what the ranker offers explainers (`rankers.capabilities.CAPABILITIES`); the one source of
    #: compatibility for `rexbench list`, `Explainer.compatible` and the runner
    capabilities: tuple[str, ...] = ("mask_gradient",)
    #: rows per model call on a CPU when a suite says `batch_size = "auto"` (`rankers.scorer.default_batch_size`)
    cpu_batch_size: int = 128
    #: user-settable constructor parameters (suite `[rankers.NAME]` tables, `rexbench list --json`)
    params: dict[str, Param] = {}
    #: parameters that change how the ranker is applied, not its weights: set on a loaded model,
    #: not part of the checkpoint's cache key (e.g. a transformer's removal operator)
    runtime_params: tuple[str, ...] = ()
    #: how text becomes the ranker's units (`rankers.text.ANALYZERS`): "index" tokens (case-folded,
    #: stopwords dropped) or "words" of the original text
    analyzer: str = "index"
    #: weights usable without training (`train = false` uses them as given), e.g. a HF model
    pretrained: bool = False
    #: what removing a word does (`rexbench list`): "deletion" where the score is that of the text without it
    removal_semantics: str = "deletion: the score of the document without the word"

    def __init__(self, vocab: Vocab, max_doc_len: int = 256, max_query_len: int = 32):
        super().__init__()
        self.embedding: nn.Embedding | None = None
        self.interaction_layer: nn.Module | None = None
        self.feature_layer: nn.Module | None = None
        self.vocab = vocab
        self.max_doc_len, self.max_query_len = int(max_doc_len), int(max_query_len)

    @classmethod
    def from_collection(cls, collection, seed: int = 0, **params) -> "Ranker":
        """A fresh (untrained) ranker for `collection` from its declared parameters."""
        torch.manual_seed(seed)
        return cls(collection.vocab, **params)

    def config(self) -> dict:
        """Constructor keyword arguments (besides vocab), JSON-serialisable."""
        return {"max_doc_len": self.max_doc_len}

    @property
    def device(self) -> torch.device:
        for t in list(self.parameters()) + list(self.buffers()):
            return t.device
        return torch.device("cpu")

    def units(self, text: str) -> list[str]:
        """The ranker's units of `text` (what explanations attribute to)."""
        return analyze(self.analyzer, text)

    def check_usable_untrained(self) -> None:
        """Raise BadInput when the weights as given would give meaningless scores (`train = false`)."""

    def score_embedded(self, q_ids: torch.Tensor, d_emb: torch.Tensor, d_mask: torch.Tensor | None = None,
                       d_ids: torch.Tensor | None = None) -> torch.Tensor:
        raise NotImplementedError(f"ranker {self.name!r} has no embedding layer")

    def encode(self, query_tokens: Sequence[str], docs_tokens: Sequence[Sequence[str]]) -> Encoded:
        """Encode one query against several documents, truncating long documents."""
        if not query_tokens:
            raise BadInput("empty query (no indexable tokens after tokenisation)")
        for toks in docs_tokens:
            if not toks:
                raise BadInput("empty document (no indexable tokens after tokenisation)")
        q = self.vocab.encode(query_tokens[: self.max_query_len])
        docs = [self.vocab.encode(t[: self.max_doc_len]) for t in docs_tokens]
        ld = max(len(d) for d in docs)
        d_ids = torch.full((len(docs), ld), PAD_ID, dtype=torch.long)
        for i, d in enumerate(docs):
            d_ids[i, : len(d)] = torch.tensor(d)
        q_ids = torch.tensor(q, dtype=torch.long)[None].expand(len(docs), -1).contiguous()
        dev = self.device
        return Encoded(q_ids.to(dev), d_ids.to(dev), [len(t) > self.max_doc_len for t in docs_tokens],
                       [len(d) for d in docs])

    @torch.no_grad()
    def score_tokens(self, query_tokens: Sequence[str], docs_tokens: Sequence[Sequence[str]],
                     batch_size: int = 128) -> torch.Tensor:
        """Scores of one query against many documents: [n_docs] (CPU tensor)."""
        out = []
        for s in range(0, len(docs_tokens), batch_size):
            enc = self.encode(query_tokens, docs_tokens[s: s + batch_size])
            out.append(self(enc.q_ids, enc.d_ids).float().cpu())
        scores = torch.cat(out) if out else torch.zeros(0)
        if not torch.isfinite(scores).all():
            raise FloatingPointError(f"ranker {self.name!r} produced non-finite scores")
        return scores
