"""Query-level statistics over suite rows (scipy.stats).

Samples of one query share the query (within-query correlation), so every statistic
treats the query as the unit: a value per query is the mean of its samples; means are
means of these query values; 95% CIs are percentile bootstraps that resample queries
(a cluster bootstrap); explainers are compared on paired query values (Wilcoxon
signed-rank, Holm-corrected). A comparison that cannot reach p < alpha after Holm at
its number of queries (the exact test's smallest two-sided p is 2 / 2^n) is marked
underpowered rather than left looking like "no difference".
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.stats import bootstrap, friedmanchisquare, spearmanr, wilcoxon

from metrics import METRICS

ALPHA = 0.05


def mean_ci(values: np.ndarray, seed: int = 0, confidence: float = 0.95) -> tuple[float, float, float]:
    """(mean, low, high) of independent units; percentile bootstrap with 2000 resamples; a single
    value has no interval."""
    v = np.asarray(values, dtype=np.float64)
    m = float(v.mean())
    if len(v) < 2 or np.ptp(v) == 0:
        return m, m, m
    res = bootstrap((v,), np.mean, confidence_level=confidence, n_resamples=2000, method="percentile",
                    random_state=np.random.default_rng(seed))
    return m, float(res.confidence_interval.low), float(res.confidence_interval.high)


def mean_cis(groups: list[np.ndarray], seed: int = 0, confidence: float = 0.95) -> list[tuple[float, float, float]]:
    """`mean_ci` of each array in `groups`, equal to calling it on each (same seed, same resamples): arrays
    of one length are bootstrapped together in one vectorised scipy call (rows along the last axis)."""
    out: list[tuple[float, float, float]] = []
    by_len: dict[int, list[int]] = {}
    for i, g in enumerate(groups):
        v = np.asarray(g, dtype=np.float64)
        m = float(v.mean()) if len(v) else float("nan")
        out.append((m, m, m))
        if len(v) >= 2 and np.ptp(v) > 0:
            by_len.setdefault(len(v), []).append(i)
    for idx in by_len.values():
        res = bootstrap((np.stack([np.asarray(groups[i], dtype=np.float64) for i in idx]),), np.mean, axis=-1,
                        confidence_level=confidence, n_resamples=2000, method="percentile",
                        random_state=np.random.default_rng(seed))
        for k, i in enumerate(idx):
            out[i] = (out[i][0], float(res.confidence_interval.low[k]), float(res.confidence_interval.high[k]))
    return out


def ok_rows(df: pd.DataFrame) -> pd.DataFrame:
    return df[(df.status == "ok") & np.isfinite(df.value.astype(float))]


def query_values(df: pd.DataFrame) -> pd.DataFrame:
    """Per (ranker, explainer, metric, qid): mean of the query's ok sample values and their count."""
    g = ok_rows(df).groupby(["ranker", "explainer", "metric", "qid"]).value
    return pd.DataFrame({"value": g.mean(), "pairs": g.size()}).reset_index()


def summarize(df: pd.DataFrame, seed: int = 0) -> pd.DataFrame:
    """Per (ranker, explainer, metric): queries, pairs (ok samples), errors, skipped, query-mean with a
    query-bootstrap 95% CI, direction."""
    cols = ["ranker", "explainer", "metric", "queries", "n", "errors", "skipped", "mean", "ci_low", "ci_high",
            "direction"]
    if df.empty:
        return pd.DataFrame(columns=cols)
    by_cell = dict(tuple(query_values(df).groupby(["ranker", "explainer", "metric"], sort=False)))
    none = pd.DataFrame({"value": [], "pairs": []})
    rows, values = [], []
    for (r, e, m), g in df.groupby(["ranker", "explainer", "metric"], sort=True):
        q = by_cell.get((r, e, m), none)
        values.append(q.value.to_numpy())
        rows.append({"ranker": r, "explainer": e, "metric": m, "queries": len(q), "n": int(q.pairs.sum()),
                     "errors": int((g.status == "error").sum()), "skipped": int((g.status == "skipped").sum()),
                     "direction": METRICS[m].direction if m in METRICS else ""})
    for row, (mean, lo, hi) in zip(rows, mean_cis(values, seed)):
        row.update(mean=mean, ci_low=lo, ci_high=hi)
    return pd.DataFrame(rows, columns=cols)


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


def paired_test(a: np.ndarray, b: np.ndarray) -> float:
    """Two-sided Wilcoxon signed-rank p on paired query values (1.0 when they never differ)."""
    d = np.asarray(a) - np.asarray(b)
    if len(d) < 2 or np.allclose(d, 0):
        return 1.0
    return float(wilcoxon(a, b, zero_method="zsplit").pvalue)


def smallest_holm_p(n_queries: int, n_comparisons: int) -> float:
    """The smallest Holm-adjusted p any comparison can reach: the exact two-sided Wilcoxon p of the most
    extreme outcome, 2 / 2^n, times the number of comparisons (capped at 1)."""
    return min(1.0, n_comparisons * 2.0 ** (1 - n_queries))


def underpowered(n_queries: int, n_comparisons: int, alpha: float = ALPHA) -> bool:
    """True when even the most extreme outcome cannot pass Holm at `alpha`."""
    return smallest_holm_p(n_queries, n_comparisons) >= alpha


def orientation(metric: str) -> float:
    """+1 when higher is better, -1 when lower is: multiply a metric by it so that higher = better."""
    return 1.0 if METRICS[metric].direction == "higher" else -1.0


def explainer_means(qv: pd.DataFrame, ranker: str, metric: str) -> pd.Series:
    """Per explainer, the mean of `query_values` rows of one (ranker, metric), oriented so higher = better."""
    return qv[(qv.ranker == ranker) & (qv.metric == metric)].groupby("explainer").value.mean() * orientation(metric)


def wide_queries(df: pd.DataFrame, ranker: str, metric: str) -> pd.DataFrame:
    """Query values [qid x explainer] of one (ranker, metric)."""
    qv = query_values(df[(df.ranker == ranker) & (df.metric == metric)])
    return qv.pivot_table(index="qid", columns="explainer", values="value", aggfunc="first")


def leaderboard(df: pd.DataFrame, ranker: str, metric: str, seed: int = 0, alpha: float = ALPHA) -> pd.DataFrame:
    """Explainers on one (ranker, metric), best first: query-mean, query-bootstrap CI, n queries and
    pairs, and the comparison with the best on paired queries (Wilcoxon, Holm over the comparisons):
    `verdict` is "best", "worse" (p_holm < alpha), "not shown worse", or "underpowered"."""
    direction = METRICS[metric].direction
    sub = ok_rows(df[(df.ranker == ranker) & (df.metric == metric)])
    if sub.empty:
        return pd.DataFrame()
    wide = wide_queries(df, ranker, metric)
    pairs = sub.groupby("explainer").size()
    summ = []
    for e in wide.columns:
        v = wide[e].dropna().to_numpy()
        m, lo, hi = mean_ci(v, seed)
        summ.append({"explainer": e, "queries": len(v), "pairs": int(pairs.get(e, 0)), "mean": m, "ci_low": lo,
                     "ci_high": hi})
    board = pd.DataFrame(summ).sort_values("mean", ascending=(direction == "lower"), kind="stable")
    best = board.iloc[0].explainer
    others = list(board.explainer.iloc[1:])
    pvals, n_paired = [], {}
    for e in others:
        both = wide[[best, e]].dropna()
        n_paired[e] = len(both)
        pvals.append(paired_test(both[best].to_numpy(), both[e].to_numpy()))
    adj = dict(zip(others, holm(pvals))) if pvals else {}
    board["p_holm"] = board.explainer.map(adj)
    board["verdict"] = ["best" if e == best else "worse" if adj[e] < alpha
                        else "underpowered" if underpowered(n_paired[e], len(others), alpha) else "not shown worse"
                        for e in board.explainer]
    board["worse_than_best"] = board.verdict == "worse"
    board.insert(0, "rank", range(1, len(board) + 1))
    return board.reset_index(drop=True)


# --------------------------------------------------------------------------- meta-evaluation of the metrics
def separation(df: pd.DataFrame, ranker: str, metric: str, good: str, bad: str = "random") -> dict | None:
    """Does `metric` rank a known-good explainer (`good`) above `bad` on paired query values?
    Returns queries, mean difference in the metric's better direction, effect size (the
    rank-biserial correlation of the signed-rank test, in [-1, 1]) and the Wilcoxon p."""
    wide = wide_queries(df, ranker, metric)
    if good not in wide or bad not in wide:
        return None
    both = wide[[good, bad]].dropna()
    if len(both) < 2:
        return None
    d = orientation(metric) * (both[good] - both[bad]).to_numpy()
    nz = d[d != 0]
    if len(nz):
        ranks = pd.Series(np.abs(nz)).rank().to_numpy()
        r_rb = float((ranks[nz > 0].sum() - ranks[nz < 0].sum()) / ranks.sum())
    else:
        r_rb = 0.0
    return {"queries": len(both), "diff": float(d.mean()), "effect": r_rb,
            "p": paired_test(both[good].to_numpy(), both[bad].to_numpy())}


def kendalls_w(df: pd.DataFrame, ranker: str, metric: str) -> tuple[float, int, int] | None:
    """Kendall's W of the explainer ordering across queries (queries as raters; from scipy's Friedman
    statistic, W = chi2 / (n_queries (k - 1))): 1 = every query orders the explainers alike.
    Returns (W, queries, explainers) over the queries where every explainer has a value."""
    wide = wide_queries(df, ranker, metric).dropna(axis=1, thresh=2).dropna()
    n, k = wide.shape
    if n < 2 or k < 3:
        return None
    vals = orientation(metric) * wide.to_numpy()
    if np.ptp(vals, axis=1).max() == 0:
        return None
    chi2 = friedmanchisquare(*vals.T).statistic
    return float(chi2 / (n * (k - 1))), n, k


def metric_agreement(df: pd.DataFrame, ranker: str, metrics: list[str]) -> pd.DataFrame:
    """Spearman correlation between the explainer orderings (query-means, oriented so higher =
    better) that each pair of metrics gives on one ranker."""
    qv = query_values(df[df.ranker == ranker])
    means = {m: explainer_means(qv, ranker, m) for m in metrics}
    means = {m: s for m, s in means.items() if len(s) >= 3}
    names = list(means)
    out = pd.DataFrame(np.nan, index=names, columns=names)
    for a in names:
        for b in names:
            common = means[a].index.intersection(means[b].index)
            if len(common) >= 3:
                out.loc[a, b] = spearmanr(means[a][common], means[b][common]).statistic
    return out
