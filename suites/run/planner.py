"""`rexbench plan SUITE`: what a suite will cost on this machine, before running it.

A short calibration runs the suite itself on its first `calibrate` queries (the same rankers,
explainers, metrics and settings, into a temporary directory; rankers not yet trained are trained
and cached, as the real run would) and times every (ranker, query) shard. From that:

- predicted seconds per ranker = mean shard seconds x the ranker's planned queries;
- predicted total = the calibration's fixed cost (loading rankers, ranking the collection: its wall
  time minus its shards and any training) + the shards' sum divided by the workers (shards are
  independent); training is reported apart (`training_seconds`): the calibration trains and caches
  any ranker not yet trained, so the run itself does not pay it again;
- model evaluations (query-document pairs scored) per explanation, per explainer;
- the queries a ranker needs before any paired comparison among its explainers can reach p < alpha
  after Holm (the exact Wilcoxon test's smallest two-sided p is 2 / 2^n: `stats.smallest_holm_p`);
- with a budget, how many queries each ranker can afford within it;
- from a calibration with several pairs per query, per headline metric the spread of paired differences split
  between and within queries, and the fewest pairs per query with which the collection's queries resolve the
  declared minimum meaningful difference (more pairs where queries run out), or that none does.

Shards of one ranker cost alike up to the length of the query's documents, so the error is mostly
that variation (reported by `benchmarks`/tests against a measured run).
"""
from __future__ import annotations

import dataclasses
import json
import math
import re
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

from rankers.errors import BadInput

from .config import SuiteConfig
from ..stats import ALPHA, smallest_holm_p


def parse_budget(text: str) -> float:
    """'90s', '30m', '1h', '1h30m' or plain seconds -> seconds."""
    t = str(text).strip().lower()
    if re.fullmatch(r"\d+(\.\d+)?", t):
        return _finite_budget(text, float(t))
    parts = re.findall(r"(\d+(?:\.\d+)?)([hms])", t)
    if not parts or "".join(a + b for a, b in parts) != t:
        raise BadInput(f"--budget {text!r}: expected e.g. 90s, 30m, 1h or 1h30m")
    return _finite_budget(text, sum(float(a) * {"h": 3600, "m": 60, "s": 1}[b] for a, b in parts))


def _finite_budget(text: str, seconds: float) -> float:
    """A budget up to a year (a 400-digit number would overflow the arithmetic that follows)."""
    if not math.isfinite(seconds) or seconds > 366 * 86400:
        raise BadInput(f"--budget {str(text)[:40]!r}: at most a year (366 days)")
    return seconds


def queries_for_significance(n_explainers: int, alpha: float = ALPHA) -> int:
    """The fewest queries at which a comparison among `n_explainers` (Holm over n - 1) can pass alpha."""
    m = max(n_explainers - 1, 1)
    n = 2
    while smallest_holm_p(n, m) >= alpha:
        n += 1
    return n


def planned_queries(cfg: SuiteConfig, n_sampled: int) -> dict[str, int]:
    """Explained ranker -> its queries in the run (`prepare.plan`: its own `queries`, else all sampled)."""
    return {p.name: min(p.queries, n_sampled) if p.queries else n_sampled for p in cfg.plan.explained()}


def plan_suite(cfg: SuiteConfig, device: str | None = None, workers: int = 1, calibrate: int = 1,
               budget_s: float | None = None, data_dir: str | None = None,
               calibration_run: str | Path | None = None) -> dict:
    """The plan as a JSON-serialisable dict (see the module docstring). `calibration_run`: calibrate from the
    first `calibrate` queries of each ranker in an existing run of this very suite (its shard times, recorded
    under the run's own workers) instead of running a calibration."""
    from suites.data.collections import load_collection
    device = device or cfg.device
    coll = load_collection(cfg.collection, data_dir, seed=cfg.seed)
    n_avail = len(coll.split(cfg.split))
    planned = planned_queries(cfg, min(cfg.queries, n_avail))
    if calibration_run is not None:
        cal = _from_run(cfg, coll, Path(calibration_run), int(calibrate), device, data_dir)
    else:
        cal = _calibrate(cfg, int(calibrate), device, data_dir)
    return _plan(cfg, planned, cal, device, workers, calibrate, budget_s, n_avail)


def _calibrate(cfg: SuiteConfig, calibrate: int, device: str, data_dir: str | None) -> dict:
    """Run the suite on its first `calibrate` queries in a temporary directory; its shards, explanation rows,
    training seconds, wall time and fixed cost."""
    from .runner import run_suite
    cal_cfg = dataclasses.replace(cfg, queries=calibrate)  # the runner slices each ranker's queries from these
    from .rundir import private_tmp
    with private_tmp("plan") as tmp:
        t0 = time.perf_counter()
        run_suite(cal_cfg, Path(tmp) / "cal", device=device, progress=False, data_dir=data_dir)
        wall = time.perf_counter() - t0
        con = sqlite3.connect(Path(tmp) / "cal" / "results.sqlite")
        try:
            shards = con.execute("SELECT ranker, seconds FROM shards").fetchall()
            # training this calibration did (a cached model's recorded training time is not paid now)
            trained = [d.get("train_seconds") for d in (json.loads(x) for (x,) in
                       con.execute("SELECT data FROM rankers WHERE split = 'test'")) if d.get("trained_now")]
            exps = [(r, e, json.loads(x)) for r, e, x in con.execute("SELECT ranker, explainer, data FROM explanations")]
            values = _headline_values(con)
        finally:
            con.close()
    shard_total = sum(float(s) for _, s in shards)
    training = float(sum(t for t in trained if t))  # paid by the calibration, cached for the run
    return {"shards": shards, "exps": exps, "wall": wall, "training": training, "values": values,
            "fixed": max(wall - shard_total - training, 0.0), "source": "calibration run"}


def _headline_values(con, qids: set | None = None) -> list[tuple]:
    """(ranker, explainer, metric, qid, docid, value) of the ok sample rows of the headline metrics."""
    from metrics import METRICS
    heads = [m for m, spec in METRICS.items() if spec.headline]
    q = ("SELECT ranker, explainer, metric, qid, docid, value FROM results WHERE status = 'ok' AND docid != '*' "
         f"AND metric IN ({', '.join('?' * len(heads))})")
    return [row for row in con.execute(q, heads) if qids is None or row[3] in qids]


def _power(values: list[tuple], ranker: str, planned: int, n_explainers: int, available: int | None = None) -> dict:
    """What `planned` queries can resolve on this ranker, from the calibration's spread: per headline metric the
    minimum detectable difference at that n (80% power at the strictest Holm step over the explainers) and the
    queries needed to resolve the declared minimum meaningful difference (`stats.board_power`); needs a
    calibration of at least two queries (`--calibrate 2`, or `--calibration-run`). Where the calibration has
    queries with several pairs, `design`: the spread split between and within queries (`stats.variance_components`)
    and the pairs per query that let the `available` queries resolve it (`stats.pairs_design`): more pairs per
    query where queries run out."""
    import pandas as pd

    from metrics import METRICS

    from ..stats import board_power, minimum_detectable_difference, pairs_design, variance_components
    rows = [v for v in values if v[0] == ranker]
    if not rows:
        return {"from_queries": 0, "metrics": {}}
    df = pd.DataFrame(rows, columns=["ranker", "explainer", "metric", "qid", "docid", "value"]).assign(status="ok")
    out = {}
    for m in [m for m in METRICS if m in set(df.metric)]:
        p = board_power(df, ranker, m, max(n_explainers - 1, 1))
        if p is None:
            continue
        out[m] = {"sd": p["sd"], "min_meaningful": p["min_meaningful"],
                  "mdd_at_planned": minimum_detectable_difference(p["sd"], planned, max(n_explainers - 1, 1)),
                  "queries_to_resolve": p["needed"]}
        comp = variance_components(df, ranker, m) if available else None
        if comp is not None:
            out[m]["design"] = {**comp, **pairs_design(comp, p["min_meaningful"], max(n_explainers - 1, 1),
                                                       available)}
    return {"from_queries": int(df.qid.nunique()), "metrics": out}


def _from_run(cfg: SuiteConfig, coll, run_dir: Path, calibrate: int, device: str, data_dir: str | None) -> dict:
    """The calibration read from an existing run of the same suite (fingerprint checked): each ranker's shards
    on the suite's first `calibrate` sampled queries; the fixed cost is the run's recorded preparation time."""
    from .rundir import copy_database, first_difference, run_database
    from .runner import run_fingerprint, sampled_queries
    # checked as every command that reads a run checks it (a packed run too); read from a private copy, so
    # neither the database nor its WAL is touched
    with run_database(run_dir, "--calibration-run") as db, tempfile.TemporaryDirectory(prefix="rexbench-") as tmp:
        con = sqlite3.connect(copy_database(db, Path(tmp)))
        try:
            meta = {k: json.loads(v) for k, v in con.execute("SELECT key, value FROM meta")}
            stored, now = meta.get("fingerprint") or {}, run_fingerprint(cfg, device, coll)
            diff = first_difference({k: stored.get(k) for k in ("config", "collection")},
                                    {k: now[k] for k in ("config", "collection")})
            if diff is not None:
                raise BadInput(f"--calibration-run {run_dir} is a run of another suite or settings (differs at "
                               f"{diff})")
            versions = first_difference(stored.get("versions") or {}, now["versions"])
            if versions is not None:  # the same suite run by other code: its timings are a guide, not a measure
                print(f"rexbench: warning: --calibration-run {run_dir} was made by other versions ({versions}); "
                      "its timings may not hold for this code", file=sys.stderr)
            first = set(sampled_queries(cfg, coll)[:calibrate])
            shards = [(r, s) for r, q, s in con.execute("SELECT ranker, qid, seconds FROM shards") if q in first]
            exps = [(r, e, json.loads(x)) for r, e, q, x in
                    con.execute("SELECT ranker, explainer, qid, data FROM explanations") if q in first]
            values = _headline_values(con, first)
        finally:
            con.close()
    fixed = float((meta.get("prepared") or {}).get("seconds", float("nan")))
    return {"shards": shards, "exps": exps, "wall": sum(float(s) for _, s in shards), "training": 0.0,
            "fixed": fixed, "values": values, "source": f"the first {calibrate} queries of {run_dir}"}


def _plan(cfg: SuiteConfig, planned: dict[str, int], cal: dict, device: str, workers: int, calibrate: int,
          budget_s: float | None, available: int | None = None) -> dict:
    per: dict[str, list[float]] = {}
    for r, s in cal["shards"]:
        per.setdefault(r, []).append(float(s))
    rows: dict[str, dict[str, list[float]]] = {}
    for r, e, d in cal["exps"]:
        if d.get("forward_rows") is not None:
            rows.setdefault(r, {}).setdefault(e, []).append(float(d["forward_rows"]))
    fixed = cal["fixed"]
    n_expl = len(cfg.explainers)
    need = queries_for_significance(n_expl)
    out_rankers = {}
    missing = [r for r in planned if r not in per]
    for r, q in planned.items():
        if r in missing:  # no calibration shard (e.g. a --calibration-run that has not reached this ranker)
            out_rankers[r] = {"queries": q, "seconds_per_query": None, "predicted_seconds": None,
                              "rows_per_explanation": {}, "queries_for_significance": need, "underpowered": q < need}
            continue
        sec = float(sum(per[r]) / len(per[r]))
        entry = {"queries": q, "seconds_per_query": sec, "predicted_seconds": sec * q,
                 "rows_per_explanation": {e: sum(v) / len(v) for e, v in sorted(rows.get(r, {}).items())},
                 "queries_for_significance": need, "underpowered": q < need}
        entry["power"] = _power(cal.get("values", []), r, q, n_expl, available)
        if budget_s is not None:
            spare = max(budget_s - (fixed if math.isfinite(fixed) else 0.0), 0.0) * max(workers, 1)
            entry["affordable_queries"] = int(spare // sec) if sec > 0 else None
        out_rankers[r] = entry
    total = (fixed + sum(v["predicted_seconds"] for v in out_rankers.values()) / max(workers, 1)
             if not missing else None)
    return {"suite": cfg.name, "device": device, "workers": workers,
            "calibration": {"queries": calibrate, "wall_seconds": cal["wall"], "fixed_seconds": fixed,
                            "training_seconds": cal["training"], "source": cal["source"]},
            "rankers": out_rankers, "predicted_total_seconds": total, "uncalibrated": missing,
            **({"budget_seconds": budget_s, "fits": None if total is None else total <= budget_s}
               if budget_s is not None else {})}


def plan_text(p: dict) -> str:
    lines = [f"suite {p['suite']} on {p['device']} with {p['workers']} worker(s): predicted "
             f"{_dur(p['predicted_total_seconds'])} (calibration: {p['calibration']['queries']} query per ranker, "
             f"{_dur(p['calibration']['wall_seconds'])}, of which {_dur(p['calibration']['fixed_seconds'])} fixed and "
             f"{_dur(p['calibration']['training_seconds'])} training, now cached)"]
    for r, v in p["rankers"].items():
        rows = v["rows_per_explanation"]
        extra = f", affordable within the budget: {v['affordable_queries']} queries" if "affordable_queries" in v else ""
        lines.append(f"  {r}: {v['queries']} queries x {_dur(v['seconds_per_query'])} = {_dur(v['predicted_seconds'])}; "
                     f"{'UNDERPOWERED, ' if v['underpowered'] else ''}significance needs >= "
                     f"{v['queries_for_significance']} queries; model evaluations per explanation "
                     f"{min(rows.values()) if rows else 0:.0f}..{max(rows.values()) if rows else 0:.0f}{extra}")
        pw = v.get("power") or {}
        if pw.get("metrics"):
            lines.append("    resolution (spread from the calibration's " + f"{pw['from_queries']} queries): "
                         + "; ".join(f"{m} detects {x['mdd_at_planned']:.3f} at {v['queries']} queries (minimum "
                                     f"meaningful {x['min_meaningful']:g}: "
                                     + (f"{x['queries_to_resolve']} queries resolve it)" if x["queries_to_resolve"]
                                        else "more than 100000 queries resolve it)")
                                     for m, x in pw["metrics"].items()))
            for m, x in pw["metrics"].items():
                d = x.get("design")
                if d is None:
                    continue
                spread = (f"    design for {m} (spread between queries {d['between'] ** 0.5:.3f}, within a query "
                          f"{d['within'] ** 0.5:.3f}, at {d['pairs_per_query']:.1f} pairs per query): ")
                if d["choice"]:
                    c = d["choice"]
                    lines.append(spread + f"{c['queries']} of the {d['available_queries']} queries at "
                                 f"{c['pairs_per_query']} pairs per query resolve {x['min_meaningful']:g}")
                else:
                    lines.append(spread + f"no design within the {d['available_queries']} queries resolves "
                                 f"{x['min_meaningful']:g} (up to {max(d['queries_needed'])} pairs per query; the "
                                 f"between-query spread alone needs {d['floor_queries'] or 'more than 100000'} "
                                 "queries)")
        elif "power" in v:
            lines.append("    resolution: unknown (the spread of paired differences needs a calibration of at least "
                         "2 queries: --calibrate 2)")
    for r, c in ((p.get("design") or {}).get("rankers") or {}).items():
        lines.append(f"  design {r}: {c['queries']} queries x {c['pairs_per_query']} documents ({c['why']})")
    if p.get("design"):
        lines.append(f"  wrote the designed suite to {p['design']['out']}")
    if p.get("uncalibrated"):
        lines.append(f"no calibration shard for {', '.join(p['uncalibrated'])}: their cost and the total are unknown")
    if "budget_seconds" in p:
        fits = {True: "fits", False: "does NOT fit", None: "unknown (uncalibrated rankers)"}[p["fits"]]
        lines.append(f"budget {_dur(p['budget_seconds'])}: {fits}")
    return "\n".join(lines)


def _dur(s: float | None) -> str:
    if s is None or not math.isfinite(s):
        return "?"
    return f"{s:.1f} s" if s < 120 else f"{s / 60:.1f} min" if s < 7200 else f"{s / 3600:.1f} h"


PLAN_FILE = "plan.json"


def plan_vs_run(plan: dict, shards, wall_s: float | None = None) -> list[dict]:
    """The plan's prediction against a measured run of the same suite: per ranker, predicted seconds (the
    calibrated seconds per query x its queries) against the sum of its measured shard seconds, their total over
    the compared rankers, and, with `wall_s`, the predicted wall time against the run's. `shards`: DataFrame with
    ranker, seconds (`Store.shard_seconds`). Error = (predicted - measured) / measured."""
    rows = []
    measured = shards.groupby("ranker").seconds.agg(["sum", "size"])
    for r, v in plan.get("rankers", {}).items():
        if r not in measured.index or v.get("predicted_seconds") is None:
            continue
        m = float(measured.loc[r, "sum"])
        rows.append({"ranker": r, "queries": int(measured.loc[r, "size"]), "predicted_s": float(v["predicted_seconds"]),
                     "measured_s": m, "error": (float(v["predicted_seconds"]) - m) / m if m > 0 else float("nan")})
    if rows:
        p_sum, m_sum = sum(r["predicted_s"] for r in rows), sum(r["measured_s"] for r in rows)
        rows.append({"ranker": "all rankers (shard seconds)", "queries": None, "predicted_s": p_sum,
                     "measured_s": m_sum, "error": (p_sum - m_sum) / m_sum if m_sum > 0 else float("nan")})
    total = plan.get("predicted_total_seconds")
    if wall_s is not None and rows and total is not None and math.isfinite(float(total)):
        p = float(total)
        rows.append({"ranker": f"total ({plan.get('workers')} workers, wall)", "queries": None, "predicted_s": p,
                     "measured_s": float(wall_s), "error": (p - wall_s) / wall_s if wall_s > 0 else float("nan")})
    return rows
