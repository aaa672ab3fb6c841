"""Statistics over suite rows: means with seeded 95% bootstrap CIs (scipy.stats.bootstrap),
paired Wilcoxon signed-rank tests between explainers with Holm correction, leaderboards."""
from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.stats import bootstrap, wilcoxon

from metrics import METRICS


def mean_ci(values: np.ndarray, seed: int = 0, confidence: float = 0.95) -> tuple[float, float, float]:
    """(mean, low, high); percentile bootstrap with 2000 resamples; a single value has no interval."""
    v = np.asarray(values, dtype=np.float64)
    m = float(v.mean())
    if len(v) < 2 or np.ptp(v) == 0:
        return m, m, m
    res = bootstrap((v,), np.mean, confidence_level=confidence, n_resamples=2000, method="percentile",
                    random_state=np.random.default_rng(seed))
    return m, float(res.confidence_interval.low), float(res.confidence_interval.high)


def summarize(df: pd.DataFrame, seed: int = 0) -> pd.DataFrame:
    """Per (ranker, explainer, metric): n ok, n error, n skipped, mean, 95% CI, direction."""
    rows = []
    if df.empty:
        return pd.DataFrame(columns=["ranker", "explainer", "metric", "n", "errors", "skipped", "mean", "ci_low",
                                     "ci_high", "direction"])
    for (r, e, m), g in df.groupby(["ranker", "explainer", "metric"], sort=True):
        ok = g[(g.status == "ok") & np.isfinite(g.value.astype(float))]
        mean, lo, hi = mean_ci(ok.value.to_numpy(), seed) if len(ok) else (np.nan, np.nan, np.nan)
        rows.append({"ranker": r, "explainer": e, "metric": m, "n": len(ok), "errors": int((g.status == "error").sum()),
                     "skipped": int((g.status == "skipped").sum()), "mean": mean, "ci_low": lo, "ci_high": hi,
                     "direction": METRICS[m].direction if m in METRICS else ""})
    return pd.DataFrame(rows)


def holm(pvalues: list[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values (step-down, monotone, capped at 1)."""
    p = np.asarray(pvalues, dtype=np.float64)
    order = np.argsort(p)
    adj = np.empty_like(p)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (len(p) - rank) * p[i]))
        adj[i] = running
    return adj.tolist()


def leaderboard(df: pd.DataFrame, ranker: str, metric: str, seed: int = 0, alpha: float = 0.05) -> pd.DataFrame:
    """Explainers on one (ranker, metric), best first, each compared with the best on the
    same samples (Wilcoxon signed-rank, Holm-corrected over the comparisons)."""
    direction = METRICS[metric].direction
    g = df[(df.ranker == ranker) & (df.metric == metric) & (df.status == "ok")].copy()
    g = g[np.isfinite(g.value.astype(float))]
    if g.empty:
        return pd.DataFrame()
    wide = g.pivot_table(index=["qid", "docid"], columns="explainer", values="value", aggfunc="first")
    summ = []
    for e in wide.columns:
        v = wide[e].dropna().to_numpy()
        m, lo, hi = mean_ci(v, seed)
        summ.append({"explainer": e, "n": len(v), "mean": m, "ci_low": lo, "ci_high": hi})
    board = pd.DataFrame(summ).sort_values("mean", ascending=(direction == "lower"), kind="stable")
    best = board.iloc[0].explainer
    pvals, names = [], []
    for e in board.explainer.iloc[1:]:
        both = wide[[best, e]].dropna()
        diff = both[best] - both[e]
        if len(both) < 2 or np.allclose(diff, 0):
            p = 1.0
        else:
            p = float(wilcoxon(both[best], both[e], zero_method="zsplit").pvalue)
        pvals.append(p)
        names.append(e)
    adj = dict(zip(names, holm(pvals))) if pvals else {}
    board["p_holm"] = board.explainer.map(adj)
    board["worse_than_best"] = board.p_holm < alpha
    board.insert(0, "rank", range(1, len(board) + 1))
    return board.reset_index(drop=True)
