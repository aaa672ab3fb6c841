"""Tiny random Hugging Face models of each family, built offline from configs, each with a tokenizer
of its own kind made here with the `tokenizers` library (byte-level BPE and unigram with Metaspace
trained by its trainers, scores rounded; WordPiece from the corpus split by its BERT normalizer and
pre-tokenizer), the same bytes on every run so a failure reproduces. Hidden size 32, 2 layers, a large `initializer_range` so that scores of
different pairs differ (at the default every pair scores alike and a comparison proves nothing)."""
from __future__ import annotations

import json
from pathlib import Path

import torch

CORPUS = [
    "What is the drag of a cone at supersonic speed?",
    "Boundary layer heat transfer at HIGH speed!",
    "The flow of air over a swept wing.\nPressure distribution, measured in a wind tunnel.",
    "Experimental investigation of the aerodynamics of a wing in a slipstream.",
    "true false yes no Relevant: Query: Document: Answer:",
    "true false true false yes no yes no",
    "Simple shear flow past a flat plate; the incompressible fluid has small viscosity.",
    "1234567890 (), . ; : ! ? - ' \" /",
] * 30

#: what tests score: capitals, punctuation and a newline in the document
QUERY = "What is the DRAG of a cone?"
DOC = "The flow,\nof AIR over a Swept wing; pressure (measured) at HIGH speed."

FAMILIES = ("bert", "roberta", "xlm-roberta", "distilbert", "deberta-v2", "electra", "modernbert", "qwen2-cls",
            "t5", "qwen2")


def _bpe(specials: list[str]) -> tuple[dict, list]:
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    t = Tokenizer(models.BPE())
    t.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    t.train_from_iterator(CORPUS, trainers.BpeTrainer(vocab_size=400, special_tokens=specials,
                                                      initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    js = json.loads(t.to_str())["model"]
    merges = [tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in js["merges"]]
    return js["vocab"], merges


def _unigram(specials: list[str], unk: str) -> list[tuple[str, float]]:
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    t = Tokenizer(models.Unigram())
    t.pre_tokenizer = pre_tokenizers.Metaspace()
    t.train_from_iterator(CORPUS, trainers.UnigramTrainer(vocab_size=300, special_tokens=specials, unk_token=unk))
    vocab = [tuple(x) for x in json.loads(t.to_str())["model"]["vocab"]]
    # the trainer's scores differ in the last digits from run to run (parallel sums): round and order them so a
    # test builds the same tokenizer every time
    head = [v for v in vocab if v[0] in specials]
    rest = sorted(((p, round(sc, 6)) for p, sc in vocab if p not in specials), key=lambda v: (-v[1], v[0]))
    return head + rest


def _wordpiece(specials: list[str], lowercase: bool = True) -> dict:
    """A WordPiece vocabulary from the corpus as the `tokenizers` BERT normalizer and pre-tokenizer split it:
    every character, every continuation character, and every word seen twice or more. Built deterministically
    (the library's WordPiece trainer breaks frequency ties differently from run to run)."""
    from collections import Counter

    from tokenizers import normalizers, pre_tokenizers
    norm, pre = normalizers.BertNormalizer(lowercase=lowercase), pre_tokenizers.BertPreTokenizer()
    words = Counter(w for line in CORPUS for w, _ in pre.pre_tokenize_str(norm.normalize_str(line)))
    chars = sorted({c for w in words for c in w})
    pieces = specials + chars + [f"##{c}" for c in chars] + sorted(w for w, n in words.items() if n >= 2 and len(w) > 1)
    return {p: i for i, p in enumerate(dict.fromkeys(pieces))}


WP = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
SMALL = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
             max_position_embeddings=256, initializer_range=0.5)


def build(family: str, path: Path) -> str:
    """Save a tiny random model of `family` with its tokenizer under `path`; returns the path.

    Encoder families and qwen2-cls get a one-logit sequence-classification head; t5 is a
    seq2seq LM (monoT5-style), qwen2 a causal LM (Qwen3-Reranker-style)."""
    import transformers as T
    path = Path(path)
    torch.manual_seed(0)
    if family in ("bert", "distilbert", "electra"):
        tok = {"bert": T.BertTokenizer, "distilbert": T.DistilBertTokenizer,
               "electra": T.ElectraTokenizer}[family](vocab=_wordpiece(WP))
    elif family == "roberta":
        vocab, merges = _bpe(["<s>", "<pad>", "</s>", "<unk>", "<mask>"])
        tok = T.RobertaTokenizer(vocab=vocab, merges=merges)
    elif family == "xlm-roberta":
        tok = T.XLMRobertaTokenizer(vocab=_unigram(["<s>", "<pad>", "</s>", "<unk>", "<mask>"], "<unk>"))
    elif family == "deberta-v2":
        tok = T.DebertaV2Tokenizer(vocab=_unigram(WP, "[UNK]"))
    elif family == "modernbert":
        vocab, merges = _bpe(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"])
        tok = T.PreTrainedTokenizerFast(tokenizer_object=_modernbert_tokenizer(vocab, merges), cls_token="[CLS]",
                                        sep_token="[SEP]", pad_token="[PAD]", unk_token="[UNK]",
                                        mask_token="[MASK]")
    elif family == "t5":
        # monoT5's answer words are single pieces of its vocabulary, as in the real model
        vocab = _unigram(["<pad>", "</s>", "<unk>"], "<unk>")
        best = max(sc for p, sc in vocab[3:])
        vocab = vocab[:3] + [(w, best) for w in ("▁true", "▁false") if w not in dict(vocab)] + vocab[3:]
        tok = T.T5Tokenizer(vocab=vocab, extra_ids=0)
    elif family in ("qwen2", "qwen2-cls"):
        vocab, merges = _bpe(["<|endoftext|>"])
        tok = T.Qwen2Tokenizer(vocab=vocab, merges=merges)
    else:
        raise ValueError(family)
    n = len(tok)
    if family == "bert":
        model = T.BertForSequenceClassification(T.BertConfig(vocab_size=n, num_labels=1, **SMALL))
    elif family == "roberta":
        model = T.RobertaForSequenceClassification(T.RobertaConfig(
            vocab_size=n, num_labels=1, pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id,
            eos_token_id=tok.eos_token_id, **{**SMALL, "max_position_embeddings": 260}))
    elif family == "xlm-roberta":
        model = T.XLMRobertaForSequenceClassification(T.XLMRobertaConfig(
            vocab_size=n, num_labels=1, pad_token_id=tok.pad_token_id, **{**SMALL, "max_position_embeddings": 260}))
    elif family == "distilbert":
        model = T.DistilBertForSequenceClassification(T.DistilBertConfig(
            vocab_size=n, num_labels=1, dim=32, n_layers=2, n_heads=2, hidden_dim=64, max_position_embeddings=256,
            initializer_range=0.5))
    elif family == "deberta-v2":
        model = T.DebertaV2ForSequenceClassification(T.DebertaV2Config(
            vocab_size=n, num_labels=1, pad_token_id=tok.pad_token_id, relative_attention=True,
            position_biased_input=False, pos_att_type=["p2c", "c2p"], max_relative_positions=64, **SMALL))
    elif family == "electra":
        model = T.ElectraForSequenceClassification(T.ElectraConfig(vocab_size=n, num_labels=1, embedding_size=16,
                                                                   **SMALL))
    elif family == "modernbert":
        model = T.ModernBertForSequenceClassification(T.ModernBertConfig(
            vocab_size=n, num_labels=1, pad_token_id=tok.pad_token_id, cls_token_id=tok.cls_token_id,
            sep_token_id=tok.sep_token_id, bos_token_id=tok.cls_token_id, eos_token_id=tok.sep_token_id,
            hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
            intermediate_size=64, max_position_embeddings=256, initializer_range=0.5, global_attn_every_n_layers=1,
            local_attention=64, reference_compile=False))
    elif family == "qwen2-cls":
        model = T.Qwen2ForSequenceClassification(T.Qwen2Config(
            vocab_size=n, num_labels=1, pad_token_id=tok.pad_token_id, num_key_value_heads=2, **SMALL))
    elif family == "t5":
        model = T.T5ForConditionalGeneration(T.T5Config(
            vocab_size=n, d_model=32, d_kv=16, d_ff=64, num_layers=2, num_heads=2, initializer_factor=4.0,
            pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id, decoder_start_token_id=tok.pad_token_id))
    else:
        model = T.Qwen2ForCausalLM(T.Qwen2Config(vocab_size=n, num_key_value_heads=2, tie_word_embeddings=False,
                                                 **SMALL))
    model.eval().save_pretrained(path)
    tok.save_pretrained(path)
    return str(path)


def _modernbert_tokenizer(vocab, merges):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
    t = Tokenizer(models.BPE(vocab=vocab, merges=merges))
    t.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    t.decoder = decoders.ByteLevel()
    cls, sep = vocab["[CLS]"], vocab["[SEP]"]
    t.post_processor = processors.TemplateProcessing(single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B [SEP]",
                                                     special_tokens=[("[CLS]", cls), ("[SEP]", sep)])
    return t


def word_pieces(tok, query: str, doc: str, side: int = 1) -> tuple[dict, list[list[int]]]:
    """(tokenizer(query, doc) with offsets, per document word (side 1; side 0: query word) the positions of its
    pieces); a piece made of whitespace alone belongs to the word after it, as rexbench assigns it."""
    enc = tok(query, doc, return_offsets_mapping=True)
    text = (query, doc)[side]
    spans, pos = [], 0
    for w in text.split():
        pos = text.index(w, pos)
        spans.append((pos, pos + len(w)))
        pos += len(w)
    out: list[list[int]] = [[] for _ in spans]
    for p, (a, b) in enumerate(enc["offset_mapping"]):
        if enc.sequence_ids()[p] == side:
            out[next(i for i, (s, e) in enumerate(spans) if e > a or (a == b and s >= a))].append(p)
    return enc, out


def count_encoder_rows(monkeypatch, ranker) -> list[int]:
    """Patch the class of an HF ranker so that each encoder call (`_model`) appends its rows to the list returned."""
    rows: list[int] = []
    orig = type(ranker)._model

    def counting(self, embeds, b, *a, **k):
        rows.append(embeds.shape[0])
        return orig(self, embeds, b, *a, **k)
    monkeypatch.setattr(type(ranker), "_model", counting)
    return rows
