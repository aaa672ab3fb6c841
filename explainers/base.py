"""The explanation object, the explainer interface and its registry."""
from __future__ import annotations

import contextlib
import dataclasses
import random
import warnings
from dataclasses import asdict, dataclass, field
from typing import Any, Sequence

import numpy as np
import torch

from rankers.base import Ranker
from rankers.capabilities import CAPABILITIES, missing
from rankers.errors import BadInput, unknown_name
from rankers.params import Int, Param, check_params
from rankers.scorer import PairScorer, Timer
from rankers.text import spans

from .aggregate import pair_to_terms


@dataclass
class Explanation:
    """What every explainer returns, unit for unit.

    doc_scores: [n_doc] per document token; query_scores: [n_query] or None;
    pair_map: [n_query, n_doc] or None. `score` is the explained target's value
    (the ranker score, or the margin s(q,d+) - s(q,d-) when target is
    "pair:<docid>"). Cost: `seconds` (wall clock, CUDA-synchronised),
    `forward_passes` (batched model calls), `forward_rows` (pairs scored),
    `backward_passes`, all counted by hooks.
    """

    ranker: str
    explainer: str
    query_tokens: list[str]
    doc_tokens: list[str]
    doc_scores: np.ndarray
    query_scores: np.ndarray | None = None
    pair_map: np.ndarray | None = None
    score: float = float("nan")
    target: str = "score"
    seconds: float = 0.0
    forward_passes: int = 0
    forward_rows: int = 0
    backward_passes: int = 0
    truncated: bool = False
    #: the query was cut to the ranker's `max_query_len` words (`truncated` is the document's cut)
    query_truncated: bool = False
    #: the explainer attributes the query's words only (doc_scores are zeros, not an attribution): metrics
    #: that read the document's scores are skipped with the reason
    query_only: bool = False
    info: dict[str, Any] = field(default_factory=dict)
    #: [n_doc] / [n_query] (start, end) character spans of the units in the original text, when the
    #: pair was given as text and the ranker's analyzer keeps them (else None)
    doc_offsets: list[tuple[int, int]] | None = None
    query_offsets: list[tuple[int, int]] | None = None

    def to_json(self) -> dict:
        d = asdict(self)
        for k in ("doc_scores", "query_scores", "pair_map"):
            v = getattr(self, k)
            d[k] = None if v is None else np.asarray(v, dtype=float).tolist()
        return d

    @classmethod
    def from_json(cls, d: dict, **override) -> "Explanation":
        """Inverse of `to_json` for the keys present in `d` (missing names default to "")."""
        fields = {f.name for f in dataclasses.fields(cls)}
        kw = {"ranker": "", "explainer": "", **{k: v for k, v in d.items() if k in fields}, **override}
        for k in ("doc_scores", "query_scores", "pair_map"):
            if kw.get(k) is not None:
                kw[k] = np.asarray(kw[k], dtype=np.float64)
        return cls(**kw)


@dataclass
class Pair:
    """An encoded (query, document) pair, truncated to the ranker's limits.

    q_ids: [Lq], d_ids: [Ld]; `truncated` says the document was cut, `query_truncated` the query;
    `offset` is the contrast document's score for a pairwise target (else 0).
    """

    query_tokens: list[str]
    doc_tokens: list[str]
    q_ids: torch.Tensor
    d_ids: torch.Tensor
    truncated: bool
    target: str = "score"
    offset: float = 0.0
    base_mask: torch.Tensor | None = None  # [Ld], see rankers.scorer.PairScorer
    oov: dict = field(default_factory=dict)  # {"query": [words], "doc_fraction": f}: units the ranker reads as <unk>
    doc_offsets: list[tuple[int, int]] | None = None    # [n_doc] spans in the original document text
    query_offsets: list[tuple[int, int]] | None = None  # [n_query] spans in the original query text
    query_truncated: bool = False
    #: the query's top candidates (units, the ranker's order; the explained document among them where it ranks
    #: there), for listwise explainers (`Explainer.needs_candidates`); None when unknown (free text)
    candidates: list[list[str]] | None = None


def _units(ranker: Ranker, x: str | Sequence[str]) -> tuple[list[str], list[tuple[int, int]] | None]:
    """Text -> (the ranker's units, their spans); a unit list is taken as is (no spans)."""
    if isinstance(x, str):
        return ranker.units(x), spans(ranker.analyzer, x)
    return list(x), None


def make_pair(ranker: Ranker, query: str | Sequence[str], doc: str | Sequence[str],
              contrast_doc: str | Sequence[str] | None = None, contrast_id: str = "contrast") -> Pair:
    """Encode a pair for `ranker`; query/doc are original text (split by the ranker's analyzer, with
    character offsets) or lists of units. With a contrast document the target is the margin."""
    (query_tokens, q_off), (doc_tokens, d_off) = _units(ranker, query), _units(ranker, doc)
    contrast_doc_tokens = None if contrast_doc is None else _units(ranker, contrast_doc)[0]
    enc = ranker.encode(list(query_tokens), [list(doc_tokens)])
    n = enc.n_doc[0]
    offset, target = 0.0, "score"
    if contrast_doc_tokens is not None:
        if not contrast_doc_tokens:
            raise BadInput("pairwise target: the contrast document is missing or empty")
        offset = float(ranker.score_tokens(list(query_tokens), [list(contrast_doc_tokens)])[0])
        target = f"pair:{contrast_id}"
    q_kept, d_kept = list(query_tokens[: ranker.max_query_len]), list(doc_tokens[:n])
    oov = {"query": ranker.vocab.unknown(q_kept), "doc_fraction": len(ranker.vocab.unknown(d_kept)) / max(n, 1)}
    return Pair(q_kept, d_kept, enc.q_ids[0], enc.d_ids[0, :n], enc.truncated[0], target, offset, oov=oov,
                query_truncated=len(query_tokens) > len(q_kept),
                doc_offsets=None if d_off is None else d_off[:n],
                query_offsets=None if q_off is None else q_off[: len(q_kept)])


class Explainer:
    """Base class. Subclasses implement `_attribute(pair) -> dict` with any of
    doc_scores / query_scores / pair_map (numpy), optional info, and optional
    score (the target's value, when the explainer computed it anyway).

    Usage (Captum-style): `Explainer(ranker, **params).attribute(query_text, doc_text)`.
    """

    name = "explainer"
    #: ranker capabilities needed (`rankers.capabilities`; a tuple inside means any of them)
    requires: tuple = ()
    stochastic = False
    #: a reference point (chance, lexical matching), not a competitor: left out of reliability statistics
    baseline = False
    #: attributes the query's words only (`Explanation.query_only`)
    query_only = False
    #: explains the query's ranking: needs `Pair.candidates` (set by the runner and by `rexbench explain --qid`)
    needs_candidates = False
    #: user-settable constructor parameters (suite tables, `--param`, `rexbench list --json`)
    params: dict[str, Param] = {"seed": Int(0, lo=0, hi=2 ** 32 - 1, doc="RNG seed (stochastic explainers)"),
                                "batch_size": Int(256, lo=1, hi=65536, doc="rows per model call")}

    def __init__(self, ranker: Ranker, seed: int = 0, batch_size: int = 256):
        ok, why = self.compatible(ranker)
        if not ok:
            raise Incompatible(why)
        self.ranker, self.seed, self.batch_size = ranker, int(seed), int(batch_size)

    @classmethod
    def compatible(cls, ranker: Ranker | type[Ranker]) -> tuple[bool, str]:
        """(ok, reason) for a ranker instance or class, from its declared `capabilities` only."""
        lacking = missing(ranker.capabilities, cls.requires)
        if not lacking:
            return True, ""
        what = "; ".join(f"{m} ({CAPABILITIES.get(m, 'any of these')})" for m in lacking)
        return False, f"{cls.name} needs {what}, which {ranker.name} lacks"

    def scorer(self, pair: Pair, mode: str = "mask") -> PairScorer:
        return PairScorer(self.ranker, pair.q_ids, pair.d_ids, mode, pair.offset, self.batch_size, pair.base_mask)

    def attribute(self, query: str | Sequence[str], doc: str | Sequence[str],
                  contrast_doc: str | Sequence[str] | None = None, contrast_id: str = "contrast") -> Explanation:
        """Explain the ranker's score of (query, doc): original text (units with offsets) or unit lists."""
        pair = make_pair(self.ranker, query, doc, contrast_doc, contrast_id)
        return self.attribute_pair(pair)

    def attribute_pair(self, pair: Pair, base_mask: torch.Tensor | None = None) -> Explanation:
        """Explain an encoded pair (optionally seen through a soft `base_mask` [Ld])."""
        if base_mask is not None:
            pair = dataclasses.replace(pair, base_mask=base_mask)
        self._cost = []
        with self._seeded(), Timer(self.ranker.device) as t, warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # Captum: "required_grads has been set automatically"
            out = self._attribute(pair)
        score = out.get("score")
        if score is None:  # explainers that ran the unperturbed pair return its score; else one more pass
            with torch.no_grad():
                score = float(self.scorer(pair)(torch.ones(1, len(pair.d_ids), device=pair.d_ids.device))[0])
        pm = out.get("pair_map")
        qs, ds = out.get("query_scores"), out.get("doc_scores")
        if ds is None and self.query_only:
            ds = np.zeros(len(pair.doc_tokens))
        if pm is not None:
            pq, pd = pair_to_terms(pm)
            qs = pq if qs is None else qs
            ds = pd if ds is None else ds
        ds = np.asarray(ds, dtype=np.float64)
        if ds.shape != (len(pair.doc_tokens),):
            raise RuntimeError(f"{self.name}: doc_scores shape {ds.shape} != ({len(pair.doc_tokens)},)")
        if not np.isfinite(ds).all():
            raise FloatingPointError(f"{self.name} produced non-finite attributions")
        costs = self._cost
        info = {**out.get("info", {}), "oov": pair.oov}
        path = getattr(self.ranker, "gradient_path", None)
        if path is not None and "mask_gradient" in self.requires and path() != getattr(self.ranker, "removal", path()):
            # the operator cannot remove a fraction of a word: the soft masks of this explainer followed `path`
            info["gradient_path"] = path()
        return Explanation(
            ranker=self.ranker.name, explainer=self.name, query_tokens=pair.query_tokens,
            doc_tokens=pair.doc_tokens, doc_scores=ds,
            query_scores=None if qs is None else np.asarray(qs, dtype=np.float64),
            pair_map=None if pm is None else np.asarray(pm, dtype=np.float64), score=score, target=pair.target,
            seconds=t.seconds, forward_passes=sum(c.forward_passes for c in costs),
            forward_rows=sum(c.forward_rows for c in costs), backward_passes=sum(c.backward_passes for c in costs),
            truncated=pair.truncated, query_truncated=pair.query_truncated, info=info,
            doc_offsets=pair.doc_offsets, query_offsets=pair.query_offsets, query_only=self.query_only)

    @contextlib.contextmanager
    def _seeded(self):
        """Stochastic explainers: Captum samples with torch, numpy and random, so seed all three
        from `seed` and restore the caller's states afterwards. Deterministic ones skip this."""
        if not self.stochastic:
            yield
            return
        np_state, py_state = np.random.get_state(), random.getstate()
        try:
            with torch.random.fork_rng(devices=[] if self.ranker.device.type == "cpu" else [self.ranker.device]):
                torch.manual_seed(self.seed)
                np.random.seed(self.seed)
                random.seed(self.seed)
                yield
        finally:
            np.random.set_state(np_state)
            random.setstate(py_state)

    def tracked(self, scorer: PairScorer) -> PairScorer:
        """Register a scorer so its passes count toward this explanation's cost."""
        self._cost.append(scorer.cost)
        return scorer

    def _attribute(self, pair: Pair) -> dict:
        raise NotImplementedError


class Incompatible(BadInput):
    """The explainer does not apply to this ranker (a recorded skip, not a crash)."""


EXPLAINERS: dict[str, type[Explainer]] = {}


def register_explainer(name: str):
    def deco(cls):
        cls.name = name
        EXPLAINERS[name] = cls
        return cls
    return deco


def explainer_class(name: str) -> type[Explainer]:
    if name not in EXPLAINERS:
        raise unknown_name("explainer", name, EXPLAINERS)
    return EXPLAINERS[name]


def check_explainer_params(name: str, params: dict, where: str | None = None) -> dict:
    """Validate user parameters of explainer `name` against its declared schema (BadInput)."""
    return check_params(where or f"explainer {name}", explainer_class(name).params, params)


def build_explainer(name: str, ranker: Ranker, **params) -> Explainer:
    """Instantiate a registered explainer; unknown parameters are a BadInput."""
    cls = explainer_class(name)
    try:
        return cls(ranker, **params)
    except TypeError as e:
        raise BadInput(f"explainer {name!r}: {e}") from None
