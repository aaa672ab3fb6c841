"""The one place where attributions change units.

- `pair_to_terms`: a term-pair map [n_query, n_doc] -> query_scores [n_query]
  (row sums) and doc_scores [n_doc] (column sums). Sums keep completeness:
  sum(doc_scores) == sum(query_scores) == sum(pair_map).
- `pieces_to_words`: subword-piece scores [n_pieces] -> word scores [n_words]
  by summing the pieces of each word (word_ids[p] = word index of piece p, -1
  for special tokens, which are dropped).
- `embedding_to_tokens`: per-dimension attributions [n, E] -> per-token [n]
  by summing over the embedding dimension (Captum's convention).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np


def pair_to_terms(pair_map: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """pair_map [n_query, n_doc] -> (query_scores [n_query], doc_scores [n_doc])."""
    pm = np.asarray(pair_map, dtype=np.float64)
    return pm.sum(1), pm.sum(0)


def pieces_to_words(scores: Sequence[float], word_ids: Sequence[int], n_words: int) -> np.ndarray:
    """Sum piece scores into word scores [n_words]; pieces with word id -1 are dropped."""
    out = np.zeros(n_words, dtype=np.float64)
    for s, w in zip(scores, word_ids):
        if w >= 0:
            out[w] += float(s)
    return out


def embedding_to_tokens(attr: np.ndarray) -> np.ndarray:
    """[n, E] -> [n] by summing over E; a [n] input is returned as is."""
    a = np.asarray(attr, dtype=np.float64)
    return a.sum(-1) if a.ndim == 2 else a
