"""Execute phase: a worker holds loaded rankers and runs shards, one (ranker, query) at a time.

A shard is every cell of one query for one ranker: the ranker re-ranks the query's candidates,
the samples are chosen from its ranking, each explainer explains each sample, and the metrics
are computed (pair-scope metrics of all samples batched across pairs, then query-scope metrics
such as listwise_tau from the query's explanations). `run_shard` is a pure function of the
`RunSpec` and the shard: it returns the rows and writes nothing, so any worker may run it (a
retried shard gives the same rows) and one coordinator records them (`suites.run.runner`).
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np
import torch

from rankers.memory import PeakMemory
from explainers import EXPLAINERS, Explanation, Incompatible, build_explainer, collection_idf, make_pair
from metrics import (MetricContext, QueryContext, compute_metrics_many, compute_query_metrics,
                     metric_spec)
from metrics.base import MetricResult

from rankers.scorer import resolve_batch_size

from .config import SuiteConfig


@dataclass
class RunSpec:
    """What a worker needs to rebuild the run's objects (picklable; shipped once per worker)."""

    cfg: SuiteConfig
    device: str
    data_dir: str | None = None
    #: the coordinator's collection digest (documents, queries, judgments, run file): a worker computes
    #: only on a collection with this digest (`collection_of`)
    digest: str | None = None
    #: identifies the run in a worker's cache (a long-lived worker may serve several runs)
    token: str = field(default_factory=lambda: __import__("uuid").uuid4().hex)


@dataclass
class Cell:
    """One finished cell: its key (suite, ranker, explainer, qid, docid), rows and explanation JSON."""

    key: tuple[str, str, str, str, str]
    rows: list[dict]
    explanation: dict | None = None


@dataclass
class ShardResult:
    ranker: str
    qid: str
    cells: list[Cell] = field(default_factory=list)
    seconds: float = 0.0
    oom_retries: int = 0


def select_samples(coll, qid: str, ranking: list[str], top_k: int, relevant: int, contrast_gap: int):
    """(docid, contrast docid or None) pairs: the ranker's top_k plus up to `relevant` judged-relevant candidates."""
    rel = set(coll.relevant(qid))
    chosen = list(ranking[:top_k])
    chosen += [d for d in ranking if d in rel and d not in chosen][:relevant]
    out = []
    for d in chosen:
        pos = ranking.index(d)
        c = ranking[min(pos + contrast_gap, len(ranking) - 1)]
        out.append((d, c if c != d else None))
    return out


# ----------------------------------------------------------------------------- per-worker state
_STATE: dict = {}


def collection_of(spec: RunSpec):
    """The run's collection on this worker, keyed by its content digest: a long-lived worker that holds
    an older copy of the same path (a run file or data directory edited since) reads it again (the run
    file on every new digest; `load_collection` keys its cache by the data files' size and mtime), and a
    worker whose files differ from the coordinator's refuses the shard instead of computing on them."""
    from rankers.errors import BadInput

    from ..data.collections import load_collection
    key = ("coll", spec.cfg.collection, spec.data_dir, spec.cfg.seed, spec.cfg.run_file, spec.digest)
    if key not in _STATE:
        coll = load_collection(spec.cfg.collection, spec.data_dir, seed=spec.cfg.seed)
        coll = coll.with_run(spec.cfg.run_file) if spec.cfg.run_file else coll
        if spec.digest is not None and coll.digest != spec.digest:
            raise BadInput(f"this worker reads collection {spec.cfg.collection!r} (data dir {spec.data_dir}, run file "
                           f"{spec.cfg.run_file}) with digest {coll.digest}, the coordinator {spec.digest}: the "
                           "workers must see the same files as the coordinator")
        for k in [k for k in _STATE if k[0] == "coll" and k[1:5] == key[1:5]]:
            del _STATE[k]  # older copies of this path
        _STATE[key] = coll
    return _STATE[key]


@dataclass
class RankerRuntime:
    """A loaded ranker with its explainers (or why each cannot be built) and metric parameters."""

    name: str
    ranker: torch.nn.Module
    explainers: dict
    build_errors: dict[str, tuple[str, str]]
    metric_params: dict[str, dict]
    bm25: torch.nn.Module
    #: rows per model call (the suite's, or "auto" resolved for this device and ranker)
    batch_size: int
    #: explainers whose table sets its own batch_size
    fixed_batch: dict[str, int] = field(default_factory=dict)
    #: metrics the suite leaves out for this ranker (`skip`): recorded as skipped rows
    skipped_metrics: set = field(default_factory=set)


SKIPPED_BY_SUITE = "left out for this ranker by the suite (its table's `skip`)"


def runtime(spec: RunSpec, rname: str, ranker=None) -> RankerRuntime:
    """The worker's runtime for ranker `rname`, built on first use and kept (each worker loads a
    ranker once). `ranker`: an already loaded instance (the coordinator's, on the serial path)."""
    key = ("ranker", spec.token, rname)
    if key in _STATE:
        return _STATE[key]
    cfg, coll = spec.cfg, collection_of(spec)
    p = cfg.plan.rankers[rname]
    if ranker is None:
        ranker = p.load(coll, spec.device)
    explainers, errors, fixed = {}, {}, {}
    batch_size = resolve_batch_size(cfg.batch_size, spec.device, ranker)
    for ename, ep in p.explainers.items():  # run order: the agreement reference first
        if ename in p.skip:
            errors[ename] = ("skipped", SKIPPED_BY_SUITE)
            continue
        etype, params = ep.type, dict(ep.params)
        if etype == "idf_match":
            params.setdefault("idf", collection_idf(coll))
        ok, why = EXPLAINERS[etype].compatible(ranker)
        if not ok:
            errors[ename] = ("skipped", why)
            continue
        if "batch_size" in params:  # the explainer's own rows per call (halved too on CUDA out-of-memory)
            fixed[ename] = params["batch_size"]
        try:  # the suite's seed and batch size unless the explainer's table sets its own
            explainers[ename] = build_explainer(etype, ranker, **{"seed": cfg.seed, "batch_size": batch_size,
                                                                   **params})
        except Incompatible as e:  # e.g. corrupted(base) where the base does not apply to this ranker
            errors[ename] = ("skipped", str(e))
        except Exception as e:
            errors[ename] = ("error", f"{type(e).__name__}: {e}")
    _STATE[key] = RankerRuntime(rname, ranker, explainers, errors, dict(p.metrics), _bm25(spec, coll), batch_size,
                                fixed, {m for m in p.skip if m in cfg.metrics})
    return _STATE[key]


def _bm25(spec: RunSpec, coll):
    """The collection's bm25 (ground-truth metrics), built once per worker and run for all its rankers."""
    key = ("bm25", spec.token)
    if key not in _STATE:
        from rankers.training import build_ranker
        _STATE[key] = build_ranker("bm25", coll).to(spec.device)
    return _STATE[key]


def release(token: str) -> None:
    """Forget the loaded rankers of run `token` (end of run)."""
    for k in [k for k in _STATE if k[0] in ("ranker", "bm25") and k[1] == token]:
        del _STATE[k]


# ----------------------------------------------------------------------------- one shard
def run_shard(spec: RunSpec, rname: str, qid: str) -> ShardResult:
    """Every cell of (ranker `rname`, query `qid`); on CUDA out-of-memory the batch size is halved and
    the shard retried (recorded in `oom_retries` and each row's info)."""
    retries = 0
    batch = runtime(spec, rname).batch_size
    while True:
        try:
            return _run_shard(spec, rname, qid, batch, retries)
        except torch.cuda.OutOfMemoryError:
            if batch <= 1:
                raise
            retries, batch = retries + 1, max(1, batch // 2)
            torch.cuda.empty_cache()


def _run_shard(spec: RunSpec, rname: str, qid: str, batch_size: int, oom_retries: int) -> ShardResult:
    t0 = time.perf_counter()
    cfg, coll, rt = spec.cfg, collection_of(spec), runtime(spec, rname)
    halved = batch_size < rt.batch_size
    for ename, e in rt.explainers.items():
        own = rt.fixed_batch.get(ename)
        e.batch_size = batch_size if own is None else (min(own, batch_size) if halved else own)
    ranker, names = rt.ranker, cfg.plan.explainer_order
    pair_metrics = [m for m in cfg.metrics if metric_spec(m).scope == "pair"]
    q_units, d_units = coll.units(ranker.analyzer)
    cands = coll.candidates(qid)
    res = ShardResult(rname, qid, oom_retries=oom_retries)
    base = dict(suite=cfg.name, ranker=rname, collection=coll.name, qid=qid, device=spec.device, seed=cfg.seed)
    try:
        scores = ranker.score_tokens(q_units[qid], [d_units[d] for d in cands]).double().numpy()
    except torch.cuda.OutOfMemoryError:
        raise
    except Exception as e:  # the ranker cannot score this query's candidates: the shard's cells are errors
        return _failed_shard(cfg, res, base, rt, pair_metrics,
                             f"{ranker_message(rname, e)} (while scoring the query's candidates)", t0)
    ranking = [cands[i] for i in np.argsort(-scores, kind="stable")]
    by_doc = dict(zip(cands, scores))
    pending, explained = [], {e: {} for e in names}
    ranked_units = [d_units[k] for k in ranking]

    def pair_of(d: str):
        pair = make_pair(ranker, coll.queries[qid], coll.docs[d])
        pair.candidates = ranked_units  # listwise explainers (ranking_shap) explain the query's ranking
        return pair

    relevant = cfg.plan.rankers[rname].relevant
    for d, contrast in select_samples(coll, qid, ranking, cfg.top_k, relevant, cfg.contrast_gap):
        pair = pair_of(d)
        others = np.array([s for k, s in by_doc.items() if k != d])
        other_docs = [d_units[k] for k in by_doc if k != d]
        peers: dict[str, Explanation] = {}
        for ename in names:
            key, cell_base = (cfg.name, rname, ename, qid, d), {**base, "explainer": ename, "docid": d}
            if ename in rt.build_errors:
                status, msg = rt.build_errors[ename]
                res.cells.append(Cell(key, _failed(cell_base, pair_metrics, status, msg)))
                continue
            mem = PeakMemory(spec.device)
            try:
                with mem:
                    ex = rt.explainers[ename].attribute_pair(pair)
            except torch.cuda.OutOfMemoryError:
                raise
            except Exception as e:  # recorded, the suite goes on
                res.cells.append(Cell(key, _failed(cell_base, pair_metrics, "error", _error_text(rname, e))))
                continue
            peers[ename] = ex
            explained[ename][d] = ex
            ctx = MetricContext(ranker, pair, ex, rt.explainers[ename], others,
                                float(by_doc[contrast]) if contrast is not None else None,
                                coll.rationales.get((qid, d)), rt.bm25, peers, cfg.seed, batch_size,
                                other_docs=other_docs)
            pending.append((key, cell_base, ex, ctx, mem.mb))
    res.cells += _finish_cells(pending, pair_metrics, rt.metric_params, batch_size, oom_retries, rname,
                               rt.skipped_metrics)
    res.cells += _query_cells(cfg, base, rt, q_units[qid], explained, ranking, pair_of)
    res.seconds = time.perf_counter() - t0
    return res


def ranker_message(rname: str, e: BaseException) -> str:
    from rankers.errors import about_ranker
    return about_ranker(rname, e)


def _error_text(rname: str, e: BaseException) -> str:
    """An explainer's or metric's failure as a row message; a ranker's own complaint names the suite's ranker."""
    from rankers.errors import BadInput
    msg = " ".join(str(e).split())
    if isinstance(e, BadInput) and msg.startswith("ranker "):
        return ranker_message(rname, e)
    return f"{type(e).__name__}: {msg}"


def _failed_shard(cfg, res: ShardResult, base: dict, rt, pair_metrics: list[str], message: str,
                  t0: float) -> ShardResult:
    """Every cell of a shard whose ranker failed before any explanation, as error rows."""
    query_metrics = [m for m in cfg.metrics if metric_spec(m).scope == "query"]
    for ename in cfg.plan.explainer_order:
        status, msg = rt.build_errors.get(ename, ("error", message))
        cell_base = {**base, "explainer": ename, "docid": "*"}
        rows = _failed(cell_base, pair_metrics + query_metrics, status, msg)
        res.cells.append(Cell((cfg.name, rt.name, ename, base["qid"], "*"), rows))
    res.seconds = time.perf_counter() - t0
    return res


def _finish_cells(pending, metric_names, metric_params, batch_size, oom_retries, rname: str = "",
                  skipped: set = frozenset()) -> list[Cell]:
    """Pair-scope metrics of every explained cell of the shard, perturbation rows batched across pairs. When
    the ranker fails on the batch, each cell is retried alone; a cell whose ranker still fails gets error rows
    (the suite goes on). Metrics in `skipped` get skipped rows."""
    if not pending:
        return []
    if skipped:
        run = [m for m in metric_names if m not in skipped]
        cells = _finish_cells(pending, run, metric_params, batch_size, oom_retries, rname) if run else [
            Cell(key, [], explanation_json(ex)) for key, _, ex, _, _ in pending]
        for cell, (_, cell_base, ex, _, peak) in zip(cells, pending):
            cell.rows += [{**cell_base, "seconds": ex.seconds, "forward_passes": ex.forward_passes,
                           "backward_passes": ex.backward_passes, "truncated": ex.truncated, "peak_mem_mb": peak,
                           **r} for r in _failed({}, [m for m in metric_names if m in skipped], "skipped",
                                                 SKIPPED_BY_SUITE)]
        return cells
    t = time.perf_counter()
    try:
        results = compute_metrics_many([p[3] for p in pending], metric_names, metric_params, batch_size)
    except torch.cuda.OutOfMemoryError:
        raise
    except Exception:
        results = []
        for p in pending:
            try:
                results.append(compute_metrics_many([p[3]], metric_names, metric_params, batch_size)[0])
            except torch.cuda.OutOfMemoryError:
                raise
            except Exception as e:
                msg = f"{ranker_message(rname, e)} (while scoring the metrics' perturbed documents)"
                results.append({m: MetricResult(math.nan, "error", msg) for m in metric_names})
    share = (time.perf_counter() - t) / len(pending)  # the shard's metric time, split evenly over its cells
    out = []
    for (key, cell_base, ex, _, peak), res in zip(pending, results):
        common = {**cell_base, "seconds": ex.seconds, "forward_passes": ex.forward_passes,
                  "backward_passes": ex.backward_passes, "truncated": ex.truncated, "peak_mem_mb": peak}
        info = {"metric_seconds": share, **({"oom_retries": oom_retries} if oom_retries else {}),
                **({"query_truncated": True} if ex.query_truncated else {})}
        rows = [{**common, "metric": m, "value": r.value, "status": r.status, "message": r.message,
                 "curve": r.curve, "info": {**r.info, **info}} for m, r in res.items()]
        out.append(Cell(key, rows, explanation_json(ex)))
    return out


def _query_cells(cfg, base, rt, query_units, explained, ranking, pair_of) -> list[Cell]:
    """Query-scope metrics (docid "*"), one cell per explainer, from the query's explanations (docid -> Explanation);
    a metric that needs more of the ranking (listwise_tau's top k) has the explainer explain them (`pair_of`).
    Metrics the suite skips for this ranker get skipped rows."""
    scoped = [m for m in cfg.metrics if metric_spec(m).scope == "query"]
    names = [m for m in scoped if m not in rt.skipped_metrics]
    skipped = [m for m in scoped if m in rt.skipped_metrics]
    if not scoped:
        return []
    out = []
    for ename, exps in explained.items():
        key, cell_base = (cfg.name, rt.name, ename, base["qid"], "*"), {**base, "explainer": ename, "docid": "*"}
        if ename in rt.build_errors:
            out.append(Cell(key, _failed(cell_base, scoped, *rt.build_errors[ename])))
            continue
        rows = _failed(cell_base, skipped, "skipped", SKIPPED_BY_SUITE)
        if names:
            qctx = QueryContext(rt.ranker, list(query_units), list(exps.values()), ranking=list(ranking),
                                by_doc=dict(exps), explain=(lambda d, e=rt.explainers[ename]: e.attribute_pair(pair_of(d))))
            res = compute_query_metrics(qctx, names, rt.metric_params)
            rows = [{**cell_base, "metric": m, "value": r.value, "status": r.status, "message": r.message,
                     "info": r.info} for m, r in res.items()] + rows
        out.append(Cell(key, rows))
    return out


def _failed(base: dict, metrics: list[str], status: str, message: str) -> list[dict]:
    return [{**base, "metric": m, "value": math.nan, "status": status, "message": message} for m in metrics]


def explanation_json(ex: Explanation) -> dict:
    d = ex.to_json()
    return {k: d[k] for k in ("query_tokens", "doc_tokens", "doc_scores", "query_scores", "pair_map", "score",
                              "target", "seconds", "forward_passes", "forward_rows", "backward_passes", "truncated",
                              "query_truncated", "doc_offsets", "query_offsets", "query_only")}
