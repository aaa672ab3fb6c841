"""Tokenisation and vocabulary shared by the lexical and interaction rankers.

Tokens are lower-cased alphanumeric words with English stopwords removed; the
same function tokenises queries, documents and free text given on the CLI.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Iterable, Sequence

_WORD = re.compile(r"[a-z0-9]+(?:[.-][a-z0-9]+)*")

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
    """Split `text` into lower-cased word tokens, dropping stopwords and 1-char tokens."""
    return [t for t in _WORD.findall(text.lower()) if t not in STOPWORDS and len(t) > 1]


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
