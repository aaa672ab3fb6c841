"""Tokenisation and vocabulary shared by the lexical and interaction rankers.

Tokens are NFKC-normalised, case-folded runs of Unicode letters and digits
(joined by inner '.' or '-'), English stopwords removed; the same function
tokenises queries, documents and free text given on the CLI. "Strömung" stays
one token, "café" keeps its accent, CJK runs are kept.
"""
from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field
from typing import Iterable, Sequence

_WORD = re.compile(r"[^\W_]+(?:[.-][^\W_]+)*")

STOPWORDS = frozenset(
    """a about above after again against all am an and any are as at be because been
    before being below between both but by can could did do does doing down during each
    few for from further had has have having he her here hers herself him himself his how
    i if in into is it its itself just me more most my myself no nor not now of off on
    once only or other our ours ourselves out over own same she should so some such than
    that the their theirs them themselves then there these they this those through to too
    under until up very was we were what when where which while who whom why will with
    would you your yours yourself yourselves also may must shall upon whether""".split()
)

PAD, UNK = "<pad>", "<unk>"
PAD_ID, UNK_ID = 0, 1


def tokenize(text: str) -> list[str]:
    """Split `text` into case-folded word tokens, dropping stopwords and one-character
    ASCII tokens (a single CJK character is a word and is kept)."""
    norm = unicodedata.normalize("NFKC", text).casefold()
    return [t for t in _WORD.findall(norm) if t not in STOPWORDS and (len(t) > 1 or not t.isascii())]


_NONSPACE = re.compile(r"\S+")


class Word(str):
    """A word of the original text that remembers the whitespace before it (`sep`: '' for the first
    word), so a ranker rebuilding text from words (`GrowingVocab.text`) gives the original text when
    nothing is removed, and the remaining words keep their own separators when some are."""

    __slots__ = ("sep",)

    def __new__(cls, word: str, sep: str = " ") -> "Word":
        w = super().__new__(cls, word)
        w.sep = sep
        return w

    def __reduce__(self):
        return (Word, (str(self), self.sep))


def word_spans(text: str) -> list[tuple[str, int, int]]:
    """The words of the original text: whitespace-separated runs (case, punctuation and stopwords
    kept) as (word, start, end) with text[start:end] == word. Units of transformer and callable rankers."""
    return [(m.group(), m.start(), m.end()) for m in _NONSPACE.finditer(text)]


def words(text: str) -> list[Word]:
    """The words of `text` (`word_spans`) as `Word`s carrying the whitespace before each; leading and
    trailing whitespace of the text belongs to no word and is not kept."""
    out, end = [], None
    for w, s, e in word_spans(text):
        out.append(Word(w, "" if end is None else text[end:s]))
        end = e
    return out


def token_spans(text: str) -> list[tuple[str, int, int]] | None:
    """`tokenize(text)` with each token's character span in the original text, or None where the
    normalisation (NFKC, casefold) does not map characters one to one onto the original."""
    chars, where = [], []
    for i, c in enumerate(text):
        n = unicodedata.normalize("NFKC", c).casefold()
        chars.append(n)
        where += [i] * len(n)
    norm = "".join(chars)
    if norm != unicodedata.normalize("NFKC", text).casefold():
        return None
    out = []
    for m in _WORD.finditer(norm):
        t = m.group()
        if t not in STOPWORDS and (len(t) > 1 or not t.isascii()):
            out.append((t, where[m.start()], where[m.end() - 1] + 1))
    return out


#: how a ranker turns text into units: "index" = `tokenize` (lexical and interaction rankers),
#: "words" = `words` (transformer and callable rankers: the original text)
ANALYZERS = {"index": tokenize, "words": words}


def analyze(analyzer: str, text: str) -> list[str]:
    return ANALYZERS[analyzer](text)


def spans(analyzer: str, text: str) -> list[tuple[int, int]] | None:
    """Character spans of `analyze(analyzer, text)` in `text` (None when not recoverable)."""
    got = word_spans(text) if analyzer == "words" else token_spans(text)
    return None if got is None else [(s, e) for _, s, e in got]



@dataclass
class Vocab:
    """Token <-> id map; id 0 is padding, id 1 stands for any unknown token."""

    itos: list[str] = field(default_factory=lambda: [PAD, UNK])

    def __post_init__(self) -> None:
        self.stoi = {t: i for i, t in enumerate(self.itos)}

    @classmethod
    def build(cls, token_lists: Iterable[Sequence[str]]) -> "Vocab":
        """Vocabulary of every token seen, in sorted order (deterministic)."""
        seen = sorted({t for toks in token_lists for t in toks})
        return cls([PAD, UNK, *seen])

    def __len__(self) -> int:
        return len(self.itos)

    def encode(self, tokens: Sequence[str]) -> list[int]:
        return [self.stoi.get(t, UNK_ID) for t in tokens]

    def unknown(self, tokens: Sequence[str]) -> list[str]:
        """The tokens this vocabulary maps to `<unk>` (out of vocabulary), in order."""
        return [t for t in tokens if t not in self.stoi]

    def digest(self) -> str:
        """A short content hash of the vocabulary (checkpoint identity)."""
        import hashlib
        return hashlib.sha256("\n".join(self.itos).encode()).hexdigest()[:16]


class GrowingVocab(Vocab):
    """A word vocabulary that adds unseen words (transformers have no closed word vocabulary).

    An entry is a word with the whitespace before it (`Word.sep`; a plain string counts as
    preceded by one space), so `text(ids)` rebuilds the original text of a row of ids."""

    def __post_init__(self) -> None:
        self.seps = ["", ""] + [" "] * (len(self.itos) - 2)
        self.stoi = {}
        for i, t in enumerate(self.itos):
            self.stoi.setdefault((t, self.seps[i]), i)

    def encode(self, tokens: Sequence[str]) -> list[int]:
        out = []
        for t in tokens:
            key = (str(t), getattr(t, "sep", " "))
            i = self.stoi.get(key)
            if i is None:
                i = self.stoi[key] = len(self.itos)
                self.itos.append(key[0])
                self.seps.append(key[1])
            out.append(i)
        return out

    def text(self, ids: Sequence[int]) -> tuple[str, list[tuple[int, int]]]:
        """The text of word ids (padding skipped): each word preceded by its own separator, the
        text's leading whitespace dropped; with each word's (start, end) character span in it."""
        parts, spans, pos = [], [], 0
        for i in ids:
            if i == PAD_ID:
                continue
            sep = self.seps[i] if parts else ""
            w = self.itos[i]
            parts += [sep, w]
            spans.append((pos + len(sep), pos + len(sep) + len(w)))
            pos += len(sep) + len(w)
        return "".join(parts), spans

    def unknown(self, tokens: Sequence[str]) -> list[str]:
        return []  # every word maps to subword pieces: nothing is out of vocabulary
