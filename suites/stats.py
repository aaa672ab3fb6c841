"""Query-level statistics over suite rows (scipy.stats).

Samples of one query share the query (within-query correlation), so every statistic
treats the query as the unit: a value per query is the mean of its samples; means are
means of these query values; 95% CIs are percentile bootstraps that resample queries
(a cluster bootstrap); explainers are compared on paired query values (Wilcoxon
signed-rank, Holm-corrected) with the mean paired difference, its query-bootstrap CI and the
rank-biserial effect size, against the references that matter (Grad-CAM, the seed's method;
random), and a declared minimum meaningful difference (`min_meaningful_difference`) below which
a difference is negligible however significant. A comparison that cannot reach p < alpha after
Holm at its number of queries (the exact test's smallest two-sided p is 2 / 2^n) is marked
underpowered rather than left looking like "no difference".
"""
from __future__ import annotations

import json
import weakref

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


def row_info(value) -> dict:
    """A result row's `info` as a dict: stored as a JSON string, already a dict in memory, {} where empty."""
    if isinstance(value, str):
        return json.loads(value) if value else {}
    return value if isinstance(value, dict) else {}


def ok_rows(df: pd.DataFrame) -> pd.DataFrame:
    return df[(df.status == "ok") & np.isfinite(df.value.astype(float))]


#: id(frame) -> (a weak reference to the frame, (ranker, metric) -> row positions, (ranker, metric) -> query
#: values [qid x explainer]): what `rows_of` and `wide_queries` keep of a frame while it lives
_SPLITS: dict[int, tuple[weakref.ref, dict, dict]] = {}


def _split(df: pd.DataFrame) -> tuple[weakref.ref, dict, dict]:
    key = id(df)
    hit = _SPLITS.get(key)
    if hit is None or hit[0]() is not df:
        pos = df.reset_index(drop=True).groupby(["ranker", "metric"], sort=False).indices
        hit = _SPLITS[key] = (weakref.ref(df, lambda _, k=key: _SPLITS.pop(k, None)), pos, {})
    return hit


def rows_of(df: pd.DataFrame, ranker: str, metric: str) -> pd.DataFrame:
    """The rows of one (ranker, metric): `df[(df.ranker == ranker) & (df.metric == metric)]`, the same rows in the
    same order with the same index, a new frame each call. A report asks a large frame for thousands of these
    slices, so the frame is split once and the row positions kept while it lives (it must not have its ranker,
    metric, status or value columns changed in place meanwhile)."""
    pos = _split(df)[1].get((ranker, metric))
    return df.iloc[pos] if pos is not None else df.iloc[:0]


def query_values(df: pd.DataFrame) -> pd.DataFrame:
    """Per (ranker, explainer, metric, qid): mean of the query's ok sample values and their count."""
    g = ok_rows(df).groupby(["ranker", "explainer", "metric", "qid"]).value
    return pd.DataFrame({"value": g.mean(), "pairs": g.size()}).reset_index()


#: the anchored gains, aggregated as a ratio of query means (`gain_ratio`), not as a mean of per-pair ratios
GAINS = ("rank_deletion_gain", "rank_insertion_gain")
N_BOOT = 2000


def gain_parts(df: pd.DataFrame) -> pd.DataFrame:
    """Per ok row of an anchored gain: (ranker, explainer, metric, qid), the numerator A_random - A and the
    denominator A_random - A_oracle of its per-pair ratio, from the row's info."""
    g = ok_rows(df[df.metric.isin(GAINS)])
    if g.empty:
        return pd.DataFrame(columns=["ranker", "explainer", "metric", "qid", "num", "den"])
    info = [row_info(i) for i in g["info"]]
    return pd.DataFrame({"ranker": g.ranker.to_numpy(), "explainer": g.explainer.to_numpy(),
                         "metric": g.metric.to_numpy(), "qid": g.qid.to_numpy(),
                         "num": [i["random_auc"] - i["auc"] for i in info],
                         "den": [i["random_auc"] - i["oracle_auc"] for i in info]})


def gain_ratio(num: np.ndarray, den: np.ndarray, seed: int = 0, confidence: float = 0.95
               ) -> tuple[float, float, float]:
    """(gain, low, high): the ratio of query means sum_q num_q / sum_q den_q (num_q, den_q: a query's means over
    its pairs; 0 = random, 1 = the oracle) and its percentile CI from a bootstrap that resamples queries. Unlike
    the mean of per-pair ratios, a pair where random and oracle lie close cannot dominate it."""
    num, den = np.asarray(num, dtype=np.float64), np.asarray(den, dtype=np.float64)
    g = float(num.mean() / den.mean())
    if len(num) < 2:
        return g, g, g
    idx = np.random.default_rng(seed).integers(len(num), size=(N_BOOT, len(num)))
    boot = num[idx].mean(1) / den[idx].mean(1)
    lo, hi = np.percentile(boot, [(1 - confidence) / 2 * 100, (1 + confidence) / 2 * 100])
    return g, float(lo), float(hi)


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


#: the power at which a minimum detectable difference is stated
POWER = 0.8


def minimum_detectable_difference(sd: float, n_queries: int, n_comparisons: int = 1, alpha: float = ALPHA,
                                  power: float = POWER) -> float:
    """The paired difference (in the metric's units) that a two-sided Wilcoxon signed-rank test on `n_queries`
    paired query values with standard deviation `sd` detects with probability `power` at level alpha / m
    (m = `n_comparisons`: the first, strictest Holm step): the paired t-test's (t_{1-a/2m, n-1} +
    t_{power, n-1}) * sd / sqrt(n), times sqrt(pi / 3) for the signed-rank test's asymptotic relative
    efficiency of 3/pi under normality. inf below 2 queries or without a spread."""
    from scipy.stats import t as student
    if n_queries < 2 or not np.isfinite(sd):
        return float("inf")
    df = n_queries - 1
    a = alpha / max(int(n_comparisons), 1)
    return float((student.ppf(1 - a / 2, df) + student.ppf(power, df)) * sd / np.sqrt(n_queries)
                 * np.sqrt(np.pi / 3))


def queries_to_resolve(sd: float, delta: float, n_comparisons: int = 1, alpha: float = ALPHA,
                       power: float = POWER, most: int = 100000) -> int | None:
    """The fewest queries whose minimum detectable difference is at most `delta` (None beyond `most`)."""
    if not (delta > 0 and np.isfinite(sd)):
        return None
    lo, hi = 2, most
    if minimum_detectable_difference(sd, hi, n_comparisons, alpha, power) > delta:
        return None
    while lo < hi:  # the MDD falls as n grows: bisect
        mid = (lo + hi) // 2
        if minimum_detectable_difference(sd, mid, n_comparisons, alpha, power) <= delta:
            hi = mid
        else:
            lo = mid + 1
    return lo


def board_power(df: pd.DataFrame, ranker: str, metric: str, n_comparisons: int) -> dict | None:
    """The resolution of one leaderboard (ranker, metric): n queries with every explainer, the median over
    explainer pairs of the standard deviation of their paired query differences, the minimum detectable
    difference at that n, the declared minimum meaningful difference and the queries needed to resolve it."""
    w = wide_queries(df, ranker, metric).dropna()
    if w.shape[1] < 2 or len(w) < 2:
        return None
    cols = list(w.columns)
    sds = [float(np.std(w[a] - w[b], ddof=1)) for i, a in enumerate(cols) for b in cols[i + 1:]]
    sd = float(np.median(sds))
    delta = min_meaningful_difference(metric)
    return {"queries": len(w), "sd": sd, "mdd": minimum_detectable_difference(sd, len(w), n_comparisons),
            "min_meaningful": delta, "needed": queries_to_resolve(sd, delta, n_comparisons)}


#: the pairs per query a design may ask for (`pairs_design`)
MAX_PAIRS_PER_QUERY = 10


def variance_components(df: pd.DataFrame, ranker: str, metric: str) -> dict | None:
    """Where the spread of one leaderboard's paired differences lies: for each two explainers, the differences
    d[q, j] of their values on the same pair (query q, its j-th document), split as a one-way random-effects model
    d[q, j] = mu + b_q + e_qj: `within` = the pooled variance of a query's pairs around their mean (queries with at
    least 2 pairs), `between` = the variance of the query means less within / (their mean pairs per query), floored
    at 0; the median of each over the explainer pairs. None without 2 queries of >= 2 pairs each."""
    sub = ok_rows(rows_of(df, ranker, metric))
    if sub.empty:
        return None
    w = sub.pivot_table(index=["qid", "docid"], columns="explainer", values="value", aggfunc="first")
    cols = list(w.columns)
    between, within, pairs = [], [], []
    for i, a in enumerate(cols):
        for b in cols[i + 1:]:
            d = (w[a] - w[b]).dropna()
            g = d.groupby(level="qid")
            sizes = g.size()
            multi = sizes[sizes >= 2].index
            if len(multi) < 2:
                continue
            dev = d[d.index.get_level_values("qid").isin(multi)]
            ss = float(dev.groupby(level="qid").apply(lambda x: ((x - x.mean()) ** 2).sum()).sum())
            var_w = ss / float((sizes[multi] - 1).sum())
            means = g.mean()
            p_bar = float(sizes.mean())
            between.append(max(float(np.var(means, ddof=1)) - var_w / p_bar, 0.0))
            within.append(var_w)
            pairs.append(p_bar)
    if not between:
        return None
    return {"between": float(np.median(between)), "within": float(np.median(within)),
            "pairs_per_query": float(np.median(pairs)), "queries": int(sub.qid.nunique())}


def pairs_design(components: dict, delta: float, n_comparisons: int, available_queries: int,
                 most_pairs: int = MAX_PAIRS_PER_QUERY) -> dict:
    """The queries needed to resolve `delta` at p pairs per query, p = 1..most_pairs, from `variance_components`:
    the standard deviation of a query's mean difference at p pairs is sqrt(between + within / p)
    (`queries_to_resolve` on it). `choice`: the fewest pairs per query whose queries fit `available_queries`
    (then those queries), or None when no p does: the between-query spread alone then needs `floor_queries`.
    It assumes further pairs of a query vary as the calibration's did (e.g. more judged-relevant candidates
    besides the top document: `[samples] relevant`)."""
    need = {p: queries_to_resolve(float(np.sqrt(components["between"] + components["within"] / p)), delta,
                                  n_comparisons) for p in range(1, most_pairs + 1)}
    fits = [p for p, n in need.items() if n is not None and n <= available_queries]
    floor = queries_to_resolve(float(np.sqrt(components["between"])), delta, n_comparisons) \
        if components["between"] > 0 else 2
    return {"queries_needed": need, "available_queries": available_queries,
            "choice": {"pairs_per_query": fits[0], "queries": need[fits[0]]} if fits else None,
            "floor_queries": floor}


def orientation(metric: str) -> float:
    """+1 when higher is better, -1 when lower is: multiply a metric by it so that higher = better."""
    return 1.0 if METRICS[metric].direction == "higher" else -1.0


def explainer_means(qv: pd.DataFrame, ranker: str, metric: str) -> pd.Series:
    """Per explainer, the mean of `query_values` rows of one (ranker, metric), oriented so higher = better."""
    return qv[(qv.ranker == ranker) & (qv.metric == metric)].groupby("explainer").value.mean() * orientation(metric)


def wide_queries(df: pd.DataFrame, ranker: str, metric: str) -> pd.DataFrame:
    """Query values [qid x explainer] of one (ranker, metric); a new frame each call (computed once per frame and
    (ranker, metric), as `rows_of`)."""
    wide = _split(df)[2]
    if (ranker, metric) not in wide:
        qv = query_values(rows_of(df, ranker, metric))
        wide[(ranker, metric)] = qv.pivot_table(index="qid", columns="explainer", values="value", aggfunc="first")
    return wide[(ranker, metric)].copy()


def leaderboard(df: pd.DataFrame, ranker: str, metric: str, seed: int = 0, alpha: float = ALPHA) -> pd.DataFrame:
    """Explainers on one (ranker, metric), best first: query-mean (an anchored gain: the ratio of query means,
    `gain_ratio`), query-bootstrap CI, n queries and pairs, and the comparison with the best on paired queries
    (Wilcoxon, Holm over the comparisons):
    `verdict` is "best", "worse" (p_holm < alpha), "not shown worse", or "underpowered"."""
    direction = METRICS[metric].direction
    sub = ok_rows(rows_of(df, ranker, metric))
    if sub.empty:
        return pd.DataFrame()
    wide = wide_queries(df, ranker, metric)
    pairs = sub.groupby("explainer").size()
    summ = []
    parts = gain_parts(sub) if metric in GAINS else None
    for e in wide.columns:
        v = wide[e].dropna().to_numpy()
        if parts is not None:  # the anchored gains: a ratio of query means
            q = parts[parts.explainer == e].groupby("qid")[["num", "den"]].mean()
            m, lo, hi = gain_ratio(q.num.to_numpy(), q.den.to_numpy(), seed)
        else:
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


# --------------------------------------------------------------------------- comparisons that matter
#: the smallest difference worth reporting, declared before any run: 2% of a bounded metric's range (0.02 on
#: the [0, 1] rank curves), 0.05 on unbounded anchored gains (5% of the random -> oracle span). A difference
#: below it is "negligible" however significant.
MIN_DIFF_SHARE = 0.02
MIN_DIFF_UNBOUNDED = 0.05


def min_meaningful_difference(metric: str) -> float:
    lo, hi = METRICS[metric].range
    if lo is not None and hi is not None:
        return MIN_DIFF_SHARE * (hi - lo)
    return MIN_DIFF_UNBOUNDED


def rank_biserial(d: np.ndarray) -> float:
    """The matched-pairs rank-biserial correlation of differences `d` (the signed-rank test's effect size,
    in [-1, 1]: 1 = positive on every query)."""
    nz = np.asarray(d, dtype=np.float64)
    nz = nz[nz != 0]
    if not len(nz):
        return 0.0
    ranks = pd.Series(np.abs(nz)).rank().to_numpy()
    return float((ranks[nz > 0].sum() - ranks[nz < 0].sum()) / ranks.sum())


#: what a paired comparison can say
VERDICTS = ("better", "worse", "negligible", "not resolved")


def verdict(diff: float, ci_low: float, ci_high: float, p_adjusted: float, min_diff: float,
            alpha: float = ALPHA) -> str:
    """"better" / "worse": adjusted p < alpha and |diff| >= the minimum meaningful difference `min_diff`
    (diff oriented so + = better); "negligible": the CI lies within +-min_diff, or the difference is
    significant but smaller; else "not resolved": the data cannot tell, which never reads "no difference"."""
    if p_adjusted < alpha and abs(diff) >= min_diff:
        return "better" if diff > 0 else "worse"
    if (-min_diff < ci_low and ci_high < min_diff) or p_adjusted < alpha:
        return "negligible"
    return "not resolved"


def compare_to(df: pd.DataFrame, ranker: str, metric: str, reference: str, seed: int = 0,
               alpha: float = ALPHA) -> pd.DataFrame:
    """Every explainer of one (ranker, metric) against `reference` on paired query values, oriented so that
    positive = better than the reference: n queries, mean difference with a query-bootstrap 95% CI,
    rank-biserial r, Wilcoxon p and its Holm adjustment over the explainers compared (`p_holm`), the standard
    deviation of the paired differences (`sd`), the minimum detectable difference at this n and number of
    comparisons (`mdd`) and the `verdict` (`verdict`)"""
    wide = wide_queries(df, ranker, metric)
    if reference not in wide:
        return pd.DataFrame()
    others = [e for e in wide.columns if e != reference]
    mmd = min_meaningful_difference(metric)
    rows = []
    for e in others:
        both = wide[[reference, e]].dropna()
        if len(both) < 1:
            continue
        d = orientation(metric) * (both[e] - both[reference]).to_numpy()
        m, lo, hi = mean_ci(d, seed)
        rows.append({"explainer": e, "queries": len(d), "diff": m, "ci_low": lo, "ci_high": hi,
                     "effect": rank_biserial(d), "p": paired_test(both[e].to_numpy(), both[reference].to_numpy()),
                     "sd": float(np.std(d, ddof=1)) if len(d) >= 2 else float("nan")})
    out = pd.DataFrame(rows)
    if out.empty:
        return out
    out["p_holm"] = holm(out.p.tolist())
    out["mdd"] = [minimum_detectable_difference(sd, n, len(out), alpha) for sd, n in zip(out.sd, out.queries)]
    out["verdict"] = [verdict(x.diff, x.ci_low, x.ci_high, x.p_holm, mmd, alpha) for x in out.itertuples()]
    out["min_diff"] = mmd
    return out


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
    return {"queries": len(both), "diff": float(d.mean()), "effect": rank_biserial(d),
            "p": paired_test(both[good].to_numpy(), both[bad].to_numpy())}


def competitors(names) -> list[str]:
    """The explainers that compete (not baselines such as random or lexical matching)."""
    from explainers import EXPLAINERS
    return [e for e in names if not getattr(EXPLAINERS.get(e), "baseline", False)]


def kendalls_w(df: pd.DataFrame, ranker: str, metric: str) -> tuple[float, int, int] | None:
    """Kendall's W of the ordering of the competing explainers (baselines left out: separating from them is
    easy and would inflate agreement) across queries (queries as raters; from scipy's Friedman statistic,
    W = chi2 / (n_queries (k - 1))): 1 = every query orders the explainers alike.
    Returns (W, queries, explainers) over the queries where every explainer has a value."""
    wide = wide_queries(df, ranker, metric)
    wide = wide[competitors(wide.columns)].dropna(axis=1, thresh=2).dropna()
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
            x, y = means[a][common], means[b][common]
            if len(common) >= 3 and x.nunique() > 1 and y.nunique() > 1:  # else undefined: NaN, no warning
                out.loc[a, b] = spearmanr(x, y).statistic
    return out
