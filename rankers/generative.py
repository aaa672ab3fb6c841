"""Generative rerankers with gradients: seq2seq (monoT5 style) and causal LMs (Qwen3-Reranker style).

Both read one text, the filled `template`, encoded by the model's own tokenizer
(`rankers.hf_inputs`); document words are the units (the template's fixed text is not) and
every removal operator, gradient explainer, Grad-CAM on a layer's token states and attention
works as for the cross-encoder (`rankers.transformer`).

- seq2seq: score = logit(true_token) - logit(false_token) at the first decoder step
  (decoder input = the model's `decoder_start_token_id`); monoT5's template and tokens by default.
- causal_lm: score = logit(true_token) - logit(false_token) at the last position of the
  prompt (left-padded, positions counting real tokens only). The default template is a plain
  yes/no prompt; a model trained with its own prompt (e.g. Qwen3-Reranker's chat format, see
  its model card) must be given that prompt as `template`.
A token word (e.g. "true") scores through its vocabulary id, or the one piece the tokenizer makes
of it ("▁true"); a word the tokenizer splits or reads as unknown is refused.
"""
from __future__ import annotations

import inspect

import torch

from .errors import BadInput
from .hf_inputs import MONOT5_TEMPLATE, answer_token
from .params import Choice, Int, Str
from .registry import register_ranker
from .crossencoder import _PairRanker
from .transformer import Batch, ModelOut, read_weights
from .text import Vocab

#: the causal_lm default prompt (the answer follows the final newline)
YES_NO_TEMPLATE = ("Judge whether the document is relevant to the query. Answer only yes or no.\n"
                   "Query: {query}\nDocument: {document}\nRelevant:\n")

_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


class _Generative(_PairRanker):
    default_template = ""
    default_tokens = ("", "")
    params = {**_PairRanker.params,
              "max_length": Int(512, lo=8, hi=32768, doc="pieces of the filled template"),
              # a word is at least one piece: 512 words never cut a document the 512 pieces would hold
              "max_doc_len": Int(512, lo=1, hi=100000, doc="document words kept (the pieces limit usually cuts first)"),
              "model": Str(None, nullable=True, doc="local path or HF id (required: no bundled default)"),
              "template": Str(None, nullable=True, doc="the prompt, with {query} and {document} (default: the "
                              "type's own, see rankers.generative)"),
              "true_token": Str(None, nullable=True, doc="token whose logit counts for relevance"),
              "false_token": Str(None, nullable=True, doc="token whose logit counts against"),
              "dtype": Choice("float32", tuple(_DTYPES), doc="weights' dtype (bfloat16/float16 on a GPU)")}

    def __init__(self, vocab: Vocab | None = None, model: str | None = None, max_length: int = 512,
                 template: str | None = None, true_token: str | None = None, false_token: str | None = None,
                 dtype: str = "float32", max_doc_len: int = 512, **kw):
        if model is None and kw.get("tokenizer") is None:
            raise BadInput(f"{self.name}: give `model` (a local directory or HF id of a {self.example} checkpoint); "
                           "there is no bundled default")
        super().__init__(vocab, model, max_length, template=template or self.default_template,
                         max_doc_len=max_doc_len, **kw)
        if dtype not in _DTYPES:
            raise BadInput(f"dtype must be one of {', '.join(_DTYPES)}, not {dtype!r}")
        self.dtype_name = dtype
        self.true_token = true_token or self.default_tokens[0]
        self.false_token = false_token or self.default_tokens[1]
        import transformers
        self.model = self._load(getattr(transformers, self.auto), dtype=_DTYPES[dtype])
        if self.missing_weights:  # e.g. a BERT classifier read as a causal LM: its LM head would be random
            raise BadInput(f"model {self.model_name!r} is not a {self.auto[len('AutoModelFor'):]} checkpoint: "
                           f"{len(self.missing_weights)} weights it needs are missing (e.g. "
                           f"{self.missing_weights[0]}), so its answer logits would be random")
        self.encoder_model = self.model
        self._bind(self.model)
        self._extra = set(inspect.signature(self.model.forward).parameters)
        self.true_id = answer_token(self.tok, self.true_token, self.model_name, "true_token")
        self.false_id = answer_token(self.tok, self.false_token, self.model_name, "false_token")
        if self.true_id == self.false_id:
            raise BadInput(f"model {self.model_name!r}: true_token {self.true_token!r} and false_token "
                           f"{self.false_token!r} map to the same token id {self.true_id}")

    #: the transformers Auto class the checkpoint is loaded with
    auto = ""

    def config(self) -> dict:
        return {**super().config(), "true_token": self.true_token, "false_token": self.false_token,
                "dtype": self.dtype_name}


@register_ranker("seq2seq", kind="transformer", trainable=False)
class Seq2SeqRanker(_Generative):
    """monoT5-style reranker: logit(true) - logit(false) at the first decoder step (see module docstring)."""

    default_template = MONOT5_TEMPLATE
    default_tokens = ("true", "false")
    example = "monoT5"

    auto = "AutoModelForSeq2SeqLM"

    def _bind(self, net) -> None:
        super()._bind(net)
        if not getattr(net.config, "is_encoder_decoder", False):
            raise BadInput(f"model {self.model_name!r} ({net.config.model_type}) is not an encoder-decoder model; "
                           "seq2seq needs one (e.g. a T5/monoT5 checkpoint)")
        self.left_pad = False
        start = net.config.decoder_start_token_id
        self.start_id = int(start if start is not None else self.pad_id)
        cfg = net.config
        self.n_layers = int(getattr(cfg, "num_layers", None) or getattr(cfg, "encoder_layers", 0) or self.n_layers)

    def _model(self, embeds, b: Batch, hidden: bool, attentions: bool) -> ModelOut:
        dec = torch.full((embeds.shape[0], 1), self.start_id, dtype=torch.long, device=embeds.device)
        out = self.model(inputs_embeds=embeds, attention_mask=b.attn, decoder_input_ids=dec,
                         output_hidden_states=hidden, output_attentions=attentions)
        logits = out.logits[:, 0].float()
        score = logits[:, self.true_id] - logits[:, self.false_id]
        summary = out.cross_attentions[-1].mean(1)[:, 0] if attentions else None   # step 0 over the input
        return ModelOut(score, out.encoder_hidden_states if hidden else None,
                        out.encoder_attentions if attentions else None, summary,
                        summary.float() if summary is not None else None)  # the answer reads the input this way


@register_ranker("causal_lm", kind="transformer", trainable=False)
class CausalLMRanker(_Generative):
    """LLM reranker: logit(yes) - logit(no) at the prompt's last position (see module docstring)."""

    default_template = YES_NO_TEMPLATE
    default_tokens = ("yes", "no")
    example = "causal LM reranker"

    auto = "AutoModelForCausalLM"

    def _bind(self, net) -> None:
        super()._bind(net)
        if getattr(net.config, "is_encoder_decoder", False):
            raise BadInput(f"model {self.model_name!r} is an encoder-decoder model; use type = \"seq2seq\"")
        self.left_pad = True

    def reads_one_position(self) -> bool:
        """The score is read at the prompt's last position."""
        return True

    def _model(self, embeds, b: Batch, hidden: bool, attentions: bool) -> ModelOut:
        kw = {"logits_to_keep": 1} if "logits_to_keep" in self._extra else {}
        out = self.model(inputs_embeds=embeds, attention_mask=b.attn, position_ids=self._positions(b.attn),
                         output_hidden_states=hidden, output_attentions=attentions, use_cache=False, **kw)
        logits = out.logits[:, -1].float()
        score = logits[:, self.true_id] - logits[:, self.false_id]
        att = out.attentions if attentions else None
        return ModelOut(score, out.hidden_states if hidden else None, att,
                        att[-1].mean(1)[:, -1] if att is not None else None,
                        read_weights(b.attn, "last") if att is not None else None)
