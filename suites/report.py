"""`rexbench report DIR`: RESULTS.md and figures, generated from DIR alone (never edited by hand)."""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd

from metrics import METRICS

from .stats import ALPHA, kendalls_w, leaderboard, metric_agreement, separation, smallest_holm_p, underpowered
from .store import Store

GRID = np.linspace(0, 1, 21)


def _fmt(x, nd=3) -> str:
    return "n/a" if x is None or not np.isfinite(x) else f"{x:.{nd}f}"


def _table(df: pd.DataFrame) -> str:
    cols = list(df.columns)
    lines = ["| " + " | ".join(map(str, cols)) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(str(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join(lines)


def _plt():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def curve_figure(df: pd.DataFrame, ranker: str, path: Path) -> bool:
    """Mean deletion and insertion curves per explainer (interpolated on 21 points): the rank-aware
    ones (the document's standing among its query's candidates, 1 - (rank - 1) / n_others) when
    the run has them, else the score-normalised ones."""
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharey=True)
    drawn = False
    rank = bool((df[df.ranker == ranker].metric == "rank_deletion").any())
    for ax, metric in zip(axes, ("rank_deletion", "rank_insertion") if rank else ("deletion", "insertion")):
        g = df[(df.ranker == ranker) & (df.metric == metric) & (df.status == "ok") & df.curve.notna()]
        for e, ge in g.groupby("explainer"):
            ys = []
            for c, info in zip(map(json.loads, ge.curve), map(json.loads, ge["info"])):
                y = np.asarray(c["y"], dtype=float)
                ys.append(np.interp(GRID, c["x"], 1 - (y - 1) / info["n_others"] if rank else y))
            ax.plot(GRID, np.mean(ys, 0), label=f"{e} ({np.mean([np.trapezoid(y, GRID) for y in ys]):.2f})",
                    lw=2.2 if e == "gradcam" else 1.2,
                    ls="--" if e in ("random", "exact_match", "idf_match", "exact_shapley") else "-")
            drawn = True
        ax.set_title(f"{metric} on {ranker} ({'lower' if 'deletion' in metric else 'higher'} AUC is better)",
                     fontsize=10)
        ax.set_xlabel(f"fraction of document tokens {'removed' if 'deletion' in metric else 'inserted'}")
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:  # this panel has curves (a run may have one of the two metrics)
            ax.legend(fontsize=7, ncol=2)
    axes[0].set_ylabel("standing among the candidates, 1 - (rank - 1) / n_others" if rank else
                       "normalised score (s - s_empty) / (s_full - s_empty)")
    fig.tight_layout()
    if drawn:
        fig.savefig(path, dpi=110)
    plt.close(fig)
    return drawn


def timing_figure(t: pd.DataFrame, path: Path) -> None:
    plt = _plt()
    rankers = list(t.ranker.unique())
    fig, axes = plt.subplots(1, len(rankers), figsize=(4.2 * len(rankers), 4.2), squeeze=False)
    for ax, r in zip(axes[0], rankers):
        g = t[t.ranker == r].sort_values("median_ms")
        ax.barh(g.explainer, g.median_ms, color="tab:blue")
        ax.set_xscale("log")
        ax.set_title(f"{r}: median ms per explanation", fontsize=10)
        ax.tick_params(labelsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def heatmap_figure(exps: list[dict], path: Path) -> str | None:
    """Grad-CAM's pair map next to IG and occlusion on the same pair (first pair with all three)."""
    from explainers.base import Explanation
    from explainers.plot import heatmap_png
    want = ["gradcam", "integrated_gradients", "occlusion"]
    by = {}
    for e in exps:
        by.setdefault((e["ranker"], e["qid"], e["docid"]), {})[e["explainer"]] = e
    for (r, q, d), group in sorted(by.items()):
        if all(w in group for w in want):
            plt = _plt()
            fig, axes = plt.subplots(3, 1, figsize=(13, 7.5), gridspec_kw={"height_ratios": [3, 1, 1]})
            for ax, w in zip(axes, want):
                ex = Explanation.from_json(group[w])
                heatmap_png(ex, None, max_doc_tokens=50, ax=ax, title=f"{w} on {r}, query {q}, document {d}")
            fig.tight_layout()
            fig.savefig(path, dpi=110)
            plt.close(fig)
            return f"{r}, query {q}, document {d}"
    return None


def _score_normalised(metric: str) -> bool:
    return metric in ("deletion", "insertion", "comprehensiveness", "sufficiency")


def _arrow(m: str) -> str:
    return "↓" if METRICS[m].direction == "lower" else "↑"


def leaderboard_section(df: pd.DataFrame, metrics: list[str], gpu_suite: bool = False) -> list[str]:
    """Per ranker: explainer x metric, query-means with query-bootstrap CIs, verdicts, n."""
    md = ["## Leaderboards", "",
          "Each cell: the mean over queries of the query's mean over its samples, with a 95% CI from a bootstrap "
          "that resamples queries. ↓ lower is better, ↑ higher is better; **bold** = best. Versus the best, on "
          f"paired query values (Wilcoxon signed-rank, Holm over the explainers, alpha {ALPHA}): † = worse; "
          "~ = underpowered (too few queries for any difference to reach significance after Holm); no mark = not "
          "shown worse. Headline faithfulness metrics (★) are bounded, defined on every sample and unchanged by any "
          "increasing transform of the scores. n/a = not applicable (see skips below).", ""]
    for r in df.ranker.unique():
        cells: dict[str, dict[str, str]] = {}
        ns: dict[str, tuple[int, int]] = {}
        for m in metrics:
            b = leaderboard(df, r, m)
            for i, row in b.iterrows():
                s = f"{_fmt(row['mean'])} [{_fmt(row.ci_low)}, {_fmt(row.ci_high)}]"
                mark = {"worse": " †", "underpowered": " ~"}.get(row.verdict, "")
                cells.setdefault(row.explainer, {})[m] = f"**{s}**" if i == 0 else s + mark
                if METRICS[m].headline:
                    q, p = ns.get(row.explainer, (0, 0))
                    ns[row.explainer] = (max(q, int(row.queries)), max(p, int(row.pairs)))
        if not cells:
            continue
        cols = [m for m in metrics if any(m in v for v in cells.values())]
        table = pd.DataFrame([{"explainer": e, "n queries / pairs": "%d / %d" % ns.get(e, (0, 0)),
                               **{f"{m}{' ★' if METRICS[m].headline else ''} {_arrow(m)}": v.get(m, "n/a")
                                  for m in cols}} for e, v in sorted(cells.items())])
        qn = df[(df.ranker == r) & (df.docid != "*")].qid.nunique()
        pn = len(df[(df.ranker == r) & (df.docid != "*")].drop_duplicates(["qid", "docid"]))
        m_cmp = max(len(cells) - 1, 1)
        floor_p = smallest_holm_p(qn, m_cmp)
        note = (f"; **underpowered**: with {qn} queries and {m_cmp} comparisons no difference can reach p < {ALPHA} "
                "after Holm (smallest attainable adjusted p " + f"{floor_p:.2g}); more queries are needed (e.g. on a GPU"
                + (": `suites/cranfield_gpu.toml`" if gpu_suite else "") + ")" if underpowered(qn, m_cmp) else "")
        md += [f"### {r} ({qn} queries, {pn} pairs{note})", "", _table(table), ""]
    return md


def normalised_section(df: pd.DataFrame, metrics: list[str]) -> list[str]:
    """The score-normalised variants: defined counts and query-means, not ranked as headlines."""
    if not metrics:
        return []
    rows = []
    for r in df.ranker.unique():
        for m in metrics:
            g = df[(df.ranker == r) & (df.metric == m)]
            ok = g[g.status == "ok"].value.astype(float)
            if g.empty:
                continue
            rows.append({"ranker": r, "metric": f"{m} {_arrow(m)}", "defined": f"{len(ok)} / {len(g)}",
                         "min": _fmt(ok.min() if len(ok) else np.nan), "median": _fmt(ok.median() if len(ok) else
                                                                                       np.nan),
                         "max": _fmt(ok.max() if len(ok) else np.nan),
                         "outside [0, 1]": int(((ok < 0) | (ok > 1)).sum())})
    return ["## Score-normalised variants (not headlines)", "",
            "Deletion / insertion (Petsiuk et al. 2018) and ERASER comprehensiveness / sufficiency normalise by "
            "s_full - s_empty: unbounded, ill-conditioned when that span is small and undefined unless the full "
            "document outscores the empty one. Shown for comparison with the literature; conclusions rest on the "
            "rank-based headlines above.", "", _table(pd.DataFrame(rows)), ""]


#: known-good explainers to separate from random: bm25's exact Shapley shares (the ground truth), lexical match
GOOD = (("bm25", "exact_shapley"), ("bm25", "exact_match"), ("knrm", "exact_match"), ("matchpyramid", "exact_match"),
        ("crossencoder", "exact_match"), ("biencoder", "exact_match"))


def meta_evaluation_section(df: pd.DataFrame, metrics: list[str]) -> list[str]:
    """Which metrics to trust: separation of known-good from random, reliability, agreement."""
    metrics = [m for m in metrics if m not in ("explainer_agreement",)]
    pairs = [(r, g) for r, g in GOOD if r in set(df.ranker) and g in set(df[df.ranker == r].explainer)]
    md = ["## Meta-evaluation of the metrics", "",
          "In the spirit of Tomsett et al. (2020) and Kim et al. (SIGIR 2022). (a) Separation: does the metric "
          "rank a known-good explanation above the random one on paired queries? Cell: rank-biserial effect r "
          "(1 = better on every query, in the metric's direction) and Wilcoxon p, n queries; bold where p < 0.01 "
          "and r > 0. (b) Reliability: Kendall's W of the explainer ordering across queries (1 = every query "
          "orders the explainers alike). (c) Agreement: Spearman correlation between the explainer orderings of "
          "two metrics.", ""]
    rows = []
    for m in metrics:
        row = {"metric": f"{m}{' ★' if METRICS[m].headline else ''} {_arrow(m)}"}
        for r, g in pairs:
            s = separation(df, r, m, g)
            key = f"{r}: {g} vs random"
            if s is None:
                row[key] = "n/a"
                continue
            txt = f"r={s['effect']:+.2f}, p={s['p']:.1g} (n={s['queries']})"
            row[key] = f"**{txt}**" if s["p"] < 0.01 and s["effect"] > 0 else txt
        for r in df.ranker.unique():
            w = kendalls_w(df, r, m)
            row[f"W {r}"] = "n/a" if w is None else f"{w[0]:.2f}"
        rows.append(row)
    md += ["### (a) Separation and (b) reliability", "", _table(pd.DataFrame(rows)), ""]
    mats = [metric_agreement(df, r, metrics) for r in df.ranker.unique()]
    mats = [x for x in mats if not x.empty]
    if mats:
        names = sorted(set().union(*[set(x.index) for x in mats]), key=metrics.index)
        avg = pd.DataFrame({b: [np.nanmean([x.loc[a, b] for x in mats if a in x.index and b in x.columns] or
                                           [np.nan]) for a in names] for b in names}, index=names)
        t = avg.map(lambda v: _fmt(v, 2)).reset_index().rename(columns={"index": "metric"})
        md += ["### (c) Agreement between metrics", "",
               f"Spearman correlation of explainer orderings (query-means, oriented so higher = better), averaged "
               f"over the {len(mats)} rankers.", "", _table(t), ""]
    return md


def operator_section(df: pd.DataFrame, suite_rankers: dict) -> list[str]:
    """How much the explainer ranking changes with the removal operator (ROAD, Rong et al. 2022): for
    suite rankers of one type whose tables differ only in `removal`, per headline metric, Kendall tau
    between the explainer orderings (query-means) and the best explainer under each operator."""
    from scipy.stats import kendalltau

    from .stats import explainer_means, query_values

    def key(t):
        return (t.get("type"), {k: v for k, v in t.items() if k not in ("removal", "type", "explainers", "metrics")})

    names = [r for r in suite_rankers if r in set(df.ranker)]
    pairs = [(a, b) for i, a in enumerate(names) for b in names[i + 1:]
             if key({"type": a, **suite_rankers[a]}) == key({"type": b, **suite_rankers[b]})
             and suite_rankers[a].get("removal", "pad") != suite_rankers[b].get("removal", "pad")]
    if not pairs:
        return []
    qv = query_values(df)
    rows = []
    for a, b in pairs:
        for m in [m for m in METRICS if METRICS[m].headline and m in set(df.metric)]:
            ma, mb = explainer_means(qv, a, m), explainer_means(qv, b, m)
            common = ma.index.intersection(mb.index)
            if len(common) < 3:
                continue
            tau = kendalltau(ma[common], mb[common]).statistic
            rows.append({"rankers": f"{a} ({suite_rankers[a].get('removal', 'pad')}) vs {b} "
                                    f"({suite_rankers[b].get('removal', 'pad')})",
                         "metric": f"{m} {_arrow(m)}", "explainers": len(common), "Kendall tau": _fmt(tau, 2),
                         "best, first operator": ma[common].idxmax(), "best, second operator": mb[common].idxmax()})
    if not rows:
        return []
    return ["## Removal operators", "",
            "The same ranker under two removal operators (ROAD, Rong et al. 2022): Kendall tau between the "
            "explainer orderings (query-means) of each headline metric; 1 = the operator does not change the "
            "ranking of the explainers.", "", _table(pd.DataFrame(rows)), ""]


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
        rows.append({"ranker": r, "explanations": len(g), "explanations/s": _fmt(len(g) / g.seconds.sum(), 1),
                     "metric evaluations": int(ok_rows.get(r, 0)),
                     "metric evaluations/s": _fmt(ok_rows.get(r, 0) / np.nansum(g.metric_s), 1)})
    return ["## Suite throughput", "",
            "All explainers pooled: explanations per second of attribution time, and metric values per second "
            "of metric time (each metric evaluation is one row; batched perturbation metrics share model calls).",
            "", _table(pd.DataFrame(rows)), ""]


def ig_completeness_section(df: pd.DataFrame, exps: list[dict]) -> list[str]:
    """|sum(IG attributions) - (s_full - s_empty)| from the stored explanations and deletion curves."""
    dele = df[(df.metric == "deletion") & (df.explainer == "integrated_gradients") & (df.status == "ok")]
    if dele.empty:
        return []
    ends = {(r.ranker, r.qid, r.docid): json.loads(r.info) for r in dele.itertuples()}
    rows = {}
    for e in exps:
        k = (e["ranker"], e["qid"], e["docid"])
        if e["explainer"] == "integrated_gradients" and k in ends:
            span = ends[k]["s_full"] - ends[k]["s_empty"]
            rows.setdefault(e["ranker"], []).append((abs(sum(e["doc_scores"]) - span), abs(span)))
    if not rows:
        return []
    t = pd.DataFrame([{"ranker": r, "pairs": len(v), "median |delta|": f"{np.median([d for d, _ in v]):.2e}",
                       "max |delta|": f"{max(d for d, _ in v):.2e}",
                       "median |delta| / |s_full - s_empty|": f"{np.median([d / max(s, 1e-12) for d, s in v]):.2e}"}
                      for r, v in rows.items()])
    return ["## Integrated Gradients completeness", "",
            "IG over the token mask from the empty document: the attributions should sum to s_full - s_empty.",
            "", _table(t), ""]


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
                   _table(pd.DataFrame(rows)), ""]
    return md


def _duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.0f} min" if seconds < 7200 else \
        f"{seconds / 3600:.1f} h"


def shard_scaling(name: str, data: dict, workers: tuple[int, ...] = (1, 2, 8, 32)) -> list[str]:
    """Measured seconds per shard and explanations/s per worker of a (partial) run (`suites.scaling`), and
    the whole suite's wall time projected from them for several worker counts."""
    rows, total = [], 0.0
    for r, d in data.get("rankers", {}).items():
        sec = float(np.mean(d["seconds"]))
        planned = d.get("planned_queries") or d["shards"]
        total += planned * sec
        rows.append({"ranker": r, "shards measured": d["shards"], "seconds per shard": f"{sec:.0f}",
                     "explanations/s per worker": f"{d['explanations'] / sum(d['seconds']):.3g}",
                     "queries in the suite": planned,
                     **{f"projected, {w} worker{'s' * (w > 1)}": _duration(planned * sec / w) for w in workers}})
    if not rows:
        return []
    missing = data.get("unmeasured") or []
    rows.append({"ranker": "**measured rankers**" if missing else "**all**",
                 "shards measured": sum(d["shards"] for d in data["rankers"].values()),
                 "seconds per shard": "", "explanations/s per worker": "", "queries in the suite": "",
                 **{f"projected, {w} worker{'s' * (w > 1)}": _duration(total / w) for w in workers}})
    wall = data.get("wall_seconds")
    return [f"## Scaling ({name})", "",
            f"Shard timings of suite `{data.get('suite')}` ({data.get('suite_path')}) measured on `{data.get('device')}` "
            f"({data.get('device_name')}) with {data.get('workers')} worker(s), each shard on one worker; the run "
            f"{'finished' if data.get('complete') else 'was stopped (partial: the shards recorded)'} after "
            f"{_duration(wall) if wall else '?'} of wall time. The projected columns are not measured: queries in "
            "the suite x seconds per shard / workers, assuming workers as fast as these and no start-up."
            + (f" Rankers of the suite without a finished shard (not in the projection): {', '.join(missing)}."
               if missing else ""), "",
            _table(pd.DataFrame(rows)), ""]


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

    from .rundir import copy_database
    with tempfile.TemporaryDirectory(prefix="rexbench-report-") as tmp:
        src = db if os.access(run_dir, os.W_OK | os.X_OK) else copy_database(db, Path(tmp))
        store = Store(src, readonly=src == db)
        try:
            return store.meta(), store.results(), store.rankers(), store.explanations()
        finally:
            store.close()


def write_report(run_dir: str | Path, out: str | Path | None = None) -> Path:
    run_dir = Path(run_dir)
    db = run_dir / "results.sqlite"
    if not db.exists():
        from rankers.errors import BadInput
        raise BadInput(f"{run_dir} holds no results.sqlite (run `rexbench run SUITE.toml --out {run_dir}` first)")
    from rankers.errors import BadInput

    from .rundir import LOCK, check_database
    check_database(db)  # a damaged database is a BadInput (checked on a copy: neither it nor its WAL is touched)
    out = Path(out) if out else run_dir / "RESULTS.md"
    if out.is_dir():
        raise BadInput(f"cannot write the report: {out} is a directory")
    if not os.access(out.parent if out.parent.exists() else Path.cwd(), os.W_OK | os.X_OK):
        raise BadInput(f"cannot write the report: {out.parent} is not a writable directory")
    live = _live_writer(run_dir / LOCK)
    meta, df, rankers, exps = _read_run(run_dir, db)
    # figures beside the run (the committed layout); beside the report when the run directory is read-only
    figs = run_dir / "figures" if os.access(run_dir, os.W_OK | os.X_OK) else out.parent / "figures"
    figs.mkdir(parents=True, exist_ok=True)
    rel = lambda p: os.path.relpath(p, out.parent)  # noqa: E731
    suite, env, fin = meta.get("suite", {}), meta.get("environment", {}), meta.get("finished", {})
    md = ["# rexbench results", "",
          f"Generated by `rexbench report {run_dir}` from `{run_dir}/results.sqlite`; do not edit by hand.", "",
          "## What was run", "",
          f"- suite: `{suite.get('name')}` ({suite.get('path')}): {suite.get('description', '')}",
          f"- collection: `{suite.get('collection')}`, split `{suite.get('split')}`, samples per query: the ranker's "
          f"top {suite.get('samples', {}).get('top_k')} plus up to {suite.get('samples', {}).get('relevant')} judged "
          f"relevant, over {df.qid.nunique() if not df.empty else 0} queries; seed {suite.get('seed')}",
          f"- device: `{env.get('device')}` ({env.get('device_name')})" + _batch_text(rankers),
          "- versions: " + ", ".join(f"{k} {v}" for k, v in env.get("versions", {}).items()),
          f"- started {env.get('started')}, finished {fin.get('finished')}, wall time "
          f"{_fmt(fin.get('wall_seconds'), 1)} s (including training any ranker not yet cached"
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
        t["train s"] = [_fmt(x, 1) if x is not None and not pd.isna(x) else "-" for x in t.get("train_seconds")]
        for c in ("ndcg@10", "mrr@10", "map"):
            t[c] = t[c].map(lambda v: _fmt(v, 4))
        cols = ["collection", "ranker", "queries", "ndcg@10", "mrr@10", "map", "train s"]
        if "units" in t:  # what the ranker read: original-text words or index tokens
            t["units"] = t["units"].map(lambda v: v if isinstance(v, str) else "index")
            cols.insert(2, "units")
        if "empty_below_95" in t:
            t["empty doc below 95% of candidates"] = t.empty_below_95.map(lambda v: f"{v:.0%} of queries"
                                                                          if v == v else "-")
            cols.append("empty doc below 95% of candidates")
        md += [_table(t[cols]), "", "The last column: in what share of queries the empty document (every token "
               "removed by the ranker's mask) scores below at least 95% of the candidates; removing all evidence "
               "should lower the score.", ""]
    metric_order = [m for m in METRICS if not df.empty and m in set(df.metric)]
    if not df.empty:
        md += leaderboard_section(df, [m for m in metric_order if not _score_normalised(m)],
                                  gpu_suite=(Path(__file__).parent / f"{suite.get('name')}_gpu.toml").exists())
        md += normalised_section(df, [m for m in metric_order if _score_normalised(m)])
        md += meta_evaluation_section(df, metric_order)
        md += operator_section(df, suite.get("rankers", {}))
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
                   _table(bad), ""]
        cost = df.drop_duplicates(["ranker", "explainer", "qid", "docid"])
        cost = cost[cost.status.isin(["ok"]) & cost.seconds.notna() & (cost.docid != "*")]
        if not cost.empty:
            t = cost.groupby(["ranker", "explainer"]).agg(n=("seconds", "size"), median_ms=("seconds", "median"),
                                                         total_s=("seconds", "sum"), fwd=("forward_passes", "mean"),
                                                         bwd=("backward_passes", "mean"),
                                                         peak_mb=("peak_mem_mb", "max")).reset_index()
            t["median_ms"] *= 1000
            t["expl/s"] = t.n / t.total_s
            timing_figure(t, figs / "timing.png")
            show = t.copy()
            for c, nd in (("median_ms", 2), ("fwd", 1), ("bwd", 1), ("expl/s", 1), ("peak_mb", 0)):
                show[c] = show[c].map(lambda v, nd=nd: _fmt(v, nd))
            md += ["## Cost per explanation", "",
                   f"Measured on `{env.get('device')}` ({env.get('device_name')}). Passes are batched model calls "
                   "counted by hooks; peak memory is the process peak RSS on CPU, `torch.cuda.max_memory_allocated` "
                   "on a GPU.", "",
                   _table(show[["ranker", "explainer", "n", "median_ms", "fwd", "bwd", "expl/s", "peak_mb"]]), "",
                   f"![timing]({rel(figs / 'timing.png')})", ""]
        md += throughput_section(df)
        md += ig_completeness_section(df, exps)
        md += ["## Rank deletion and insertion curves", ""]
        for r in df.ranker.unique():
            p = figs / f"curves_{r}.png"
            if curve_figure(df, r, p):
                md += [f"![{r} curves]({rel(p)})", ""]
    where = heatmap_figure(exps, figs / "heatmaps.png")
    if where:
        md += ["## Grad-CAM next to Integrated Gradients and Occlusion", "",
               f"The same pair ({where}): Grad-CAM's query x document map; IG and occlusion attribute document "
               "tokens only (one row).", "", f"![heatmaps]({rel(figs / 'heatmaps.png')})", ""]
    floors = sorted(run_dir.glob("floors*.json"))
    if floors:
        from .speed import floors_markdown
        md += floors_markdown([json.loads(f.read_text()) for f in floors])
    md += scaling_section(sorted(run_dir.glob("scaling*.json")))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(md) + "\n")
    return out
