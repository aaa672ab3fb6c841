"""The cross-encoder (`crossencoder`): query and document read in one sequence by an HF sequence-classification
model (encoder or decoder); `_PairRanker` is the base it shares with the generative rerankers. Inputs,
removal operators and truncation: `rankers.transformer`."""
from __future__ import annotations

import torch
from torch import nn

from .errors import BadInput
from .params import Int, Param, Str
from .registry import register_ranker
from .text import PAD_ID, Vocab
from .transformer import Batch, ModelOut, _first_line, _HFRanker, read_weights


class _PairRanker(_HFRanker):
    """A ranker reading query and document in one sequence (tokenizer pair or template)."""

    def forward(self, q_ids, d_ids, d_mask=None):
        d_ids, d_mask = self._deleted(d_ids, d_mask)
        if d_mask is not None:
            d_mask = d_mask * (d_ids != PAD_ID).float()
        b, inv = self._rows(q_ids, d_ids)
        b = b.take(inv)
        b, emb = self._masked(b, d_mask)
        return self._run("pair", emb, b).score


@register_ranker("crossencoder", kind="transformer")
class CrossEncoder(_PairRanker):
    """A relevance score over the (query, document) pair (AutoModelForSequenceClassification).

    The pair is what the model's tokenizer makes of `tokenizer(query, document)` (BERT:
    [CLS] q [SEP] d [SEP]; RoBERTa/XLM-R: <s> q </s></s> d </s>; ...), or of the filled
    `template` when one is given (e.g. RankLLaMA-style "query: {query} document: {document}").
    Decoder classifiers (Llama, Qwen2 ...ForSequenceClassification) read the last token:
    sequences are left-padded and positions count real tokens only.
    `model`: any cross-encoder (a checkpoint whose architecture is `...ForSequenceClassification`):
    its one logit is the score; with a multi-label head (monoBERT-style [not relevant, relevant])
    `label` names the relevant class and the score is its log-softmax (monotone in its
    probability, so the ranking is the model's). A plain encoder (e.g. the default bundled MiniLM)
    gets a fresh one-logit head (seeded by `init_seed`) and must be fine-tuned (`train = true`,
    `rexbench train crossencoder`); `train = false` on it is an error, not random scores.
    """

    # Tried on Cranfield's dev split (never test; BM25 scores dev nDCG@10 0.355 there), all at lr 1e-4, batch 16:
    # - 1 epoch of 2160 judged triples (16 per train query), 128 pieces: dev 0.271 (rexbench 0.3's; test
    #   0.246, and its empty document scored above 95% of the candidates in every test query);
    # - the same at 256 pieces with the empty document as a further negative (margin 1): dev 0.199 (29 min);
    # - shipped: 128 pieces, empty document negative (margin 1) and 1400 pseudo-query triples per epoch from the
    #   documents themselves (`training.PseudoQueries`: first sentence -> rest), dev-selected over 2 epochs:
    #   dev 0.301 after epoch 1, 0.338 after epoch 2; test 0.341 (BM25 0.317), empty document below every
    #   candidate in all 45 test queries. 33 minutes on 2 CPU cores; stops by epochs and dev patience only.
    # Earlier, six settings on a GPU without pseudo-queries reached dev 0.05 .. 0.23.
    # With removal training (issue 32) under the pad operator and no anchor, the model ranks pairs that both lost
    # words and still learns that padding means irrelevant (median standing of a top document after half its words
    # are padded: 0.054 on TREC DL, 0.177 on Cranfield dev, where dev nDCG@10 is 0.316). A one-way anchor (partly
    # removed positives above full negatives only) diverged on Cranfield (dev 0.03-0.08); `removal_anchor` works
    # both ways (`counterfactual.removal_loss`): Cranfield dev after one epoch, anchor 1.0: 0.195 (median standing
    # 0.761); anchor 0.5: 0.239 (0.865); after two epochs (1 thread), anchor 0.5: 0.268 (0.920), anchor 0.25:
    # 0.276 (0.908), each epoch better than the last (loss 2.25 -> 1.40); half the pairs with removal (0.25):
    # 0.209 after one. Shipped: anchor 0.25 (the most effective with standing >= 0.5) and up to 4 epochs, early
    # stopped on dev (results/cranfield/crossencoder_selection.json; the 4-epoch model is still to be measured).
    train_defaults = {"epochs": 4, "n_per_query": 16, "batch_size": 16, "lr": 1e-4, "head_lr": 1e-3,
                      "patience": 1, "empty_margin": 1.0, "pseudo_queries": 1400, "removal_anchor": 0.25}
    params = {**_HFRanker.params, "max_length": Int(128, lo=8, hi=32768, doc="pieces of the encoded pair"),
              "label": Param((int, str), None, lo=0, nullable=True,
                             doc="multi-label head: index or name of the relevant class (score = its log-softmax)"),
              "template": Str(None, nullable=True, doc="one text with {query} and {document} instead of the "
                              "tokenizer's pair encoding (e.g. 'query: {query} document: {document}')")}

    def __init__(self, vocab: Vocab | None = None, model: str | None = None, max_length: int = 128,
                 label: int | str | None = None, hf_model: nn.Module | None = None, **kw):
        super().__init__(vocab, model, max_length, **kw)
        from transformers import AutoConfig, AutoModelForSequenceClassification
        try:
            hf_config = hf_model.config if hf_model is not None else \
                AutoConfig.from_pretrained(self.model_name, local_files_only=True)
        except (OSError, ValueError, KeyError) as e:
            raise BadInput(f"model {self.model_name!r}: no loadable config.json offline ({_first_line(e)})") from None
        #: True when the checkpoint carries a trained classification head (else a fresh one is made)
        self.has_head = any(a.endswith("ForSequenceClassification") for a in (hf_config.architectures or []))
        torch.manual_seed(self.init_seed)
        if hf_model is not None:
            self.model = hf_model
        else:
            self.model = (self._load(AutoModelForSequenceClassification) if self.has_head
                          else self._load(AutoModelForSequenceClassification, num_labels=1))
        self.encoder_model = getattr(self.model, self.model.base_model_prefix, self.model)
        self._bind(self.model)
        self.label, self.label_index = label, self._label_index(label)

    def _label_index(self, label) -> int | None:
        """None for a one-logit head; else the index of `label` among the head's classes."""
        n, names = self.model.config.num_labels, dict(self.model.config.id2label or {})
        if n == 1:
            if label not in (None, 0):
                raise BadInput(f"model {self.model_name!r} has one output logit; `label` must be unset")
            return None
        valid = ", ".join(f"{i} ({names.get(i, '?')})" for i in range(n))
        if label is None:
            raise BadInput(f"model {self.model_name!r} has {n} labels; set `label` to the relevant one: {valid}")
        if isinstance(label, str):
            hits = [i for i, v in names.items() if v == label]
            if not hits:
                raise BadInput(f"model {self.model_name!r} has no label {label!r}; valid: {valid}")
            return int(hits[0])
        if not 0 <= label < n:
            raise BadInput(f"model {self.model_name!r}: label {label} out of range; valid: {valid}")
        return int(label)

    def config(self) -> dict:
        return {**super().config(), "label": self.label}

    def reads_one_position(self) -> bool:
        """The head reads [CLS] (encoders) or the last token (decoders); ModernBERT's mean pooling reads all."""
        return getattr(self.model.config, "classifier_pooling", "cls") != "mean"

    def check_usable_untrained(self) -> None:
        """`train = false`: the weights are used as given, so the head must be a trained one."""
        if not self.has_head:
            raise BadInput(f"model {self.model_name!r} has no sequence-classification head (its architecture is "
                           "not ...ForSequenceClassification), so its relevance scores would be random; give a "
                           "cross-encoder, or set train = true to fine-tune one")

    def _model(self, embeds, b: Batch, hidden: bool, attentions: bool) -> ModelOut:
        kw = {"token_type_ids": b.types} if b.types is not None else {}
        if self.left_pad:
            kw["position_ids"] = self._positions(b.attn)
        out = self.model(inputs_embeds=embeds, attention_mask=b.attn, output_hidden_states=hidden,
                         output_attentions=attentions, **kw)
        logits = out.logits
        score = logits[:, 0] if self.label_index is None else torch.log_softmax(logits.float(), -1)[:, self.label_index]
        att = out.attentions if attentions else None
        summary = reads = None
        if att is not None:  # the head reads [CLS], a decoder's last token, or (mean pooling) every position
            reads = read_weights(b.attn, "mean" if not self.reads_one_position() else
                                 "last" if self.left_pad else "first")
            summary = torch.einsum("bp,bpq->bq", reads, att[-1].float().mean(1))
        return ModelOut(score, out.hidden_states if hidden else None, att, summary, reads)
