"""RESULTS.md's cost sections: the plan against the run, throughput, and the scaling measurements."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from .common import duration, fmt, md_table


def plan_section(run_dir: Path, shards: pd.DataFrame, fin: dict, meta_env: dict | None = None) -> list[str]:
    """"Cost prediction": the `rexbench plan --json` output saved beside the run as plan.json (a calibration on the
    same machine, or `--calibration-run` on the run itself) against the run's measured shard seconds."""
    import json

    from ..run.planner import PLAN_FILE, plan_vs_run
    f = run_dir / PLAN_FILE
    if not f.is_file() or shards.empty:
        return []
    try:
        plan = json.loads(f.read_text())
    except (OSError, ValueError):
        return []
    wall = fin.get("wall_seconds")
    # a resumed run's wall time spans several starts (and its recorded preparation may be a resume's): shards only
    whole = wall is not None and not (meta_env or {}).get("resumed")
    rows = plan_vs_run(plan, shards, wall_s=float(wall) if whole else None)
    if not rows:
        return []
    t = pd.DataFrame(rows)
    t["queries"] = t["queries"].map(lambda v: "-" if v is None or v != v else str(int(v)))
    for c in ("predicted_s", "measured_s"):
        t[c] = t[c].map(lambda v: fmt(v, 1))
    t["error"] = t["error"].map(lambda v: f"{v:+.0%}" if v == v else "-")
    cal = plan.get("calibration", {})
    source = cal.get("source", "calibration run")
    how = (f"calibrated on {source} (`--calibration-run`: the shards a calibration would have run, timed under "
           "the run's own workers)" if source != "calibration run" else
           f"calibrated by a {fmt(cal.get('wall_seconds'), 0)} s calibration run on the same machine before the run")
    return ["## Cost prediction", "",
            f"`rexbench plan {plan.get('suite')} --workers {plan.get('workers')} --json` ({run_dir / PLAN_FILE}), "
            f"{how}, {cal.get('queries')} query per ranker: predicted seconds per ranker (seconds per calibration "
            "query x the ranker's queries) against the sum of the ranker's measured shard seconds; error = "
            "(predicted - measured) / measured, so it measures how well one query stands for the others. The "
            "total compares the predicted wall time (fixed cost + shard seconds / workers) with the run's, when "
            "the run was made in one start (a resumed run is compared on shard seconds only).", "",
            md_table(t), ""]


def throughput_section(df: pd.DataFrame) -> list[str]:
    """Explanations and metric evaluations per second of the suite, per ranker."""
    cells = df[(df.docid != "*")].drop_duplicates(["ranker", "explainer", "qid", "docid"])
    cells = cells[cells.status == "ok"].copy()
    if cells.empty:
        return []
    cells["metric_s"] = [json.loads(i).get("metric_seconds", np.nan) if isinstance(i, str) else np.nan
                         for i in cells["info"]]
    ok_rows = df[(df.status == "ok") & (df.docid != "*")].groupby("ranker").size()
    rows = []
    for r, g in cells.groupby("ranker", sort=False):
        rows.append({"ranker": r, "explanations": len(g), "explanations/s": fmt(len(g) / g.seconds.sum(), 1),
                     "metric evaluations": int(ok_rows.get(r, 0)),
                     "metric evaluations/s": fmt(ok_rows.get(r, 0) / np.nansum(g.metric_s), 1)})
    return ["## Suite throughput", "",
            "All explainers pooled: explanations per second of attribution time, and metric values per second "
            "of metric time (each metric evaluation is one row; batched perturbation metrics share model calls).",
            "", md_table(pd.DataFrame(rows)), ""]


def scaling_section(files: list[Path]) -> list[str]:
    """Ratios from `make bench-scale` (pytest-benchmark JSON next to the run): the quick suite on 1 vs 2
    workers, cross-pair batching vs one pair at a time; with the machine they were measured on."""
    md = []
    for f in files:
        data = json.loads(f.read_text())
        if data.get("kind") == "shards":
            md += shard_scaling(f.name, data)
            continue
        mi = data.get("machine_info", {})
        med = {(b.get("extra_info", {}).get("workers") or b.get("extra_info", {}).get("mode")): b["stats"]["median"]
               for b in data.get("benchmarks", [])}
        info = next((b.get("extra_info", {}) for b in data.get("benchmarks", [])
                     if b.get("extra_info", {}).get("suite")), {})
        rounds = {b.get("extra_info", {}).get("workers"): b["stats"]["rounds"] for b in data.get("benchmarks", [])}
        dev = next((b.get("extra_info", {}).get("device") for b in data.get("benchmarks", [])
                    if b.get("extra_info", {}).get("device")), "cpu")
        rows = []
        if 1 in med and 2 in med:
            what = ", ".join(f"{info[k]} {k}" for k in ("queries", "rankers", "explainers") if k in info)
            rows.append({"measurement": f"{info.get('suite', '?')} suite ({what}), wall time, median of "
                                        f"{min(rounds[1], rounds[2])} runs",
                         "baseline": f"1 worker {med[1]:.1f} s", "scaled": f"2 workers {med[2]:.1f} s",
                         "ratio": f"{med[1] / med[2]:.2f}x"})
        if "one_pair" in med and "cross_pair" in med:
            rows.append({"measurement": "cross-encoder curve metrics of 4 pairs of one query",
                         "baseline": f"one pair at a time {med['one_pair']:.2f} s",
                         "scaled": f"cross-pair batches {med['cross_pair']:.2f} s",
                         "ratio": f"{med['one_pair'] / med['cross_pair']:.2f}x"})
        if rows:
            md += [f"## Scaling ({f.name})", "",
                   f"Measured by `make bench-scale` (pytest-benchmark, median) on {mi.get('cpu', {}).get('brand_raw', '?')} "
                   f"({mi.get('cpu', {}).get('count', '?')} cores), device `{dev}`, {data.get('datetime', '')[:10]}.", "",
                   md_table(pd.DataFrame(rows)), ""]
    return md


def shard_scaling(name: str, data: dict, workers: tuple[int, ...] = (1, 2, 8, 32)) -> list[str]:
    """Measured seconds per shard and explanations/s per worker of a (partial) run (`suites.report.scaling`), and
    the whole suite's wall time projected from them for several worker counts."""
    rows, total = [], 0.0
    for r, d in data.get("rankers", {}).items():
        sec = float(np.mean(d["seconds"]))
        planned = d.get("planned_queries") or d["shards"]
        total += planned * sec
        rows.append({"ranker": r, "shards measured": d["shards"], "seconds per shard": f"{sec:.0f}",
                     "explanations/s per worker": f"{d['explanations'] / sum(d['seconds']):.3g}",
                     "queries in the suite": planned,
                     **{f"projected, {w} worker{'s' * (w > 1)}": duration(planned * sec / w) for w in workers}})
    if not rows:
        return []
    missing = data.get("unmeasured") or []
    rows.append({"ranker": "**measured rankers**" if missing else "**all**",
                 "shards measured": sum(d["shards"] for d in data["rankers"].values()),
                 "seconds per shard": "", "explanations/s per worker": "", "queries in the suite": "",
                 **{f"projected, {w} worker{'s' * (w > 1)}": duration(total / w) for w in workers}})
    wall = data.get("wall_seconds")
    return [f"## Scaling ({name})", "",
            f"Shard timings of suite `{data.get('suite')}` ({data.get('suite_path')}) measured on `{data.get('device')}` "
            f"({data.get('device_name')}) with {data.get('workers')} worker(s), each shard on one worker; the run "
            f"{'finished' if data.get('complete') else 'was stopped (partial: the shards recorded)'} after "
            f"{duration(wall) if wall else '?'} of wall time. The projected columns are not measured: queries in "
            "the suite x seconds per shard / workers, assuming workers as fast as these and no start-up."
            + (f" Rankers of the suite without a finished shard (not in the projection): {', '.join(missing)}."
               if missing else ""), "",
            md_table(pd.DataFrame(rows)), ""]


def explanation_costs(df: pd.DataFrame, exps: list[dict]) -> pd.DataFrame:
    """One row per explanation (ranker, explainer, qid, docid), each counted once: seconds, batched forward and
    backward calls, model evaluations (`rows`, where recorded) and peak memory, from the first ok sample row that
    timed it (an explanation's rows repeat its cost once per metric; a pair whose first metric row was skipped,
    e.g. a normalised curve undefined on it, still counts)."""
    cols = ["ranker", "explainer", "qid", "docid", "seconds", "forward_passes", "backward_passes", "peak_mem_mb"]
    if df.empty or "seconds" not in df:
        return pd.DataFrame(columns=cols + ["rows"])
    ok = df[(df.status == "ok") & df.seconds.notna() & (df.docid != "*")]
    one = ok.drop_duplicates(["ranker", "explainer", "qid", "docid"])
    rows = {(e["ranker"], e["explainer"], e["qid"], e["docid"]): e.get("forward_rows") for e in exps}
    out = one.reindex(columns=cols).copy()
    out["rows"] = [rows.get(k) for k in zip(out.ranker, out.explainer, out.qid, out.docid)]
    out["rows"] = out["rows"].astype(float)
    return out.reset_index(drop=True)
