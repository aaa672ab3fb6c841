"""The bi-encoder (`biencoder`): query and document each encoded alone by an HF encoder, pooled and compared
as sentence-transformers does; `_SingleTextRanker` is the base it shares with late interaction. Inputs,
removal operators and truncation: `rankers.transformer`."""
from __future__ import annotations

import torch.nn.functional as F
from torch import nn

from .errors import BadInput
from .hf_inputs import Layout
from .params import Choice
from .registry import register_ranker
from .text import PAD_ID, Vocab
from .transformer import Batch, ModelOut, _first_line, _HFRanker, read_weights


class _SingleTextRanker(_HFRanker):
    """A ranker whose query and document are each encoded alone by an `AutoModel` encoder (bi-encoder,
    late interaction): right-padded, one text per sequence, the last layer's token states as output."""

    _net_attr = "encoder_model"

    def _load_encoder(self, hf_model: nn.Module | None = None) -> None:
        from transformers import AutoModel
        if hf_model is None:
            from transformers import AutoConfig
            try:
                enc_dec = getattr(AutoConfig.from_pretrained(self.model_name, local_files_only=True),
                                  "is_encoder_decoder", False)
            except Exception as e:  # noqa: BLE001
                raise BadInput(f"model {self.model_name!r}: no loadable config.json offline ({_first_line(e)})") \
                    from None
            if enc_dec:
                raise BadInput(f"model {self.model_name!r} is an encoder-decoder model; {self.name} reads an "
                               "encoder's token states (use type = \"seq2seq\" for monoT5-style rerankers)")
        self.encoder_model = hf_model if hf_model is not None else self._load(AutoModel)
        self._bind(self.encoder_model)
        self.left_pad = False  # each side is read over its own pieces: right padding is exact

    def _layout(self, q_row, d_row) -> Layout:
        return self.inputs.single(*self._text(d_row))

    def _model(self, embeds, b: Batch, hidden: bool, attentions: bool) -> ModelOut:
        """score = the last layer's token states [B, P, H]."""
        kw = {"token_type_ids": b.types} if b.types is not None else {}
        out = self.encoder_model(inputs_embeds=embeds, attention_mask=b.attn, output_hidden_states=hidden,
                                 output_attentions=attentions, **kw)
        reads = read_weights(b.attn, "first" if getattr(self, "pooling", "mean") == "cls" else "mean") \
            if attentions else None  # what the pooling reads (late interaction's MaxSim: every word, as the mean)
        return ModelOut(out.last_hidden_state, out.hidden_states if hidden else None,
                        out.attentions if attentions else None, reads=reads)


@register_ranker("biencoder", kind="transformer", trainable=False)
class BiEncoder(_SingleTextRanker):
    """score = similarity(pooled query states, pooled document states), as sentence-transformers.

    Any HF encoder (`AutoModel`; a sentence-transformers directory works: its transformer
    weights sit at the top level). Each side is its own text encoded by the tokenizer alone.
    pooling: "mean" (attention- and mask-weighted mean of the last layer's states) or "cls"
    (the first position's state); similarity: "cosine" or "dot".
    The exact pair decomposition (`pooled_states`, explainer pooled_interaction) needs mean pooling.
    """

    capabilities = (*_HFRanker.capabilities, "pooled_states")
    params = {**_HFRanker.params, "pooling": Choice("mean", ("mean", "cls"), doc="how token states become a vector"),
              "similarity": Choice("cosine", ("cosine", "dot"), doc="query-document similarity")}

    def __init__(self, vocab: Vocab | None = None, model: str | None = None, max_length: int = 256,
                 pooling: str = "mean", similarity: str = "cosine", hf_model: nn.Module | None = None, **kw):
        super().__init__(vocab, model, max_length, **kw)
        if self.template is not None:
            raise BadInput("biencoder: a template does not apply (each side is encoded alone)")
        self.pooling, self.similarity = pooling, similarity
        if pooling != "mean":
            self.capabilities = tuple(c for c in self.capabilities if c != "pooled_states")
        self._load_encoder(hf_model)

    def config(self) -> dict:
        return {**super().config(), "pooling": self.pooling, "similarity": self.similarity}

    def _side(self, side, rows, d_mask=None):
        """Pooled, normalised embeddings [B, H]. Without a mask each distinct row is encoded once
        (a query repeated over a batch costs one pass); with one, every row is encoded."""
        b, inv = self._rows(rows, rows)
        if d_mask is not None:
            b = b.take(inv)
        b, emb = self._masked(b, d_mask)
        pm = self._piece_mask(d_mask, b.widx)
        states = self._run(side, emb, b).score  # [B, P, H]
        if self.pooling == "cls":
            pooled = states[:, 0]
        else:
            w = b.attn.to(states.dtype) * (pm.to(states.dtype) if pm is not None else 1.0)
            pooled = (states * w[..., None]).sum(1) / w.sum(1, keepdim=True).clamp(min=1e-9)
        if self.similarity == "cosine":
            pooled = F.normalize(pooled, dim=-1)
        return pooled if d_mask is not None else pooled[inv]

    def forward(self, q_ids, d_ids, d_mask=None):
        d_ids, d_mask = self._deleted(d_ids, d_mask)
        if d_mask is not None:
            d_mask = d_mask * (d_ids != PAD_ID).float()
        query = self._side("query", q_ids)
        doc = self._side("doc", d_ids, d_mask) if d_mask is not None else \
            self._doc_pass(d_ids, lambda: self._side("doc", d_ids))
        return (query * doc).sum(-1)
