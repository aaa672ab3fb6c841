"""The resumable suite runner: rankers x explainers x samples x metrics -> SQLite rows."""
from __future__ import annotations

import dataclasses
import datetime as dt
import math
import platform
import resource
import time
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from explainers import EXPLAINERS, Explanation, build_explainer, collection_idf, make_pair
from metrics import METRICS, MetricContext, compute_metrics, listwise_tau
from rankers.errors import BadInput
from rankers.evaluate import evaluate
from rankers.registry import ranker_spec
from rankers.training import build_ranker, get_ranker, rexbench_version

from .collections import load_collection
from .config import SuiteConfig
from .rundir import RunLock, check_out_dir, clear_run, first_difference, fingerprint
from .store import Store

LISTWISE = "listwise_tau"


def device_name(device: str) -> str:
    if device.startswith("cuda"):
        return torch.cuda.get_device_name(torch.device(device))
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return f"CPU: {line.split(':', 1)[1].strip()} ({torch.get_num_threads()} threads)"
    except OSError:
        pass
    return f"CPU: {platform.processor() or platform.machine()}"


def versions() -> dict:
    import captum
    import scipy
    out = {"python": platform.python_version(), "torch": torch.__version__, "captum": captum.__version__,
           "numpy": np.__version__, "scipy": scipy.__version__}
    try:
        import transformers
        out["transformers"] = transformers.__version__
    except ImportError:
        pass
    return out


def _peak_mem_mb(device: str) -> float:
    if device.startswith("cuda"):
        return torch.cuda.max_memory_allocated() / 2 ** 20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # process peak RSS (Linux: KiB)


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


def check_inputs(cfg: SuiteConfig, device: str, data_dir: str | None):
    """Everything a run reads, checked before anything is written: the device, collection,
    split, checkpoints and effectiveness collections. Returns (collection, query ids)."""
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise BadInput("device cuda requested but no CUDA device is available")
    coll = load_collection(cfg.collection, data_dir, seed=cfg.seed)
    qids = coll.split(cfg.split)
    if not qids:
        raise BadInput(f"split {cfg.split!r} of {coll.name} has no queries")
    qids = qids[: cfg.queries] if cfg.queries else qids
    if cfg.run_file:
        coll = coll.with_run(cfg.run_file)
        lacking = [q for q in qids if q not in coll.run]
        if lacking:
            raise BadInput(f"run file {cfg.run_file} has no ranking for sampled queries {', '.join(lacking[:5])}"
                           f"{' ...' if len(lacking) > 5 else ''} ({len(lacking)} of {len(qids)})")
    for rname in cfg.rankers:
        probe_ranker(cfg, rname, coll, qids[0])
    for cname in cfg.effectiveness:
        load_collection(cname, data_dir, seed=cfg.seed)
    return coll, qids


def probe_ranker(cfg: SuiteConfig, rname: str, coll, qid: str) -> None:
    """Load a ranker that needs no training now (HF models, callables, checkpoints, bm25) and score two
    candidates, so an unloadable model or a misbehaving function stops the run before it writes."""
    if rname in cfg.objects:
        return _probe(cfg.objects[rname], rname, coll, qid)
    spec = ranker_spec(cfg.ranker_type(rname))
    t = cfg.rankers[rname]
    if spec.trainable and t.get("train", True) and not t.get("checkpoint") and not spec.cls.pretrained:
        return  # trained on first use (KNRM, MatchPyramid); its parameters were checked with the suite
    if spec.trainable and t.get("train", True) and not t.get("checkpoint"):
        build_ranker(spec.name, coll, cfg.seed, **cfg.ranker_config(rname))  # the weights load
        return
    r = get_ranker(spec.name, coll, cfg.seed, t.get("checkpoint"), train_if_missing=False, progress=False,
                   config=cfg.ranker_config(rname))
    _probe(r, rname, coll, qid)


def _probe(r, rname: str, coll, qid: str) -> None:
    q_units, d_units = coll.units(r.analyzer)
    try:
        r.score_tokens(q_units[qid], [d_units[d] for d in coll.candidates(qid)[:2]])
    except (BadInput, FloatingPointError) as e:
        raise BadInput(f"ranker {rname!r}: {e}") from None


def run_suite(cfg: SuiteConfig, out_dir: str | Path, resume: bool = False, device: str | None = None,
              limit: int | None = None, progress: bool = True, data_dir: str | None = None,
              overwrite: bool = False) -> Path:
    """Run a suite into `out_dir` (results.sqlite, results.csv, summary.csv); returns out_dir.

    Validates inputs and the output directory first; takes the directory's lock; refuses an
    existing run unless `resume` (same fingerprint) or `overwrite`."""
    out = Path(out_dir)
    device = device or cfg.device
    if limit is not None:
        cfg = dataclasses.replace(cfg, queries=int(limit))
    check_out_dir(out, resume, overwrite)
    coll, qids = check_inputs(cfg, device, data_dir)
    fp = fingerprint({**cfg.resolved(), "device": device}, {"name": coll.name, "digest": coll.digest},
                     {**versions(), "rexbench": rexbench_version()})
    with RunLock(out):
        stored = check_out_dir(out, resume, overwrite)  # again, under the lock
        if stored is not None:
            why = ("it has no fingerprint (written by an older rexbench)" if "fingerprint" not in stored
                   else None)
            diff = why or first_difference(stored["fingerprint"], fp)
            if diff:
                raise BadInput(f"--resume refused: {out} holds a different run; first difference: {diff}. Use "
                               "another --out, or --overwrite to replace it")
        if overwrite:
            clear_run(out)
        return _run(cfg, out, resume and stored is not None, device, coll, qids, fp, progress, data_dir)


def _run(cfg: SuiteConfig, out: Path, resume: bool, device: str, coll, qids: list[str], fp: dict, progress: bool,
         data_dir: str | None) -> Path:
    store = Store(out / "results.sqlite")
    t_start = time.perf_counter()
    store.set_meta("fingerprint", fp)
    store.set_meta("suite", {"name": cfg.name, "path": str(cfg.path) if cfg.path else None,
                             "description": cfg.description, "collection": coll.name, "split": cfg.split,
                             "seed": cfg.seed, "rankers": cfg.rankers, "explainers": cfg.explainers,
                             "metrics": cfg.metrics, "samples": {"queries": cfg.queries, "top_k": cfg.top_k,
                                                                 "relevant": cfg.relevant}})
    now = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    prev = store.meta().get("environment", {}) if resume else {}
    store.set_meta("environment", {"device": device, "device_name": device_name(device), "versions": versions(),
                                   "started": prev.get("started", now),
                                   "resumed": prev.get("resumed", []) + ([now] if prev else [])})
    elapsed_before = store.meta().get("elapsed", 0.0) if resume else 0.0
    metric_names = [m for m in cfg.metrics if m != LISTWISE]
    ref = cfg.metrics.get("explainer_agreement", {}).get("reference", METRICS["explainer_agreement"].defaults[
        "reference"])
    explainer_names = sorted(cfg.explainers, key=lambda e: e != ref)  # the agreement reference runs first
    bm25 = build_ranker("bm25", coll).to(device)
    done = store.done_cells(cfg.name)

    for rname, rparams in cfg.rankers.items():
        t0 = time.perf_counter()
        ranker = cfg.objects[rname].to(device).eval() if rname in cfg.objects else get_ranker(
            cfg.ranker_type(rname), coll, cfg.seed, rparams.get("checkpoint"),
            train_if_missing=rparams.get("train", True), device=device, progress=progress,
            config=cfg.ranker_config(rname))
        load_s = time.perf_counter() - t0
        if not store.has_ranker(rname, coll.name):  # a resumed run keeps the stored effectiveness
            eff = evaluate(ranker, coll, "test", empty=True)
            log = getattr(ranker, "train_log", {}) or {}
            store.set_ranker(rname, coll.name, "test", {**eff, "train_seconds": log.get("seconds"),
                                                        "best_epoch": log.get("best_epoch"),
                                                        "load_seconds": load_s, "device": device,
                                                        "units": ranker.analyzer})
        if not rparams.get("explain", True):
            continue
        explainers, build_errors = {}, {}
        metric_params = {m: {**cfg.metrics[m], **rparams.get("metrics", {}).get(m, {})} for m in cfg.metrics}
        for ename in explainer_names:
            params = {**cfg.explainers[ename], **rparams.get("explainers", {}).get(ename, {})}
            if ename == "idf_match":
                params.setdefault("idf", collection_idf(coll))
            ok, why = EXPLAINERS[ename].compatible(ranker)
            if not ok:
                build_errors[ename] = ("skipped", why)
                continue
            try:
                explainers[ename] = build_explainer(ename, ranker, seed=cfg.seed, batch_size=cfg.batch_size, **params)
            except Exception as e:
                build_errors[ename] = ("error", f"{type(e).__name__}: {e}")
        cells = []
        q_units, d_units = coll.units(ranker.analyzer)
        for q in (qids[: rparams["queries"]] if rparams.get("queries") else qids):
            cands = coll.candidates(q)
            scores = ranker.score_tokens(q_units[q], [d_units[d] for d in cands]).double().numpy()
            ranking = [cands[i] for i in np.argsort(-scores, kind="stable")]
            by_doc = dict(zip(cands, scores))
            for d, contrast in select_samples(coll, q, ranking, cfg.top_k, cfg.relevant, cfg.contrast_gap):
                cells.append((q, d, contrast, by_doc))
        bar = tqdm(total=len(cells) * len(explainer_names), desc=f"{cfg.name}:{rname}", disable=not progress)
        query_expl: dict[tuple[str, str], dict[str, Explanation]] = {}
        for i, (q, d, contrast, by_doc) in enumerate(cells):
            pair = make_pair(ranker, coll.queries[q], coll.docs[d])
            others = np.array([s for k, s in by_doc.items() if k != d])
            peers: dict[str, Explanation] = {}
            for ename in explainer_names:
                key = (cfg.name, rname, ename, q, d)
                bar.update(1)
                base = dict(suite=cfg.name, ranker=rname, explainer=ename, collection=coll.name, qid=q, docid=d,
                            device=device, seed=cfg.seed)
                if key in done:
                    saved = store.explanation(key)
                    if saved is not None:
                        peers[ename] = Explanation.from_json(saved)
                        query_expl.setdefault((q, ename), {})[d] = peers[ename]
                    continue
                if ename in build_errors:
                    status, msg = build_errors[ename]
                    store.write_cell(key, [{**base, "metric": m, "value": math.nan, "status": status, "message": msg}
                                           for m in metric_names], None)
                    continue
                explainer = explainers[ename]
                if device.startswith("cuda"):
                    torch.cuda.reset_peak_memory_stats()
                try:
                    ex = explainer.attribute_pair(pair)
                except Exception as e:  # recorded, the suite goes on
                    store.write_cell(key, [{**base, "metric": m, "value": math.nan, "status": "error",
                                            "message": f"{type(e).__name__}: {e}"} for m in metric_names], None)
                    continue
                peers[ename] = ex
                query_expl.setdefault((q, ename), {})[d] = ex
                ctx = MetricContext(ranker, pair, ex, explainer, others,
                                    float(by_doc[contrast]) if contrast is not None else None,
                                    coll.rationales.get((q, d)), bm25, peers, cfg.seed, cfg.batch_size)
                t_m = time.perf_counter()
                res = compute_metrics(ctx, metric_names, metric_params)
                metric_s = time.perf_counter() - t_m
                common = {**base, "seconds": ex.seconds, "forward_passes": ex.forward_passes,
                          "backward_passes": ex.backward_passes, "truncated": ex.truncated,
                          "peak_mem_mb": _peak_mem_mb(device)}
                rows = [{**common, "metric": m, "value": r.value, "status": r.status, "message": r.message,
                         "curve": r.curve, "info": {**r.info, "metric_seconds": metric_s}} for m, r in res.items()]
                store.write_cell(key, rows, _to_json(ex))
            store.set_meta("elapsed", elapsed_before + time.perf_counter() - t_start)  # survives a kill
            last_of_query = i + 1 == len(cells) or cells[i + 1][0] != q
            if LISTWISE in cfg.metrics and last_of_query:
                _listwise(store, cfg, coll, ranker, rname, q, explainer_names, query_expl, build_errors, done, device,
                          metric_params.get(LISTWISE, {}))
        bar.close()
    store.set_meta("finished", {"wall_seconds": elapsed_before + time.perf_counter() - t_start,
                                "finished": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")})
    if cfg.effectiveness:
        _effectiveness(store, cfg, device, progress, data_dir)
    export(store, out)
    store.close()
    return out


def _listwise(store, cfg, coll, ranker, rname, q, explainer_names, query_expl, build_errors, done, device, params):
    for ename in explainer_names:
        key = (cfg.name, rname, ename, q, "*")
        if key in done:
            continue
        base = dict(suite=cfg.name, ranker=rname, explainer=ename, collection=coll.name, qid=q, docid="*",
                    metric=LISTWISE, device=device, seed=cfg.seed)
        exps = query_expl.get((q, ename), {})
        if ename in build_errors or len(exps) < 2:
            status, msg = build_errors.get(ename, ("skipped", "fewer than two explained documents for this query"))
            store.write_cell(key, [{**base, "value": math.nan, "status": status, "message": msg}], None)
            continue
        docs = list(exps)
        try:
            q_units, d_units = coll.units(ranker.analyzer)
            r = listwise_tau(ranker, q_units[q], [d_units[d] for d in docs],
                             [exps[d] for d in docs], **params)
            row = {**base, "value": r.value, "status": r.status, "message": r.message, "info": r.info}
        except Exception as e:
            row = {**base, "value": math.nan, "status": "error", "message": f"{type(e).__name__}: {e}"}
        store.write_cell(key, [row], None)


def _effectiveness(store, cfg, device, progress, data_dir):
    for cname in cfg.effectiveness:
        c = load_collection(cname, data_dir, seed=cfg.seed)
        names = cfg.effectiveness_rankers or [r for r in cfg.rankers if r not in cfg.objects]
        for rname, rparams in ((r, cfg.rankers.get(r, {})) for r in names):
            known = rname in cfg.rankers
            m = get_ranker(cfg.ranker_type(rname) if known else rname, c, cfg.seed, None,
                           train_if_missing=rparams.get("train", True), device=device, progress=progress,
                           config=cfg.ranker_config(rname) if known else None)
            log = getattr(m, "train_log", {}) or {}
            store.set_ranker(rname, c.name, "test", {**evaluate(m, c, "test", empty=True),
                                                     "train_seconds": log.get("seconds"),
                                                     "best_epoch": log.get("best_epoch"), "device": device,
                                                     "units": m.analyzer})


def _to_json(ex: Explanation) -> dict:
    d = ex.to_json()
    return {k: d[k] for k in ("query_tokens", "doc_tokens", "doc_scores", "query_scores", "pair_map", "score",
                              "target", "seconds", "forward_passes", "backward_passes", "truncated", "doc_offsets",
                              "query_offsets")}



def export(store: Store, out: Path) -> None:
    """results.csv (flat export) and summary.csv (means with 95% bootstrap CIs)."""
    from .stats import summarize
    df = store.results()
    df.to_csv(out / "results.csv", index=False)
    summarize(df).to_csv(out / "summary.csv", index=False)
