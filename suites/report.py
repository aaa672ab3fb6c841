"""`rexbench report DIR`: RESULTS.md and figures, generated from DIR alone (never edited by hand)."""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd

from metrics import METRICS

from .stats import (ALPHA, MIN_DIFF_SHARE, MIN_DIFF_UNBOUNDED, compare_to, kendalls_w, leaderboard, metric_agreement,
                    query_values, separation, smallest_holm_p, underpowered)
from .markup import md_cell, md_inline
from .store import Store

GRID = np.linspace(0, 1, 21)


def _fmt(x, nd=3) -> str:
    return "n/a" if x is None or not np.isfinite(x) else f"{x:.{nd}f}"


def _table(df: pd.DataFrame) -> str:
    cols = list(df.columns)
    lines = ["| " + " | ".join(map(md_cell, cols)) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(md_cell(v) for v in row) + " |" for row in df.itertuples(index=False)]
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


#: interaction rankers first: a query x document map is the seed's output only where the ranker has one
_HEATMAP_RANKERS = ("late_interaction", "knrm", "matchpyramid")


def heatmap_figure(exps: list[dict], path: Path) -> str | None:
    """Grad-CAM's pair map next to exact pairs (where the ranker has them), IG and occlusion on one pair of an
    interaction ranker (late interaction, else KNRM, else MatchPyramid; any ranker as a last resort)."""
    from explainers.base import Explanation
    from explainers.plot import heatmap_png
    by = {}
    for e in exps:
        by.setdefault((e["ranker"], e["qid"], e["docid"]), {})[e["explainer"]] = e
    prefer = {r: i for i, r in enumerate(_HEATMAP_RANKERS)}
    for (r, q, d), group in sorted(by.items(), key=lambda kv: (prefer.get(kv[0][0], len(prefer)), kv[0])):
        want = [w for w in ("gradcam", "exact_pairs", "integrated_gradients", "occlusion") if w in group]
        if "gradcam" not in want or len(want) < 3:
            continue
        plt = _plt()
        fig, axes = plt.subplots(len(want), 1, figsize=(13, 2.6 * len(want)))
        for ax, w in zip(axes, want):
            ex = Explanation.from_json(group[w])
            heatmap_png(ex, None, max_doc_tokens=50, ax=ax, title=f"{w} on {r}, query {q}, document {d}")
        fig.tight_layout()
        fig.savefig(path, dpi=110)
        plt.close(fig)
        return f"{r}, query {q}, document {d}: {', '.join(want)}"
    return None


#: the rankers whose interaction layer the seed's Grad-CAM reads, and the metrics of its claim
SEED_RANKERS = ("knrm", "matchpyramid", "late_interaction")
SEED_METRICS = ("pair_deletion", "pair_insertion", "rank_deletion", "rank_insertion", "snippet_sufficiency",
                "query_deletion")


def layer_sweep(suite_explainers: dict) -> list[tuple[int, str]]:
    """[(layer, suite explainer name)] of the suite's Grad-CAM explainers that name an integer `layer`."""
    out = []
    for name, t in suite_explainers.items():
        if (t.get("type") or name) == "gradcam" and isinstance(t.get("layer"), int) and not isinstance(
                t.get("layer"), bool):
            out.append((int(t["layer"]), name))
    return sorted(out)


def layer_sweep_figure(df: pd.DataFrame, suite_explainers: dict, heads: set[str], path: Path) -> bool:
    """Grad-CAM's headline values (query-means) against the layer it reads, one line per (ranker, metric)."""
    sweep = layer_sweep(suite_explainers)
    if len(sweep) < 2:
        return False
    names = {n: layer for layer, n in sweep}
    sub = df[df.explainer.isin(names) & df.metric.isin(heads) & (df.docid != "*")]
    qv = query_values(sub)
    if qv.empty:
        return False
    means = qv.groupby(["ranker", "metric", "explainer"]).value.mean().reset_index()
    means["layer"] = means.explainer.map(names)
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 3.6))
    for (r, m), g in means.groupby(["ranker", "metric"]):
        g = g.sort_values("layer")
        ax.plot(g.layer, g.value, marker="o", label=f"{r} {m} {_arrow(m)}")
    ax.set_xlabel("layer Grad-CAM reads")
    ax.set_ylabel("query-mean")
    ax.legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def seed_claim_section(df: pd.DataFrame) -> list[str]:
    """The seed's claim (Grad-CAM on interaction layers; snippets and query-term importance) on its own rankers:
    every Grad-CAM variant and competitor against Grad-CAM at pair, term, snippet and query level, and a
    paragraph counting what the paired comparisons support."""
    rankers = [r for r in SEED_RANKERS if r in set(df.ranker)]
    metrics = [m for m in SEED_METRICS if m in set(df.metric)]
    if not rankers or not metrics or "gradcam" not in set(df.explainer):
        return []
    md = ["## The seed's claim", "",
          "Choi, Choi & Rhee (2020) explain interaction rankers with Grad-CAM's query x document map and use it "
          "for snippets and query-term importance. Here each explainer against Grad-CAM (ReLU, channel-mean "
          "weights: the seed's) on the seed's rankers, at pair level (pair_deletion / pair_insertion), term "
          "level (rank_deletion / rank_insertion), snippet level (snippet_sufficiency) and query level "
          "(query_deletion); cells as in \"Comparisons that matter\" (+ = better than Grad-CAM).", ""]
    compared: dict[tuple[str, str], pd.DataFrame] = {}
    for r in rankers:
        md += comparison_table(df, r, metrics, "gradcam", compared)
    tally = pd.concat(compared.values()).verdict.value_counts().to_dict() if compared else {}
    total = sum(tally.values())
    if total:
        parts = ", ".join(f"{tally.get(v, 0)} {v}" for v in ("better", "worse", "negligible", "not shown different",
                                                              "underpowered"))
        md += [f"What the evidence supports: of {total} (ranker, metric, explainer) comparisons with Grad-CAM, "
               f"{parts} (better = the explainer beats Grad-CAM by at least the minimum meaningful difference "
               "after Holm). A claim that Grad-CAM is the most faithful explanation of these rankers holds only "
               "where no explainer is better." + _seed_claim_detail(compared, rankers), ""]
    return md


def _seed_claim_detail(compared: dict[tuple[str, str], pd.DataFrame], rankers: list[str]) -> str:
    """Per ranker and seed's-use metric (pair map, snippet, query terms): which explainers beat Grad-CAM and
    how many it beats, from the section's paired comparisons (`compared`: (ranker, metric) -> compare_to)."""
    out = []
    for r in rankers:
        parts = []
        for m in ("pair_deletion", "snippet_sufficiency", "query_deletion"):
            c = compared.get((r, m))
            if c is None:
                continue
            better = sorted(c[c.verdict == "better"].explainer)
            worse = int((c.verdict == "worse").sum())
            parts.append(f"{m}: {len(better)} of {len(c)} better than Grad-CAM"
                         + (f" ({', '.join(better)})" if better else "") + f", {worse} worse")
        if parts:
            out.append(f"{r}: " + "; ".join(parts))
    return (" Per ranker, at the seed's own granularity and uses: " + ". ".join(out) + ".") if out else ""


def explanation_rows(exps: list[dict]) -> dict[tuple[str, str], float]:
    """(ranker, explainer) -> mean model evaluations (pairs scored) per explanation, where recorded."""
    acc: dict[tuple[str, str], list[float]] = {}
    for e in exps:
        if e.get("forward_rows") is not None:
            acc.setdefault((e["ranker"], e["explainer"]), []).append(float(e["forward_rows"]))
    return {k: float(np.mean(v)) for k, v in acc.items()}


def cost_figure(df: pd.DataFrame, cost: pd.DataFrame, heads: set[str], path: Path) -> bool:
    """Per ranker: the first headline metric's query-mean (higher = better) against rows per explanation."""
    from .stats import orientation
    metric = next((m for m in METRICS if m in heads and m in set(df.metric)), None)
    if metric is None or "rows" not in cost or cost.rows.isna().all():
        return False
    qv = query_values(df[(df.metric == metric) & (df.docid != "*")])
    means = qv.groupby(["ranker", "explainer"]).value.mean() * orientation(metric)
    rankers = [r for r in cost.ranker.unique() if r in means.index.get_level_values(0)]
    if not rankers:
        return False
    plt = _plt()
    fig, axes = plt.subplots(1, len(rankers), figsize=(4.2 * len(rankers), 3.6), squeeze=False)
    for ax, r in zip(axes[0], rankers):
        c = cost[(cost.ranker == r) & cost.rows.notna()]
        pts = [(max(float(x), 1.0), float(means[(r, e)]), e) for x, e in zip(c.rows, c.explainer) if (r, e) in means]
        if not pts:
            continue
        ax.scatter([p[0] for p in pts], [p[1] for p in pts], s=18)
        for x, y, e in pts:
            ax.annotate(e, (x, y), fontsize=6, xytext=(2, 2), textcoords="offset points")
        front, best = [], -np.inf
        for x, y, _ in sorted(pts):
            if y > best:
                front.append((x, y))
                best = y
        ax.plot([p[0] for p in front], [p[1] for p in front], lw=1)
        ax.set_xscale("log")
        ax.set_title(r, fontsize=9)
        ax.set_xlabel("model evaluations per explanation")
        ax.set_ylabel(f"{metric} ({'higher' if orientation(metric) > 0 else 'lower, negated'})", fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def _score_normalised(metric: str) -> bool:
    return metric in ("deletion", "insertion", "comprehensiveness", "sufficiency")


def _arrow(m: str) -> str:
    return "↓" if METRICS[m].direction == "lower" else "↑"


def degenerate_shares(exps: list[dict]) -> dict[tuple[str, str], tuple[int, int]]:
    """(ranker, explainer) -> (constant explanations, explanations): a constant explanation orders no token,
    so every curve it gets is a tie order, not the explainer's view."""
    out: dict[tuple[str, str], list[int]] = {}
    for e in exps:
        s = e.get("doc_scores")
        if s is None:
            continue
        c = out.setdefault((e["ranker"], e["explainer"]), [0, 0])
        c[0] += int(len(s) > 1 and float(np.ptp(np.asarray(s, dtype=float))) == 0.0)
        c[1] += 1
    return {k: (v[0], v[1]) for k, v in out.items()}


def _metric_label(m: str, ranker: str) -> str:
    """groundtruth_spearman is ground truth on bm25 only; elsewhere it is agreement with BM25."""
    if m == "groundtruth_spearman" and ranker != "bm25":
        return "bm25_agreement"
    return m


def _sanity_cell(df: pd.DataFrame, ranker: str, explainer: str) -> str | None:
    """sanity_randomization as a verdict: mean |rho| after randomisation against the mean self-consistency
    ceiling (the same model under two explainer seeds); pass when |rho| <= SANITY_PASS x ceiling."""
    from metrics.robustness import SANITY_PASS, sanity_passes
    g = df[(df.ranker == ranker) & (df.explainer == explainer) & (df.metric == "sanity_randomization")
           & (df.status == "ok")]
    if g.empty:
        return None
    ceil = [json.loads(i).get("ceiling") if isinstance(i, str) and i else None for i in g["info"]]
    ceil = [c for c in ceil if c is not None]
    if not ceil:
        return None
    rho, top = float(g.value.astype(float).mean()), float(np.mean(ceil))
    verdict = "pass" if sanity_passes(rho, top) else "fail"
    return f"{verdict} (\\|rho\\| {_fmt(rho, 2)} vs ceiling {_fmt(top, 2)}; pass <= {SANITY_PASS:g} x ceiling)"


def leaderboard_section(df: pd.DataFrame, metrics: list[str], gpu_suite: bool = False,
                        exps: list[dict] | None = None, headlines: set[str] | None = None) -> list[str]:
    """Per ranker: explainer x metric, query-means with query-bootstrap CIs, n, constant-explanation share."""
    md = ["## Leaderboards", "",
          "Each cell: the mean over queries of the query's mean over its samples, with a 95% CI from a bootstrap "
          "that resamples queries. ↓ lower is better, ↑ higher is better. Rows are ordered by the first headline "
          "metric's mean where the ranker has enough queries for a difference to reach significance; on an "
          "underpowered ranker they are alphabetical and nothing is ranked. No cell is marked best: which "
          "differences hold, and how large they are, is in \"Comparisons that matter\" below. Headline "
          "faithfulness metrics (★) are rank-based, so unchanged by any increasing transform of the scores and "
          "comparable across rankers: the standing AUCs are bounded and defined on every sample; the gains are "
          "anchored (0 = random, 1 = the search oracle) and skip only a pair on which every order gives the same "
          "standing. `bm25_agreement` is groundtruth_spearman outside bm25: agreement "
          "with BM25's exact shares, not ground truth. sanity_randomization is a pass/fail check against its "
          "self-consistency ceiling, not a score. \"constant\" = share of the explainer's explanations that give "
          "every token the same score (their curves are tie orders). n/a = not applicable (see skips below).", ""]
    degenerate = degenerate_shares(exps or [])
    heads = {m for m in metrics if METRICS[m].headline} if headlines is None else set(headlines)
    for r in df.ranker.unique():
        cells: dict[str, dict[str, str]] = {}
        ns: dict[str, tuple[int, int]] = {}
        order: list[str] = []
        for m in metrics:
            b = leaderboard(df, r, m)
            if b.empty:
                continue
            if not order and m in heads:
                order = list(b.explainer)
            for _, row in b.iterrows():
                if m == "sanity_randomization":
                    s = _sanity_cell(df, r, row.explainer) or f"{_fmt(row['mean'])} (no ceiling recorded)"
                else:
                    s = f"{_fmt(row['mean'])} [{_fmt(row.ci_low)}, {_fmt(row.ci_high)}]"
                cells.setdefault(row.explainer, {})[m] = s
                if m in heads or not heads:
                    q, p = ns.get(row.explainer, (0, 0))
                    ns[row.explainer] = (max(q, int(row.queries)), max(p, int(row.pairs)))
        if not cells:
            continue
        qn = df[(df.ranker == r) & (df.docid != "*")].qid.nunique()
        pn = len(df[(df.ranker == r) & (df.docid != "*")].drop_duplicates(["qid", "docid"]))
        m_cmp = max(len(cells) - 1, 1)
        weak = underpowered(qn, m_cmp)
        names = sorted(cells) if weak or not order else order + sorted(set(cells) - set(order))
        cols = [m for m in metrics if any(m in v for v in cells.values())]
        rows = []
        for e in names:
            c, n = degenerate.get((r, e), (0, 0))
            rows.append({"explainer": e, "n queries / pairs": "%d / %d" % ns.get(e, (0, 0)),
                         "constant": f"{c / n:.0%}" if n else "-",
                         **{f"{_metric_label(m, r)}{' ★' if m in heads else ''} {_arrow(m)}":
                            cells[e].get(m, "n/a") for m in cols}})
        floor_p = smallest_holm_p(qn, m_cmp)
        note = (f"; **underpowered, not ranked**: with {qn} queries and {m_cmp} comparisons no difference can "
                f"reach p < {ALPHA} after Holm (smallest attainable adjusted p {floor_p:.2g}); more queries are "
                "needed (e.g. on a GPU" + (": `suites/cranfield_gpu.toml`" if gpu_suite else "") + ")" if weak else "")
        md += [f"### {r} ({qn} queries, {pn} pairs{note})", "", _table(pd.DataFrame(rows)), ""]
    return md


def corruption_ladders(suite_explainers: dict) -> dict[str, list[tuple[float, str]]]:
    """base explainer -> [(fraction, suite explainer name)] from the suite's `corrupted` explainers, with the
    base itself at fraction 0 where the suite runs it."""
    ladders: dict[str, list[tuple[float, str]]] = {}
    for name, t in suite_explainers.items():
        if (t.get("type") or name) == "corrupted":
            ladders.setdefault(t.get("base", "greedy"), []).append((float(t.get("fraction", 0.5)), name))
    for base, steps in ladders.items():
        if base in suite_explainers and not any(f == 0 for f, _ in steps):
            steps.append((0.0, base))
        steps.sort()
    return {b: s for b, s in ladders.items() if len(s) >= 2}


def metric_validity(df: pd.DataFrame, suite_explainers: dict, metrics: list[str]) -> tuple[list[str], set[str]]:
    """The corruption test (a reference explanation shuffled on a growing share of tokens) for every declared
    headline metric on every ranker where a ladder ran: the oriented query-means must not rise with the
    fraction (tolerance a quarter of the metric's minimum meaningful difference) and the reference must beat
    its fully corrupted version on paired queries (rank-biserial r > 0, Wilcoxon p < alpha). Returns the
    section and the metrics demoted from headline (failed somewhere)."""
    from .stats import min_meaningful_difference, orientation, paired_test, rank_biserial, wide_queries
    ladders = corruption_ladders(suite_explainers)
    heads = [m for m in metrics if METRICS[m].headline]
    if not ladders or df.empty:
        return [], set()
    rows, demoted = [], set()
    for base, steps in ladders.items():
        for r in df.ranker.unique():
            for m in heads:
                wide = wide_queries(df, r, m)
                names = [n for _, n in steps if n in wide]
                if len(names) < 2:
                    continue
                both = wide[names].dropna()
                if len(both) < 2:
                    continue
                fr = [f for f, n in steps if n in names]
                means = [orientation(m) * float(both[n].mean()) for n in names]
                tol = 0.25 * min_meaningful_difference(m)
                mono = all(b <= a + tol for a, b in zip(means, means[1:]))
                d = orientation(m) * (both[names[0]] - both[names[-1]]).to_numpy()
                eff, p = rank_biserial(d), paired_test(both[names[0]].to_numpy(), both[names[-1]].to_numpy())
                ok = mono and eff > 0 and p < ALPHA
                if not ok:
                    demoted.add(m)
                rows.append({"ranker": r, "reference": base, "metric": f"{m} {_arrow(m)}", "queries": len(both),
                             "means by corrupted share": ", ".join(f"{f:g}: {orientation(m) * v:.3f}"
                                                                   for f, v in zip(fr, means)),
                             "monotone": "yes" if mono else "no",
                             "clean vs fully corrupted": f"{d.mean():+.3f}, r={eff:+.2f}, p={p:.2g}",
                             "verdict": "valid" if ok else "fails"})
    if not rows:
        return [], set()
    md = ["## Metric validity", "",
          "Shown before any leaderboard: can each headline metric be trusted? (a) The corruption test: a reference "
          "explanation (bm25's exact Shapley shares, the ground truth; the greedy search oracle where a ladder "
          "ran on it) has its scores shuffled among a growing share of the document's tokens (`corrupted`, "
          "seeded). A valid metric must not improve as more is shuffled (query-means oriented so higher = "
          "better, tolerance a quarter of the metric's minimum meaningful difference) and must separate the "
          "reference from its fully shuffled version on paired queries (rank-biserial r > 0, Wilcoxon p < "
          f"{ALPHA}). A declared headline metric that fails on any ranker is demoted: it loses its ★ in every "
          "table below. Separation from random and reliability (Kendall's W among competing explainers) are "
          "in the meta-evaluation section.", "", _table(pd.DataFrame(rows)), ""]
    if demoted:
        md += [f"Demoted from headline by this test: {', '.join(sorted(demoted))}.", ""]
    else:
        md += ["Every declared headline metric tested here passes.", ""]
    return md, demoted


#: the references every explainer is compared with: the seed's method and chance
REFERENCES = ("gradcam", "random")


def comparisons_section(df: pd.DataFrame, metrics: list[str], headlines: set[str] | None = None) -> list[str]:
    """Each explainer against Grad-CAM and against random, per ranker and headline metric: the paired
    query-level difference with its CI, the effect size and a verdict (`stats.compare_to`)."""
    heads = [m for m in metrics if (METRICS[m].headline if headlines is None else m in headlines)]
    md = ["## Comparisons that matter", "",
          "Each explainer against Grad-CAM (the seed's method) and against random, on paired query values, "
          "oriented so that + = better than the reference: mean difference [95% query-bootstrap CI], "
          "rank-biserial effect r, n queries, and the verdict: better / worse = Wilcoxon p < "
          f"{ALPHA} after Holm over the explainers and a difference at least the metric's declared minimum "
          f"meaningful difference ({MIN_DIFF_SHARE:g} of its range on bounded metrics, {MIN_DIFF_UNBOUNDED:g} on "
          "anchored gains, whose random-to-oracle span is 1); negligible = the CI lies within that difference, "
          "or the difference is significant but smaller; underpowered = too few queries for any Holm p below "
          f"{ALPHA}; else not shown different.", ""]
    tables = [line for ref in REFERENCES for r in df.ranker.unique()
              for line in comparison_table(df, r, heads, ref)]
    return md + tables if tables else []


def comparison_table(df: pd.DataFrame, ranker: str, metrics: list[str], reference: str,
                     compared: dict[tuple[str, str], pd.DataFrame] | None = None) -> list[str]:
    """"### RANKER: versus REFERENCE" and a table explainer x metric of `stats.compare_to` cells (difference
    [CI] r n verdict), or nothing when no explainer is compared; `compared` collects each non-empty
    (ranker, metric) comparison for callers that summarise them."""
    rows: dict[str, dict[str, str]] = {}
    for m in metrics:
        c = compare_to(df, ranker, m, reference)
        if compared is not None and not c.empty:
            compared[(ranker, m)] = c
        for x in c.itertuples():
            rows.setdefault(x.explainer, {})[f"{m} {_arrow(m)}"] = (
                f"{x.diff:+.3f} [{x.ci_low:+.3f}, {x.ci_high:+.3f}] r={x.effect:+.2f} n={x.queries} {x.verdict}")
    if not rows:
        return []
    t = pd.DataFrame([{"explainer": e, **v} for e, v in sorted(rows.items())]).fillna("n/a")
    return [f"### {ranker}: versus {reference}", "", _table(t), ""]


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
          "and r > 0. (b) Reliability: Kendall's W of the ordering of the competing explainers (baselines left out) across queries (1 = every query "
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


def seed_section(df: pd.DataFrame, suite_rankers: dict, suite_seed: int, metrics: list[str]) -> list[str]:
    """RESULTS.md "Training seeds" (`suites.seeds`): per seed group and headline metric, the Kendall tau of
    the explainer orderings across seeds [query-bootstrap CI], the verdicts against Grad-CAM that every seed
    shares, and the pooled leaderboard whose CI resamples seeds and queries."""
    from .seeds import seed_groups, seed_study
    groups = seed_groups(suite_rankers, suite_seed, set(df.ranker))
    if not groups:
        return []
    md = ["## Training seeds", "",
          "Rankers trained from different seeds (suite tables that differ only in `train_seed`), explained on the "
          "same queries with the same settings. Per headline metric: the mean Kendall tau between the competing "
          "explainers' orderings under every two seeds [95% CI, resampling queries]; how many explainers get the "
          "same verdict against Grad-CAM under every seed; and, below, the leaderboard pooled over seeds, whose "
          "95% CI resamples seeds and queries (so it includes the model's variance, not only the queries').", ""]
    for first, by_seed in groups.items():
        names = [by_seed[k] for k in sorted(by_seed)]
        rows, pooled = [], {}
        for m in metrics:
            st = seed_study(df, names, m)
            if st is None:
                continue
            rows.append({"metric": f"{m} {_arrow(m)}", "seeds": st["seeds"], "queries": st["queries"],
                         "explainers": len(st["explainers"]),
                         "ordering tau [CI]": f"{st['tau']:.2f} [{st['tau_low']:.2f}, {st['tau_high']:.2f}]",
                         "same verdict vs gradcam": f"{st['verdicts_same']} of {st['verdicts_compared']}"})
            for i, e in enumerate(st["explainers"]):
                pooled.setdefault(e, {})[f"{m} {_arrow(m)}"] = (
                    f"{st['pooled'][i]:.3f} [{st['pooled_low'][i]:.3f}, {st['pooled_high'][i]:.3f}]")
        if not rows:
            continue
        seeds = ", ".join(f"{by_seed[k]} (seed {k})" for k in sorted(by_seed))
        md += [f"### {first}: {seeds}", "", _table(pd.DataFrame(rows)), ""]
        t = pd.DataFrame([{"explainer": e, **v} for e, v in sorted(pooled.items())]).fillna("n/a")
        md += ["Pooled over seeds (mean [95% CI over seeds and queries]):", "", _table(t), ""]
    return md if any(line.startswith("### ") for line in md) else []


def plan_section(run_dir: Path, shards: pd.DataFrame, fin: dict, meta_env: dict | None = None) -> list[str]:
    """"Cost prediction": the `rexbench plan --json` output saved beside the run as plan.json (a calibration on the
    same machine, or `--calibration-run` on the run itself) against the run's measured shard seconds."""
    import json

    from .planner import PLAN_FILE, plan_vs_run
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
        t[c] = t[c].map(lambda v: _fmt(v, 1))
    t["error"] = t["error"].map(lambda v: f"{v:+.0%}" if v == v else "-")
    cal = plan.get("calibration", {})
    source = cal.get("source", "calibration run")
    how = (f"calibrated on {source} (`--calibration-run`: the shards a calibration would have run, timed under "
           "the run's own workers)" if source != "calibration run" else
           f"calibrated by a {_fmt(cal.get('wall_seconds'), 0)} s calibration run on the same machine before the run")
    return ["## Cost prediction", "",
            f"`rexbench plan {plan.get('suite')} --workers {plan.get('workers')} --json` ({run_dir / PLAN_FILE}), "
            f"{how}, {cal.get('queries')} query per ranker: predicted seconds per ranker (seconds per calibration "
            "query x the ranker's queries) against the sum of the ranker's measured shard seconds; error = "
            "(predicted - measured) / measured, so it measures how well one query stands for the others. The "
            "total compares the predicted wall time (fixed cost + shard seconds / workers) with the run's, when "
            "the run was made in one start (a resumed run is compared on shard seconds only).", "",
            _table(t), ""]


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
            return store.meta(), store.results(), store.rankers(), store.explanations(), store.shard_seconds()
        finally:
            store.close()


def write_report(run_dir: str | Path, out: str | Path | None = None) -> Path:
    """Write RESULTS.md (default `run_dir/RESULTS.md`) and its figures from the run's database, or from its
    packed copy on a clean clone (`rundir.run_database`: checked either way, a damaged one is a BadInput)."""
    from .rundir import run_database
    run_dir = Path(run_dir)
    with run_database(run_dir, "report") as db:
        return _write_report(run_dir, out, db)


def _write_report(run_dir: Path, out, db: Path) -> Path:
    from rankers.errors import BadInput

    from .rundir import LOCK
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
        validity, demoted = metric_validity(df, suite.get("explainers", {}), metric_order)
        heads = {m for m in metric_order if METRICS[m].headline} - demoted
        md += validity
        md += leaderboard_section(df, [m for m in metric_order if not _score_normalised(m)],
                                  gpu_suite=(Path(__file__).parent / f"{suite.get('name')}_gpu.toml").exists(),
                                  exps=exps, headlines=heads)
        # the layer sweep is a study of Grad-CAM itself (its figure below), not a competitor: one of its layers
        # is the default gradcam's own, which would be compared with itself
        sweep = [n for _, n in layer_sweep(suite.get("explainers", {}))]
        compared = df[~df.explainer.isin(sweep)] if len(sweep) >= 2 else df
        md += comparisons_section(compared, metric_order, heads)
        md += seed_claim_section(compared)
        if layer_sweep_figure(df, suite.get("explainers", {}), heads, figs / "gradcam_layers.png"):
            md += ["### Grad-CAM across layers", "", "The suite's Grad-CAM explainers that read different layers "
                   "(`[explainers.NAME] type = \"gradcam\"`, `layer = i`): each headline metric's query-mean per "
                   f"layer ({', '.join(f'`{n}`' for n in sweep)}; left out of the comparisons above, since the "
                   "default `gradcam` reads one of these layers itself).", "",
                   f"![Grad-CAM layers]({rel(figs / 'gradcam_layers.png')})", ""]
        md += normalised_section(df, [m for m in metric_order if _score_normalised(m)])
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
            rows_of = explanation_rows(exps)
            t["rows"] = [rows_of.get((r, e), np.nan) for r, e in zip(t.ranker, t.explainer)]
            timing_figure(t, figs / "timing.png")
            show = t.copy()
            for c, nd in (("median_ms", 2), ("fwd", 1), ("rows", 0), ("bwd", 1), ("expl/s", 1), ("peak_mb", 0)):
                show[c] = show[c].map(lambda v, nd=nd: _fmt(v, nd))
            md += ["## Cost per explanation", "",
                   f"Measured on `{env.get('device')}` ({env.get('device_name')}). Passes are batched model calls "
                   "counted by hooks; `peak_mb` is the largest peak of one explanation above the memory in use when "
                   "it began (`rankers.memory.PeakMemory`: on CPU the process RSS sampled every 5 ms, on a GPU "
                   "`torch.cuda.max_memory_allocated` after a reset), so it is the explainer's own memory, not the "
                   "process's.", "",
                   _table(show[["ranker", "explainer", "n", "median_ms", "fwd", "rows", "bwd", "expl/s", "peak_mb"]]),
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
