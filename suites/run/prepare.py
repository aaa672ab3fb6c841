"""What a run prepares before its shards: each ranker loaded (trained and cached on first use) once, its
effectiveness and removal diagnostics recorded; then the shards still to run. A resumed run's finished rankers
are neither loaded nor trained again."""
from __future__ import annotations

import time

import torch

from rankers.errors import BadInput, about_ranker
from rankers.evaluate import evaluate, evaluate_run, per_query_ndcg, run_ranker
from rankers.scorer import resolve_batch_size

from .config import SuiteConfig
from .resolved import RankerPlan
from .store import Store

#: the effectiveness row of the candidates' own first stage (a shipped run or a run file), evaluated as given
FIRST_STAGE = "first stage (as given)"


def prepare(cfg: SuiteConfig, coll, store: Store, device: str, progress: bool, probed: dict,
            qid: str | None = None, qids: list[str] | None = None, only: set[str] | None = None
            ) -> tuple[dict, dict[str, float]]:
    """Load each ranker once here (training and caching any not yet trained, so workers only load;
    `probed`: rankers `check_inputs` loaded already) and record its effectiveness. Returns the loaded
    rankers that will be explained, and (with `qid`) each one's seconds to score that query's
    candidates: the planner's estimate of what its shards cost. A resumed run's finished rankers (effectiveness
    stored, every shard recorded) are neither loaded nor trained again: nothing is left for them to score, so a
    run that continues on a fresh machine re-trains only the models it still explains. `only`: those rankers
    alone."""
    loaded, cost, runs = {}, {}, {}
    done = store.done_shards(cfg.name)
    first = coll.first_stage()
    if first is not None and not store.has_ranker(FIRST_STAGE, coll.name):  # the candidates' own ranking, as given
        test = set(coll.split("test"))
        given = {q: r for q, r in first.items() if q in test}
        store.set_ranker(FIRST_STAGE, coll.name, "test", {**evaluate_run(coll, given), "source": coll.run_source,
                                                          "ndcg@10 per query": per_query_ndcg(coll, given)})
    for p in cfg.plan.rankers.values():
        rname = p.name
        stored = store.ranker(rname, coll.name)
        if (only is not None and rname not in only) or not _left(p, qids, done, stored):
            continue
        t0 = time.perf_counter()
        ranker = probed[rname].to(device).eval() if rname in probed else p.load(coll, device, progress)
        load_s = time.perf_counter() - t0
        weights = _trained_weights(ranker)
        if weights and stored and stored.get("weights_sha") not in (None, weights):
            raise BadInput(f"ranker {rname!r}: the trained model now in the cache (weights {weights}) is not the one "
                           f"this run started with (weights {stored['weights_sha']}): it was retrained since; "
                           "restore that checkpoint, or run again with --overwrite")
        if stored is None:  # a resumed run keeps the stored effectiveness
            # rankers with the same weights (tables that differ only in a runtime parameter such as `removal`)
            # score the unperturbed candidates alike: ranked once; the empty document is each one's own
            key = p.weights_key()
            try:
                run = runs.get(key) if key is not None else None
                if run is None:
                    run = run_ranker(ranker, coll, "test")
                    if key is not None:
                        runs[key] = run
                eff = evaluate(ranker, coll, "test", empty=True, run=run)
                eff["ndcg@10 per query"] = per_query_ndcg(coll, run)
                if p.explain and qids:  # what random removal does to the explained documents (issue 32)
                    eff["removal_diagnostic"] = removal_diagnostics(ranker, coll, run, _explained_queries(p, qids),
                                                                    cfg.seed, rname)
            except BadInput as e:  # e.g. a function wrong only on calls larger than the probe's
                raise BadInput(f"{about_ranker(rname, e)} (while ranking the {coll.name} test split)") from None
            log = getattr(ranker, "train_log", {}) or {}
            store.set_ranker(rname, coll.name, "test", {**eff, "train_seconds": log.get("seconds"),
                                                        "trained_now": bool(getattr(ranker, "trained_now", False)),
                                                        "best_epoch": log.get("best_epoch"),
                                                        **({"removal_training": log["removal_training"]}
                                                           if log.get("removal_training") else {}),
                                                        **({"weights_sha": weights} if weights else {}),
                                                        "load_seconds": load_s, "device": device,
                                                        "units": ranker.analyzer,
                                                        "batch_size": resolve_batch_size(cfg.batch_size, device,
                                                                                         ranker)})
        if p.explain:
            loaded[rname] = ranker
            if qid is not None:
                cost[rname] = _scoring_seconds(ranker, coll, qid)
    return loaded, cost


def _trained_weights(ranker) -> str | None:
    """The weights digest of a model rexbench trained (it carries a training log; it comes from the cache, whose
    key is its configuration, not its weights), else None: a local model or checkpoint directory is in the run's
    fingerprint by content already, a hub model or a function has no cache entry to change."""
    from rankers.identity import weights_digest
    return weights_digest(ranker) if getattr(ranker, "train_log", None) else None


def unfinished(cfg: SuiteConfig, coll, store: Store, qids: list[str]) -> list[str]:
    """The suite's rankers with something left to record: effectiveness, or a shard."""
    done = store.done_shards(cfg.name)
    return [p.name for p in cfg.plan.rankers.values() if _left(p, qids, done, store.ranker(p.name, coll.name))]


def _left(p: RankerPlan, qids: list[str] | None, done: set[tuple[str, str]], stored: dict | None) -> bool:
    """Whether ranker `p` has something left to record: its effectiveness (`stored` is None), or a shard."""
    return stored is None or not _finished(p, qids, done)


def _finished(p: RankerPlan, qids: list[str] | None, done: set[tuple[str, str]]) -> bool:
    """Whether ranker `p` has no shard left: effectiveness only, or every query it explains recorded in `done`."""
    if not p.explain:
        return True
    return qids is not None and all((p.name, q) in done for q in _explained_queries(p, qids))


def _explained_queries(p: RankerPlan, qids: list[str]) -> list[str]:
    """The sampled queries ranker `p` explains (its own `queries`, else all)."""
    return qids[: p.queries] if p.queries else qids


def removal_diagnostics(ranker, coll, run: dict[str, dict[str, float]], qids: list[str], seed: int,
                        name: str = "") -> dict:
    """`metrics.diagnostics.removal_diagnostic` on each query's top-ranked candidate (the document every suite
    explains), among that query's other candidates as scored in `run`: per-query standings after random
    removal of each share of the words, intact and empty. Stored with the ranker's effectiveness; a ranker
    that fails on perturbed documents gets `error` (its cells record the failure as error rows)."""
    from metrics.diagnostics import SHARES, removal_diagnostic
    q_units, d_units = coll.units(ranker.analyzer)
    out = {"queries": [], "full": [], "empty": [], "shares": {str(s): [] for s in SHARES}, "orders": 8}
    for q in qids:
        scores = run.get(q) or {}
        if len(scores) < 2:
            continue
        top = sorted(scores, key=lambda d: -scores[d])[0]  # stable: the shard's ranking (ties: candidate order)
        others = [v for d, v in scores.items() if d != top]
        try:
            got = removal_diagnostic(ranker, q_units[q], d_units[top], others, SHARES, 8, seed)
        except torch.cuda.OutOfMemoryError:
            raise
        except Exception as e:  # a ranker failing on perturbed documents: recorded, the suite goes on
            out["error"] = about_ranker(name or ranker.name, e)
            break
        out["queries"].append(q)
        out["full"].append(got["full"])
        out["empty"].append(got["empty"])
        for s, v in got["shares"].items():
            out["shares"][str(s)].append(v)
    return out


def _scoring_seconds(ranker, coll, qid: str) -> float:
    """Seconds to score one query's candidates (after evaluation: caches warm): a ranker's relative cost."""
    q_units, d_units = coll.units(ranker.analyzer)
    t0 = time.perf_counter()
    with torch.no_grad():
        ranker.score_tokens(q_units[qid], [d_units[d] for d in coll.candidates(qid)])
    return time.perf_counter() - t0


def plan(cfg: SuiteConfig, qids: list[str], done: set[tuple[str, str]], cost: dict[str, float] | None = None,
         only: set[str] | None = None) -> list[tuple[str, str]]:
    """The (ranker, query) shards still to run (of the rankers in `only`, else of all), grouped by ranker (a
    worker loads each ranker once), the costliest rankers first (`cost`: seconds per ranker; engines start
    shards in this order, so the run's last shards are short ones and workers finish together)."""
    cost = cost or {}
    out = []
    explained = [p for p in cfg.plan.explained() if only is None or p.name in only]
    for p in sorted(explained, key=lambda p: -cost.get(p.name, 0.0)):  # stable: suite order among equals
        for q in (qids[: p.queries] if p.queries else qids):
            if (p.name, q) not in done:
                out.append((p.name, q))
    return out
