"""Honest baselines: random scores and lexical query-term matching."""
from __future__ import annotations

import zlib
from typing import Mapping

import numpy as np

from rankers.params import Int
from rankers.text import UNK_ID, tokenize

from .base import Explainer, Pair, register_explainer


@register_explainer("random")
class RandomExplainer(Explainer):
    """Standard-normal scores per document token, seeded by (seed, document); and the pair-level chance
    baseline: a standard-normal pair_map [n_query, n_doc] drawn independently, seeded by (seed, query,
    document), whose row sums are its query scores (so pair- and query-level metrics have a random
    reference too). The document scores are not the map's column sums: each level is its own draw."""
    baseline = True

    stochastic = True

    def _attribute(self, pair: Pair) -> dict:
        key = zlib.crc32(" ".join(pair.doc_tokens).encode()) ^ self.seed
        pkey = zlib.crc32((" ".join(pair.query_tokens) + "\x00" + " ".join(pair.doc_tokens)).encode()) ^ self.seed
        pm = np.random.default_rng([pkey, 1]).standard_normal((len(pair.q_ids), len(pair.doc_tokens)))
        return {"doc_scores": np.random.default_rng(key).standard_normal(len(pair.doc_tokens)), "pair_map": pm}


def index_terms(analyzer: str, units) -> list[list[str]]:
    """Each unit's index terms (`tokenize`): itself for index tokens; for original-text words, their
    case-folded tokens without punctuation ("Flow," -> ["flow"]; a stopword -> [])."""
    return [[u] for u in units] if analyzer == "index" else [tokenize(u) for u in units]


def _match(ranker, pair: Pair) -> np.ndarray:
    """[n_query, n_doc] indicator: query unit i and document unit j share an index term (lexical
    rankers: identical known tokens)."""
    if ranker.analyzer == "index":
        q, d = pair.q_ids.cpu().numpy(), pair.d_ids.cpu().numpy()
        return ((q[:, None] == d[None, :]) & (q[:, None] > UNK_ID)).astype(np.float64)
    qt = [set(t) for t in index_terms(ranker.analyzer, pair.query_tokens)]
    dt = [set(t) for t in index_terms(ranker.analyzer, pair.doc_tokens)]
    return np.array([[float(bool(a & b)) for b in dt] for a in qt]).reshape(len(qt), len(dt))


@register_explainer("exact_match")
class ExactMatchExplainer(Explainer):
    """pair_map[i, j] = 1 if query unit i and document unit j share an index term."""
    baseline = True

    def _attribute(self, pair: Pair) -> dict:
        return {"pair_map": _match(self.ranker, pair)}


@register_explainer("idf_match")
class IdfMatchExplainer(Explainer):
    """pair_map[i, j] = idf(query token i) if it equals document token j.

    idf: token -> idf (e.g. `collection_idf(collection)`); defaults to the
    ranker's own idf where it has one (bm25).
    """
    baseline = True

    def __init__(self, ranker, idf: Mapping[str, float] | None = None, seed: int = 0, batch_size: int = 256):
        super().__init__(ranker, seed=seed, batch_size=batch_size)
        if idf is None and getattr(ranker, "idf", None) is not None:
            itos = ranker.vocab.itos
            idf = dict(zip(itos, ranker.idf.cpu().tolist()))
        self.idf = dict(idf or {})

    def _attribute(self, pair: Pair) -> dict:
        terms = index_terms(self.ranker.analyzer, pair.query_tokens)
        w = np.array([max((self.idf.get(t, 1.0) for t in ts), default=0.0) for ts in terms])
        return {"pair_map": _match(self.ranker, pair) * w[:, None]}


def collection_idf(collection) -> dict[str, float]:
    """token -> BM25 idf in `collection`."""
    return dict(zip(collection.index.vocab.itos, collection.index.idf.tolist()))


@register_explainer("exact_shapley")
class ExactShapleyExplainer(Explainer):
    """The ground truth on bm25: its exact per-token Shapley shares (`BM25.exact_contributions`),
    which sum to the score. The reference every faithfulness metric should rank above random."""

    requires = ("exact_contributions",)

    def _attribute(self, pair: Pair) -> dict:
        shap, _ = self.ranker.exact_contributions(pair.q_ids, pair.d_ids)
        return {"doc_scores": shap.double().cpu().numpy()}


@register_explainer("lead")
class LeadExplainer(Explainer):
    """The lead baseline of snippet generation: the document's first `w` words, earliest first
    (scores w, w-1, ..., 1, then 0), whatever the query."""
    baseline = True
    params = {**Explainer.params, "w": Int(20, lo=1, hi=100000, doc="words of the lead")}

    def __init__(self, ranker, w: int = 20, seed: int = 0, batch_size: int = 256):
        super().__init__(ranker, seed=seed, batch_size=batch_size)
        self.w = int(w)

    def _attribute(self, pair: Pair) -> dict:
        n = len(pair.doc_tokens)
        return {"doc_scores": np.maximum(self.w - np.arange(n), 0).astype(np.float64)}


@register_explainer("exact_pairs")
class ExactPairsExplainer(Explainer):
    """The exact query x document decomposition of a ranker that has one (`exact_pairs`; late_interaction:
    each query word's maximal similarity cell): pair-level ground truth, the map sums to the score."""
    requires = ("exact_pairs",)

    def _attribute(self, pair: Pair) -> dict:
        pm = self.ranker.exact_pairs(pair.q_ids, pair.d_ids)
        return {"pair_map": pm.double().cpu().numpy()}
