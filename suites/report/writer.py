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
from ..stats import row_info
from .answer import first_screen
from .claim import seed_claim_section
from .common import explanation_rows, fmt
from .cost import plan_section, scaling_section, throughput_section
from .diagnostics import anchors_section, diagnostics_section
from .effectiveness import effectiveness_section
from .evidence import gather
from .figures import cost_figure, curve_figure, heatmap_figure, layer_sweep_figure, timing_figure
from .markup import md_inline
from .operators import operator_section
from .pages import PAGES_DIR, cost_figure_table, write_pages
from .seed_section import seed_section
from .validity import ig_completeness_section, validity_summary


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


def _cut_lines(df: pd.DataFrame) -> list[str]:
    """'- documents cut ...' / '- queries cut ...': per ranker, the share of its explained pairs whose document
    (`truncated`) or query (`info.query_truncated`) was cut to the ranker's length; nothing when none was."""
    if df.empty:
        return []
    ok = df[(df.status == "ok") & (df.docid != "*")]
    if ok.empty:  # every explainer failed: nothing was explained, so nothing was read cut
        return []
    pairs = ok.drop_duplicates(["ranker", "qid", "docid"]).groupby("ranker").size()
    out = []
    query_cut = ok["info"].map(lambda i: bool(row_info(i).get("query_truncated")))
    for what, mask, limit in (("documents", ok.truncated.fillna(0).astype(int) > 0, "max_length / max_doc_len"),
                              ("queries", query_cut, "max_query_len")):
        cut = ok[mask].drop_duplicates(["ranker", "qid", "docid"]).groupby("ranker").size()
        shares = [f"{r} {n / pairs[r]:.0%} of {pairs[r]}" for r, n in cut.items() if n]
        if shares:
            out.append(f"- {what} cut to the ranker's length ({limit}), share of explained pairs: "
                       + ", ".join(shares) + " (words past the cut cannot move the score: no explainer credits "
                       "them and removing them changes nothing, so on such pairs the curves read the kept words)")
    return out


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


def _body(eff: list[str], run_dir: Path, out: Path, figs: Path, rel, meta: dict, df: pd.DataFrame,
          rankers: pd.DataFrame, exps: list, shards: pd.DataFrame, env: dict, fin: dict
          ) -> tuple[list[str], list[str], dict[str, Path]]:
    """(the first screen, RESULTS.md from the effectiveness table on), and the ranker pages beside the run (beside
    the report when the run directory is read-only)."""
    ev = gather(meta, df, rankers, exps)
    suite = ev.suite
    pages_dir = (run_dir if figs.parent == run_dir else out.parent) / PAGES_DIR
    paths = {r: pages_dir / f"{r}.md" for r in ev.explained}
    pages = {r: rel(p) for r, p in paths.items()}
    md = eff
    md += diagnostics_section(rankers, suite.get("rankers", {}))
    md += anchors_section(df, ev.suite_explainers, exps)
    md += validity_summary(ev.validity, ev.explained, [m for m in ev.metric_order if METRICS[m].headline])
    md += seed_claim_section(ev, pages)
    if layer_sweep_figure(df, ev.suite_explainers, set(ev.headlines), figs / "gradcam_layers.png"):
        md += ["## Grad-CAM across layers", "", "The suite's Grad-CAM explainers that read different layers "
               "(`[explainers.NAME] type = \"gradcam\"`, `layer = i`): each headline metric's query-mean per "
               f"layer ({', '.join(f'`{n}`' for n in ev.sweep)}; a study of Grad-CAM, left out of the comparisons, "
               "since the default `gradcam` reads one of these layers itself).", "",
               f"![Grad-CAM layers]({rel(figs / 'gradcam_layers.png')})", ""]
    md += operator_section(ev.df, suite.get("rankers", {}), ev.headlines)
    md += seed_section(ev)
    md += plan_section(run_dir, shards, fin, env)
    t = cost_figure_table(ev)
    if not t.empty:
        rows_of = explanation_rows(exps)
        t["rows"] = [rows_of.get((r, e), np.nan) for r, e in zip(t.ranker, t.explainer)]
        timing_figure(t, figs / "timing.png")
        md += ["## Cost", "", f"Per ranker and explainer, measured on `{env.get('device')}` "
               f"({env.get('device_name')}); the tables, with batched calls, model evaluations and peak memory, are "
               "on the ranker pages.", "", f"![timing]({rel(figs / 'timing.png')})", ""]
        if cost_figure(df, t, set(ev.headlines), figs / "faithfulness_cost.png"):
            md += ["### Faithfulness against cost", "",
                   "Each explainer's first headline metric (query-mean, oriented so higher = better) against its "
                   "model evaluations per explanation (log scale), per ranker; the line joins the Pareto front "
                   "(no other explainer is both cheaper and more faithful).", "",
                   f"![faithfulness against cost]({rel(figs / 'faithfulness_cost.png')})", ""]
    md += throughput_section(df)
    md += ig_completeness_section(df, exps)
    for r in ev.explained:
        curve_figure(df, r, figs / f"curves_{r}.png")
    write_pages(ev, pages_dir, out, figs)
    md += ["## Ranker pages", "", "Full leaderboards, comparisons (primary and exploratory), metric validity, "
           "meta-evaluation, skips and errors, costs and curves, per ranker:", "",
           *[f"- [{r}]({pages[r]})" + (f" (⚠ {ev.flags[r]})" if r in ev.flags else "") for r in ev.explained], ""]
    return first_screen(ev, pages), md, paths


def write_report(run_dir: str | Path, out: str | Path | None = None, html: str | Path | None = None) -> Path:
    """Write RESULTS.md (default `run_dir/RESULTS.md`), the ranker pages and the figures from the run's database,
    or from its packed copy on a clean clone (`rundir.run_database`: checked either way, a damaged one is a
    BadInput); with `html`, also the static site there (`site.write_site`)."""
    from rankers.errors import BadInput

    from ..run.rundir import run_database
    run_dir = Path(run_dir)
    if html is not None and Path(html).exists() and not Path(html).is_dir():
        raise BadInput(f"--html {html} is a file; give a directory for the site")
    with run_database(run_dir, "report") as db:
        return _write_report(run_dir, out, db, Path(html) if html is not None else None)


def _write_report(run_dir: Path, out, db: Path, html: Path | None = None) -> Path:
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
          *_cut_lines(df),
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
    eff = effectiveness_section(rankers)
    paths: dict[str, Path] = {}
    if df.empty:
        md += eff
    else:
        first, rest, paths = _body(eff, run_dir, out, figs, rel, meta, df, rankers, exps, shards, env, fin)
        at = md.index("## What was run")  # the answer first; what was run follows it
        md[at:at] = first
        md += rest
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
    if html is not None:
        from .site import write_site
        try:
            write_site(html, out, paths, exps)
        except OSError as e:
            raise BadInput(f"cannot write the site in {html} ({e.strerror or e})") from None
    return out
