"""The report's figures: deletion/insertion curves, timing, pair-map heatmaps, the Grad-CAM layer sweep, faithfulness
against cost."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from metrics import METRICS

from ..stats import query_values, rows_of
from .common import GRID, arrow, pyplot


def curve_figure(df: pd.DataFrame, ranker: str, path: Path) -> bool:
    """Mean deletion and insertion curves per explainer (interpolated on 21 points): the rank-aware
    ones (the document's standing among its query's candidates, 1 - (rank - 1) / n_others) when
    the run has them, else the score-normalised ones."""
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharey=True)
    drawn = False
    rank = not rows_of(df, ranker, "rank_deletion").empty
    for ax, metric in zip(axes, ("rank_deletion", "rank_insertion") if rank else ("deletion", "insertion")):
        g = rows_of(df, ranker, metric)
        g = g[(g.status == "ok") & g.curve.notna()]
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
    plt = pyplot()
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
        plt = pyplot()
        fig, axes = plt.subplots(len(want), 1, figsize=(13, 2.6 * len(want)))
        for ax, w in zip(axes, want):
            ex = Explanation.from_json(group[w])
            heatmap_png(ex, None, max_doc_tokens=50, ax=ax, title=f"{w} on {r}, query {q}, document {d}")
        fig.tight_layout()
        fig.savefig(path, dpi=110)
        plt.close(fig)
        return f"{r}, query {q}, document {d}: {', '.join(want)}"
    return None


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
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 3.6))
    for (r, m), g in means.groupby(["ranker", "metric"]):
        g = g.sort_values("layer")
        ax.plot(g.layer, g.value, marker="o", label=f"{r} {m} {arrow(m)}")
    ax.set_xlabel("layer Grad-CAM reads")
    ax.set_ylabel("query-mean")
    ax.legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def cost_figure(df: pd.DataFrame, cost: pd.DataFrame, heads: set[str], path: Path) -> bool:
    """Per ranker: the first headline metric's query-mean (higher = better) against rows per explanation."""
    from ..stats import orientation
    metric = next((m for m in METRICS if m in heads and m in set(df.metric)), None)
    if metric is None or "rows" not in cost or cost.rows.isna().all():
        return False
    qv = query_values(df[(df.metric == metric) & (df.docid != "*")])
    means = qv.groupby(["ranker", "explainer"]).value.mean() * orientation(metric)
    rankers = [r for r in cost.ranker.unique() if r in means.index.get_level_values(0)]
    if not rankers:
        return False
    plt = pyplot()
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
