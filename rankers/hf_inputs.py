"""How a Hugging Face ranker's input is built: the model's own tokenizer on the original text.

A row of word ids becomes its text (`GrowingVocab.text`: each word with the whitespace that
preceded it in the original, so an unperturbed row is the original text, newlines included).
The text is encoded by the model's own fast tokenizer, either as a pair (`tok(query, document)`:
the tokenizer's own pair template and special tokens, `token_type_ids` only where it makes
them) or, with a `template`, as one text (`"Query: {query} Document: {document} Relevant:"`).
Each piece is mapped to the word it belongs to through the tokenizer's `offset_mapping`:
a piece overlapping a word's characters is that word's; a piece of whitespace only (a
byte-level 'Ġ' or 'Ċ', a SentencePiece '▁' on its own) belongs to the word that follows it;
anything else (special tokens, the template's fixed text) to no word (-1).

`Layout` is one encoded pair: ids [P], word [P] (document word index or -1), qword [P]
(query word index or -1), types [P] or None.
"""
from __future__ import annotations

import bisect
from dataclasses import dataclass

from .errors import BadInput

#: monoT5's input format (Nogueira et al. 2020)
MONOT5_TEMPLATE = "Query: {query} Document: {document} Relevant:"


@dataclass(frozen=True)
class Layout:
    ids: tuple[int, ...]
    word: tuple[int, ...]
    qword: tuple[int, ...]
    types: tuple[int, ...] | None


def check_template(template: str | None, where: str) -> str | None:
    """A template names `{query}` and `{document}` once each (other text is kept as written)."""
    if template is None:
        return None
    if not isinstance(template, str):
        raise BadInput(f"{where}: template must be a string with {{query}} and {{document}}")
    for key in ("{query}", "{document}"):
        if template.count(key) != 1:
            raise BadInput(f"{where}: template must contain {key} exactly once, got {template!r}")
    return template


def fill(template: str, query: str, document: str) -> tuple[str, int, int]:
    """(text, start of the query in it, start of the document in it)."""
    qpos, dpos = template.index("{query}"), template.index("{document}")
    if qpos < dpos:
        a, b, c = template[:qpos], template[qpos + 7: dpos], template[dpos + 10:]
        return a + query + b + document + c, len(a), len(a) + len(query) + len(b)
    a, b, c = template[:dpos], template[dpos + 10: qpos], template[qpos + 7:]
    return a + document + b + query + c, len(a) + len(document) + len(b), len(a)


def _word_of(text: str, spans: list[tuple[int, int]], starts: list[int], a: int, b: int) -> int:
    """Index of the word a piece with character offsets [a, b) belongs to, or -1."""
    j = bisect.bisect_right(starts, max(a, b - 1)) - 1   # last word starting at or before the piece
    if j >= 0 and b > a and spans[j][0] < b and spans[j][1] > a:
        return j
    if j + 1 < len(spans) and a < b and spans[j + 1][0] < b:  # a piece reaching into the next word
        return j + 1
    nxt = bisect.bisect_left(starts, a)                   # whitespace (or empty) piece: the next word's
    if nxt < len(spans) and not text[a: spans[nxt][0]].strip():
        return nxt
    return -1


def _assign(text: str, spans: list[tuple[int, int]], offsets, keep) -> list[int]:
    starts = [s for s, _ in spans]
    return [_word_of(text, spans, starts, a, b) if k else -1 for (a, b), k in zip(offsets, keep)]


class InputBuilder:
    """Encodes (query, document) texts, or one text, with a fast tokenizer into `Layout`s."""

    def __init__(self, tok, template: str | None = None, model_name: str = "?"):
        if not getattr(tok, "is_fast", False):
            raise BadInput(f"model {model_name!r}: its tokenizer ({type(tok).__name__}) is not a fast "
                           "(Rust `tokenizers`) tokenizer, so it gives no character offsets to map pieces "
                           "to words; save the model with a tokenizer.json")
        self.tok, self.template = tok, template
        self._cache: dict = {}

    def _encode(self, *texts: str):
        return self.tok(*texts, add_special_tokens=True, return_offsets_mapping=True, truncation=False)

    def pair(self, query: str, qspans, document: str, dspans) -> Layout:
        """The (query, document) input: the tokenizer's pair encoding, or the template's one text."""
        key = ("pair", query, document, tuple(qspans), tuple(dspans))
        got = self._cache.get(key)
        if got is not None:
            return got
        if self.template is None:
            enc = self._encode(query, document)
            seq = enc.sequence_ids()
            offs = enc["offset_mapping"]
            qword = _assign(query, qspans, offs, [s == 0 for s in seq])
            word = _assign(document, dspans, offs, [s == 1 for s in seq])
        else:
            text, q0, d0 = fill(self.template, query, document)
            enc = self._encode(text)
            offs = enc["offset_mapping"]
            special = [s is None for s in enc.sequence_ids()]
            qword = _assign(text, [(s + q0, e + q0) for s, e in qspans], offs, [not x for x in special])
            word = _assign(text, [(s + d0, e + d0) for s, e in dspans], offs, [not x for x in special])
        types = tuple(enc["token_type_ids"]) if "token_type_ids" in enc else None
        out = Layout(tuple(enc["input_ids"]), tuple(word), tuple(qword), types)
        return self._remember(key, out)

    def single(self, text: str, spans) -> Layout:
        """One text alone (a bi-encoder's side): word = its word index per piece."""
        key = ("single", text, tuple(spans))
        got = self._cache.get(key)
        if got is not None:
            return got
        enc = self._encode(text)
        word = _assign(text, spans, enc["offset_mapping"], [s == 0 for s in enc.sequence_ids()])
        types = tuple(enc["token_type_ids"]) if "token_type_ids" in enc else None
        out = Layout(tuple(enc["input_ids"]), tuple(word), tuple([-1] * len(word)), types)
        return self._remember(key, out)

    def _remember(self, key, value: Layout) -> Layout:
        if len(self._cache) > 50000:
            self._cache.clear()
        self._cache[key] = value
        return value


def answer_token(tok, token: str, model_name: str, what: str) -> int:
    """The vocabulary id scoring `token` (e.g. monoT5's 'true'): the token itself where the vocabulary
    has it, else the one piece the tokenizer makes of it ('true' -> '▁true'); a token the tokenizer splits
    into several pieces or reads as unknown is a BadInput (its first piece would be scored silently)."""
    if not isinstance(token, str) or not token:
        raise BadInput(f"model {model_name!r}: {what} must be a non-empty string")
    vocab = tok.get_vocab()
    if token in vocab:
        return int(vocab[token])
    ids = tok(token, add_special_tokens=False)["input_ids"]
    if not ids:
        raise BadInput(f"model {model_name!r}: its tokenizer makes no piece of {what} {token!r}")
    if len(ids) > 1 or (tok.unk_token_id is not None and ids[0] == tok.unk_token_id):
        pieces = tok.convert_ids_to_tokens(ids)
        raise BadInput(f"model {model_name!r}: {what} {token!r} is not one vocabulary entry (the tokenizer reads "
                       f"it as {pieces}); give a token the model scores as one piece")
    return int(ids[0])
