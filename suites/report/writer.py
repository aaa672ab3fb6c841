"""`rexbench report DIR`: RESULTS.md and figures, generated from DIR alone (never edited by hand); the sections are the
modules beside this one."""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd

from metrics import METRICS

from ..run.store import Store
from .claim import seed_claim_section
from .common import fmt, score_normalised, md_table, explanation_rows
from .comparisons import comparisons_section
from .cost import plan_section, scaling_section, throughput_section
from .diagnostics import anchors_section, diagnostics_section, dominated_rankers
from .figures import cost_figure, curve_figure, heatmap_figure, layer_sweep, layer_sweep_figure, timing_figure
from .leaderboard import leaderboard_section, normalised_section
from .markup import md_inline
from .operators import operator_section
from .seed_section import seed_section
from .validity import ig_completeness_section, meta_evaluation_section, metric_validity


def _ranker_settings(suite_rankers: dict) -> list[str]:
    """'- NAMES: ...' lines for explained rankers whose tables set their own queries, relevant samples or skips
    (what differs from the suite's defaults), rankers with identical settings on one line."""
    groups: dict[str, list[str]] = {}
    for name, t in suite_rankers.items():
        if not t.get("explain", True):
            continue
        bits = []
        if t.get("queries"):
            bits.append(f"{t['queries']} queries")
        if t.get("relevant") is not None:
            bits.append(f"{t['relevant']} judged-relevant samples per query")
        if t.get("skip"):
            bits.append("skipped: " + ", ".join(f"`{x}`" for x in t["skip"]))
        if bits:
            groups.setdefault("; ".join(bits), []).append(name)
    return [f"- {', '.join(names)}: {what}" for what, names in groups.items()]


def _batch_text(rankers: pd.DataFrame) -> str:
    """Rows per model call of each ranker (`batch_size = "auto"` is resolved per device and ranker)."""
    if rankers.empty or "batch_size" not in rankers:
        return ""
    sizes = {r: int(b) for r, b in zip(rankers.ranker, rankers.batch_size) if pd.notna(b)}
    if not sizes:
        return ""
    if len(set(sizes.values())) == 1:
        return f"; {next(iter(sizes.values()))} rows per model call"
    return "; rows per model call: " + ", ".join(f"{k} {v}" for k, v in sizes.items())


def _engine_line(meta: dict, exps: list, fin: dict) -> str:
    eng = meta.get("engine", {})
    n, wall = len(exps), fin.get("wall_seconds") or meta.get("elapsed")
    rate = f" ({n / wall:.2f} explanations/s overall, training and effectiveness included)" if wall else ""
    where = f" joined at {eng['address']}" if eng.get("address") else ""
    return f"- engine: {eng.get('workers', 1)} worker(s){where}; {n} explanations{rate}"


def _live_writer(lock: Path) -> str | None:
    """Who holds the run's lock ("pid N on HOST"), when a run is writing it now; else None."""
    import fcntl
    import json
    try:
        fd = os.open(lock, os.O_RDONLY)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    except OSError:
        try:
            who = json.loads(os.pread(fd, 4096, 0).decode() or "{}")
            return f"pid {who.get('pid')} on {who.get('host')}"
        except ValueError:
            return "another process"
    finally:
        os.close(fd)


def _read_run(run_dir: Path, db: Path):
    """(meta, results, rankers, explanations) of a run, read without writing to it: read-only, or from a
    private copy when the run directory is read-only (SQLite cannot open a WAL database read-only there)."""
    import tempfile

    from ..run.rundir import copy_database
    with tempfile.TemporaryDirectory(prefix="rexbench-report-") as tmp:
        src = db if os.access(run_dir, os.W_OK | os.X_OK) else copy_database(db, Path(tmp))
        store = Store(src, readonly=src == db)
        try:
            return store.meta(), store.results(), store.rankers(), store.explanations(), store.shard_seconds()
        finally:
            store.close()


def write_report(run_dir: str | Path, out: str | Path | None = None) -> Path:
    """Write RESULTS.md (default `run_dir/RESULTS.md`) and its figures from the run's database, or from its
    packed copy on a clean clone (`rundir.run_database`: checked either way, a damaged one is a BadInput)."""
    from ..run.rundir import run_database
    run_dir = Path(run_dir)
    with run_database(run_dir, "report") as db:
        return _write_report(run_dir, out, db)


def _write_report(run_dir: Path, out, db: Path) -> Path:
    from rankers.errors import BadInput

    from ..run.rundir import LOCK
    out = Path(out) if out else run_dir / "RESULTS.md"
    if out.is_dir():
        raise BadInput(f"cannot write the report: {out} is a directory")
    if not os.access(out.parent if out.parent.exists() else Path.cwd(), os.W_OK | os.X_OK):
        raise BadInput(f"cannot write the report: {out.parent} is not a writable directory")
    live = _live_writer(run_dir / LOCK)
    meta, df, rankers, exps, shards = _read_run(db.parent if db.parent != run_dir else run_dir, db)
    # figures beside the run (the committed layout); beside the report when the run directory is read-only
    figs = run_dir / "figures" if os.access(run_dir, os.W_OK | os.X_OK) else out.parent / "figures"
    if figs.exists() and not figs.is_dir():
        raise BadInput(f"cannot write the report's figures: {figs} is a file; move it away")
    try:
        figs.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise BadInput(f"cannot write the report's figures in {figs} ({e.strerror or e})") from None
    rel = lambda p: os.path.relpath(p, out.parent)  # noqa: E731
    suite, env, fin = meta.get("suite", {}), meta.get("environment", {}), meta.get("finished", {})
    md = ["# rexbench results", "",
          f"Generated by `rexbench report {run_dir}` from `{run_dir}/results.sqlite` (committed as "
          f"`{run_dir}/results.sqlite.gz`, which the same command reads on a clean clone); do not edit by hand.", "",
          "## What was run", "",
          f"- suite: `{suite.get('name')}` ({md_inline(suite.get('path'))}): "
          f"{md_inline(suite.get('description', ''))}",
          f"- collection: `{suite.get('collection')}`, split `{suite.get('split')}`, samples per query: the ranker's "
          f"top {suite.get('samples', {}).get('top_k')} plus up to {suite.get('samples', {}).get('relevant')} judged "
          f"relevant, over {df.qid.nunique() if not df.empty else 0} queries; seed {suite.get('seed')}",
          *_ranker_settings(suite.get("rankers", {})),
          f"- device: `{env.get('device')}` ({env.get('device_name')})" + _batch_text(rankers),
          "- versions: " + ", ".join(f"{k} {v}" for k, v in env.get("versions", {}).items()),
          f"- started {env.get('started')}, finished {fin.get('finished')}, wall time "
          f"{fmt(fin.get('wall_seconds'), 1)} s (including training any ranker not yet cached"
          + (f"; resumed at {', '.join(env['resumed'])}" if env.get("resumed") else "") + ")",
          _engine_line(meta, exps, fin),
          f"- rows: {len(df)} ({(df.status == 'ok').sum() if not df.empty else 0} ok, "
          f"{(df.status == 'error').sum() if not df.empty else 0} error, "
          f"{(df.status == 'skipped').sum() if not df.empty else 0} skipped)", ""]
    if not fin:
        planned = [r for r, t in suite.get("rankers", {}).items() if t.get("explain", True)]
        done = set(df.ranker) if not df.empty else set()
        state = (f"it is still running ({live}); this report shows the shards recorded so far" if live else
                 f"it was stopped before it finished (`rexbench run {suite.get('path')} --out {run_dir} --resume` "
                 "continues it)")
        md[2:2] = [f"**Incomplete run**: {state}. Rankers with results: {', '.join(r for r in planned if r in done)}"
                   f"; without: {', '.join(r for r in planned if r not in done) or 'none'}. The last ranker with "
                   "results may be partial (see its n queries / pairs).", ""]
    if not rankers.empty:
        md += ["## Ranker effectiveness (test split, BM25 top-100 re-ranked, ir-measures)", ""]
        t = rankers.copy()
        t["train s"] = [fmt(x, 1) if x is not None and not pd.isna(x) else "-" for x in t.get("train_seconds")]
        for c in ("ndcg@10", "mrr@10", "map"):
            t[c] = t[c].map(lambda v: fmt(v, 4))
        cols = ["collection", "ranker", "queries", "ndcg@10", "mrr@10", "map", "train s"]
        if "units" in t:  # what the ranker read: original-text words or index tokens
            t["units"] = t["units"].map(lambda v: v if isinstance(v, str) else "index")
            cols.insert(2, "units")
        if "empty_below_95" in t:
            t["empty doc below 95% of candidates"] = t.empty_below_95.map(lambda v: f"{v:.0%} of queries"
                                                                          if v == v else "-")
            cols.append("empty doc below 95% of candidates")
        md += [md_table(t[cols]), "", "The last column: in what share of queries the empty document (every token "
               "removed by the ranker's mask) scores below at least 95% of the candidates; removing all evidence "
               "should lower the score.", ""]
    metric_order = [m for m in METRICS if not df.empty and m in set(df.metric)]
    if not df.empty:
        validity, demoted = metric_validity(df, suite.get("explainers", {}), metric_order)
        heads = {m for m in metric_order if METRICS[m].headline} - demoted
        md += diagnostics_section(rankers, suite.get("rankers", {}))
        md += anchors_section(df, suite.get("explainers", {}))
        md += validity
        md += leaderboard_section(df, [m for m in metric_order if not score_normalised(m)],
                                  gpu_suite=(Path(__file__).parents[1] / f"{suite.get('name')}_gpu.toml").exists(),
                                  exps=exps, headlines=heads)
        # the layer sweep is a study of Grad-CAM itself (its figure below), not a competitor: one of its layers
        # is the default gradcam's own, which would be compared with itself
        sweep = [n for _, n in layer_sweep(suite.get("explainers", {}))]
        compared = df[~df.explainer.isin(sweep)] if len(sweep) >= 2 else df
        compared = compared[~compared.ranker.isin(dominated_rankers(rankers))]  # no verdicts: see the diagnostics
        md += comparisons_section(compared, metric_order, heads)
        md += seed_claim_section(compared)
        if layer_sweep_figure(df, suite.get("explainers", {}), heads, figs / "gradcam_layers.png"):
            md += ["### Grad-CAM across layers", "", "The suite's Grad-CAM explainers that read different layers "
                   "(`[explainers.NAME] type = \"gradcam\"`, `layer = i`): each headline metric's query-mean per "
                   f"layer ({', '.join(f'`{n}`' for n in sweep)}; left out of the comparisons above, since the "
                   "default `gradcam` reads one of these layers itself).", "",
                   f"![Grad-CAM layers]({rel(figs / 'gradcam_layers.png')})", ""]
        md += normalised_section(df, [m for m in metric_order if score_normalised(m)])
        md += meta_evaluation_section(df, metric_order)
        md += seed_section(df, suite.get("rankers", {}), int(suite.get("seed") or 0), sorted(heads, key=metric_order.index))
        md += operator_section(df, suite.get("rankers", {}))
        md += plan_section(run_dir, shards, fin, env)
        bad = df[df.status != "ok"]
        if not bad.empty:
            n_expl = df.groupby("ranker").explainer.nunique()
            bad = (bad.groupby(["ranker", "status", "message"])
                   .agg(explainers=("explainer", lambda e: sorted(set(e))), metrics=("metric", lambda m: sorted(set(m))),
                        rows=("metric", "size")).reset_index())
            bad["explainers"] = [f"all {len(e)}" if len(e) == n_expl[r] and len(e) > 3 else ", ".join(e)
                                 for r, e in zip(bad.ranker, bad.explainers)]
            bad["metrics"] = [", ".join(m) if len(m) <= 3 else f"{len(m)} metrics" for m in bad.metrics]
            bad["message"] = bad.message.str.slice(0, 110)
            bad = bad[["ranker", "status", "message", "explainers", "metrics", "rows"]]
            md += ["## Skips and errors", "", "Recorded, never fatal: one line per distinct reason.", "",
                   md_table(bad), ""]
        cost = df.drop_duplicates(["ranker", "explainer", "qid", "docid"])
        cost = cost[cost.status.isin(["ok"]) & cost.seconds.notna() & (cost.docid != "*")]
        if not cost.empty:
            t = cost.groupby(["ranker", "explainer"]).agg(n=("seconds", "size"), median_ms=("seconds", "median"),
                                                         total_s=("seconds", "sum"), fwd=("forward_passes", "mean"),
                                                         bwd=("backward_passes", "mean"),
                                                         peak_mb=("peak_mem_mb", "max")).reset_index()
            t["median_ms"] *= 1000
            t["expl/s"] = t.n / t.total_s
            rows_of = explanation_rows(exps)
            t["rows"] = [rows_of.get((r, e), np.nan) for r, e in zip(t.ranker, t.explainer)]
            timing_figure(t, figs / "timing.png")
            show = t.copy()
            for c, nd in (("median_ms", 2), ("fwd", 1), ("rows", 0), ("bwd", 1), ("expl/s", 1), ("peak_mb", 0)):
                show[c] = show[c].map(lambda v, nd=nd: fmt(v, nd))
            md += ["## Cost per explanation", "",
                   f"Measured on `{env.get('device')}` ({env.get('device_name')}). Passes are batched model calls "
                   "counted by hooks; `peak_mb` is the largest peak of one explanation above the memory in use when "
                   "it began (`rankers.memory.PeakMemory`: on CPU the process RSS sampled every 5 ms, on a GPU "
                   "`torch.cuda.max_memory_allocated` after a reset), so it is the explainer's own memory, not the "
                   "process's.", "",
                   md_table(show[["ranker", "explainer", "n", "median_ms", "fwd", "rows", "bwd", "expl/s", "peak_mb"]]),
                   "", "`rows` = model evaluations (query-document pairs scored) per explanation, the cost that does not "
                   "depend on batching; `fwd` = batched calls.", "",
                   f"![timing]({rel(figs / 'timing.png')})", ""]
            if cost_figure(df, t, heads, figs / "faithfulness_cost.png"):
                md += ["### Faithfulness against cost", "",
                       "Each explainer's first headline metric (query-mean, oriented so higher = better) against its "
                       "model evaluations per explanation (log scale), per ranker; the line joins the Pareto front "
                       "(no other explainer is both cheaper and more faithful).", "",
                       f"![faithfulness against cost]({rel(figs / 'faithfulness_cost.png')})", ""]
        md += throughput_section(df)
        md += ig_completeness_section(df, exps)
        md += ["## Rank deletion and insertion curves", ""]
        for r in df.ranker.unique():
            p = figs / f"curves_{r}.png"
            if curve_figure(df, r, p):
                md += [f"![{r} curves]({rel(p)})", ""]
    where = heatmap_figure(exps, figs / "heatmaps.png")
    if where:
        md += ["## Grad-CAM next to exact pairs, Integrated Gradients and Occlusion", "",
               f"The same pair ({where}): Grad-CAM's query x document map, the ranker's exact pair decomposition "
               "where it has one; explainers without a pair map attribute document tokens only (one row).", "",
               f"![heatmaps]({rel(figs / 'heatmaps.png')})", ""]
    floors = sorted(run_dir.glob("floors*.json"))
    if floors:
        from .speed import floors_markdown
        md += floors_markdown([json.loads(f.read_text()) for f in floors])
    md += scaling_section(sorted(run_dir.glob("scaling*.json")))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(md) + "\n")
    return out
