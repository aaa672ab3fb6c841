"""Metric registry, the per-sample context and the batched evaluation of all metrics of a sample."""
from __future__ import annotations

import math
import weakref
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import torch

from explainers.base import Explainer, Explanation, Pair
from rankers.base import Ranker
from rankers.errors import unknown_name
from rankers.params import Param
from rankers.scorer import PairScorer


@dataclass
class MetricResult:
    value: float
    status: str = "ok"  # ok | error | skipped
    message: str = ""
    curve: dict[str, list[float]] | None = None  # {"x": [...], "y": [...]}
    info: dict[str, Any] = field(default_factory=dict)


@dataclass
class MetricContext:
    """Everything a metric may need about one explained (query, document) pair.

    other_scores: [n_candidates - 1] scores of the query's other candidates
    (rank-aware metrics); contrast_score: s(q, d-) for pairwise_flip;
    rationale: ground-truth token positions (synthetic); bm25: the collection's
    BM25 ranker (ground truth); peers: other explainers' explanations of the
    same pair (agreement); explainer: the explainer itself (sanity, sensitivity).
    """

    ranker: Ranker
    pair: Pair
    explanation: Explanation
    explainer: Explainer | None = None
    other_scores: np.ndarray | None = None
    contrast_score: float | None = None
    rationale: list[int] | None = None
    bm25: Ranker | None = None
    peers: dict[str, Explanation] = field(default_factory=dict)
    seed: int = 0
    batch_size: int = 256
    #: the other candidates' units, aligned with other_scores (metrics that re-score the list, query_deletion)
    other_docs: list | None = None

    def scorer(self) -> PairScorer:
        return PairScorer(self.ranker, self.pair.q_ids, self.pair.d_ids, "mask", 0.0, self.batch_size)


#: results shared by every explainer of one pair: id(pair) -> (weakref to the pair, {key: value})
_PAIR_MEMO: dict[int, tuple[weakref.ref, dict]] = {}


def pair_memo(pair) -> dict:
    """A dict that lives as long as the `pair` object (the runner explains a pair with every explainer through one
    Pair): what the metrics compute once per pair and share (the gains' anchors, rows scored by an identical model
    call). Entries of pairs that are gone are dropped when a new pair's dict is made."""
    entry = _PAIR_MEMO.get(id(pair))
    if entry is None or entry[0]() is not pair:
        for k in [k for k, (ref, _) in _PAIR_MEMO.items() if ref() is None]:
            del _PAIR_MEMO[k]
        entry = (weakref.ref(pair), {})
        _PAIR_MEMO[id(pair)] = entry
    return entry[1]


def memo_call(pair, key: tuple, fn: Callable[[], np.ndarray]) -> np.ndarray:
    """`fn()` (a model call's scores) once per pair and `key`, where `key` holds everything the call's inputs and
    batching depend on: the same inputs in the same calls give the same values to the last digit, so reusing them is
    exact (a copy is returned)."""
    memo = pair_memo(pair)
    if key not in memo:
        memo[key] = fn()
    return memo[key].copy()


class Skip(Exception):
    """The metric does not apply to this sample (recorded as status 'skipped')."""


@dataclass(frozen=True)
class MetricSpec:
    """A registered metric: `direction` ("higher" | "lower" is better), `range` (lo, hi) every
    ok value lies in (None = unbounded on that side), `params` its declared parameters."""

    name: str
    direction: str
    unit: str
    range: tuple[float | None, float | None]
    fn: Callable | None = None            # fn(ctx, **params) -> MetricResult
    plan: Callable | None = None          # plan(ctx, **params) -> masks [R, n] (batched family)
    finish: Callable | None = None        # finish(ctx, scores [R], **params) -> MetricResult
    curve: bool = False
    params: dict[str, Param] = field(default_factory=dict)
    headline: bool = False  # rank-based (invariant to score rescaling); bounded and defined on every sample, or anchored
    #: "pair": fn(MetricContext) per explained pair; "query": fn(QueryContext) once per (query, explainer)
    #: from the query's explanations (stored with docid "*")
    scope: str = "pair"
    #: what of an explanation it reads: "doc" (the document's scores, or its pair map) or "query" (query scores)
    reads: str = "doc"

    @property
    def defaults(self) -> dict:
        return {k: p.default for k, p in self.params.items()}


METRICS: dict[str, MetricSpec] = {}


@dataclass
class QueryContext:
    """A query-scope metric's input: the ranker, the query's units and the explanations of its
    explained documents (one explainer), each carrying its own document units."""

    ranker: Ranker
    query_tokens: list[str]
    explanations: list[Explanation]
    #: the query's candidates in the ranker's order (docids), the explained ones by docid, and a function that
    #: explains any candidate with the same explainer (for metrics over the top of the ranking)
    ranking: list[str] = field(default_factory=list)
    by_doc: dict = field(default_factory=dict)
    explain: Any = None


def register_metric(name: str, direction: str, unit: str, *, range: tuple[float | None, float | None],
                    curve: bool = False, params: dict[str, Param] | None = None, headline: bool = False,
                    scope: str = "pair", reads: str = "doc"):
    """Decorate fn(ctx, **params) -> MetricResult, or a (plan, finish) pair given as a class."""
    if direction not in ("higher", "lower"):
        raise ValueError(f"metric {name}: direction must be 'higher' or 'lower'")

    def deco(obj):
        fns = {"plan": obj.plan, "finish": obj.finish} if isinstance(obj, type) else {"fn": obj}
        METRICS[name] = MetricSpec(name, direction, unit, tuple(range), curve=curve, params=dict(params or {}),
                                   headline=headline, scope=scope, reads=reads, **fns)
        return obj
    return deco


def check_metric_params(name: str, params: dict, where: str | None = None) -> dict:
    """Validate user parameters of metric `name` against its declared schema (BadInput)."""
    from rankers.params import check_params
    return check_params(where or f"metric {name}", metric_spec(name).params, params)


def metric_spec(name: str) -> MetricSpec:
    if name not in METRICS:
        raise unknown_name("metric", name, METRICS)
    return METRICS[name]


@dataclass
class MetricPlan:
    """One sample's metrics after planning: results of the metrics computed directly, and the
    perturbation rows [R, n_doc] the batched family needs scored (`finish_metrics` completes it)."""

    ctx: MetricContext
    names: list[str]
    out: dict[str, MetricResult]
    planned: list[tuple[MetricSpec, dict, int, int]]
    rows: torch.Tensor | None


def plan_metrics(ctx: MetricContext, names: list[str], params: dict[str, dict] | None = None) -> MetricPlan:
    """Phase 1: direct metrics are computed; the perturbation family (deletion, insertion, their
    rank variants, ERASER, pairwise_flip) only plans its rows (identical row sets are shared)."""
    params = params or {}
    out: dict[str, MetricResult] = {}
    planned: list[tuple[MetricSpec, dict, int, int]] = []
    rows: list[torch.Tensor] = []
    seen: dict[tuple, tuple[int, int]] = {}
    start = 0
    for spec in (metric_spec(n) for n in names):
        kw = {**spec.defaults, **params.get(spec.name, {})}
        try:
            _check_reads(spec, ctx.explanation)
            if spec.scope == "query":
                raise Skip(f"{spec.name} is a query-level metric: one value per query from its explained documents "
                           "(`rexbench run`, `compute_query_metrics`)")
            if spec.plan is not None:
                m = spec.plan(ctx, **kw)
                key = (tuple(m.shape), hash(m.numpy().tobytes()))
                if key in seen:  # e.g. rank_deletion reuses deletion's rows: score them once
                    planned.append((spec, kw, *seen[key]))
                    continue
                seen[key] = (start, start + len(m))
                planned.append((spec, kw, start, start + len(m)))
                rows.append(m)
                start += len(m)
            else:
                out[spec.name] = spec.fn(ctx, **kw)
        except Skip as e:
            out[spec.name] = MetricResult(math.nan, "skipped", str(e))
        except Exception as e:  # recorded, never fatal
            out[spec.name] = MetricResult(math.nan, "error", f"{type(e).__name__}: {e}")
    return MetricPlan(ctx, list(names), out, planned, torch.cat(rows) if rows else None)


def finish_metrics(plan: MetricPlan, scores: np.ndarray | None) -> dict[str, MetricResult]:
    """Phase 3: the planned metrics from their rows' scores [R] (raw ranker scores)."""
    out = dict(plan.out)
    for spec, kw, a, b in plan.planned:
        try:
            out[spec.name] = spec.finish(plan.ctx, scores[a:b], **kw)
        except Skip as e:
            out[spec.name] = MetricResult(math.nan, "skipped", str(e))
        except Exception as e:
            out[spec.name] = MetricResult(math.nan, "error", f"{type(e).__name__}: {e}")
    return {n: out[n] for n in plan.names}


def compute_metrics(ctx: MetricContext, names: list[str], params: dict[str, dict] | None = None
                    ) -> dict[str, MetricResult]:
    """Compute `names` for one sample: plan, score the family's rows in one batched set of model
    calls, finish. A metric that raises becomes an 'error' result."""
    plan = plan_metrics(ctx, names, params)
    scores = None
    if plan.rows is not None:
        sc = ctx.scorer()
        with torch.no_grad():
            scores = sc(plan.rows.to(ctx.pair.d_ids.device)).double().cpu().numpy()
        ctx.last_cost = sc.cost
    return finish_metrics(plan, scores)


def compute_metrics_many(ctxs: list[MetricContext], names: list[str], params: dict[str, dict] | None = None,
                         batch_size: int = 256) -> list[dict[str, MetricResult]]:
    """`compute_metrics` for several samples of one query, their perturbation rows scored together
    (`rankers.scorer.score_rows`): cross-pair batches of `batch_size` rows fill the device even when
    one pair has few rows. Same values as one sample at a time up to float rounding of the batch."""
    from rankers.scorer import score_rows
    plans = [plan_metrics(c, names, params) for c in ctxs]
    jobs = [(i, p) for i, p in enumerate(plans) if p.rows is not None]
    scores: list[np.ndarray | None] = [None] * len(plans)
    if jobs:
        r = ctxs[jobs[0][0]].ranker
        got = score_rows(r, [(plans[i].ctx.pair.q_ids, plans[i].ctx.pair.d_ids, p.rows) for i, p in jobs],
                         batch_size)
        for (i, _), s in zip(jobs, got):
            scores[i] = s
    return [finish_metrics(p, s) for p, s in zip(plans, scores)]


def compute_query_metrics(qctx: QueryContext, names: list[str], params: dict[str, dict] | None = None
                          ) -> dict[str, MetricResult]:
    """The query-scope metrics among `names` for one (query, explainer); errors are recorded."""
    params = params or {}
    out = {}
    for spec in (metric_spec(n) for n in names):
        if spec.scope != "query":
            continue
        try:
            if qctx.explanations:
                _check_reads(spec, qctx.explanations[0])
            if len(qctx.explanations) < 2:
                raise Skip("fewer than two explained documents for this query")
            out[spec.name] = spec.fn(qctx, **{**spec.defaults, **params.get(spec.name, {})})
        except Skip as e:
            out[spec.name] = MetricResult(math.nan, "skipped", str(e))
        except Exception as e:
            out[spec.name] = MetricResult(math.nan, "error", f"{type(e).__name__}: {e}")
    return out


def _check_reads(spec: MetricSpec, explanation) -> None:
    """A query-only explanation (`Explanation.query_only`) has no document scores for a metric to read."""
    if getattr(explanation, "query_only", False) and spec.reads != "query":
        raise Skip(f"{explanation.explainer} explains query words only; {spec.name} reads the document's scores")


def require(cond: bool, why: str) -> None:
    if not cond:
        raise Skip(why)

