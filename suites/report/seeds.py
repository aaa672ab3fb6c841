"""Do explainer conclusions survive retraining? The training-seed study of RESULTS.md.

Suite tables of one ranker type that differ only in `train_seed` (the table without it trains with the
suite's seed) are one seed group: the same architecture, data and queries, trained from different
seeds; what a table explains (`skip`, `queries`, its explainer and metric lists) does not split a group. Per
group and headline metric, on the queries and competing explainers all seeds share:

- ordering agreement: Kendall tau (scipy, tau-b) between the explainer orderings (query-means) of every
  two seeds, averaged over the pairs of seeds, with a 95% CI from a bootstrap that resamples queries;
- verdict agreement: in how many explainers the verdict against Grad-CAM (`stats.compare_to`) is the
  same under every seed;
- a pooled leaderboard whose CI includes seed variance: per explainer, the mean over seeds of the
  query-mean, with a two-level bootstrap that resamples seeds and queries.
"""
from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
from scipy.stats import kendalltau

from ..stats import compare_to, competitors, orientation, query_values
from .common import WHAT_IT_EXPLAINS, table_key

N_BOOT = 1000
#: the settings that may differ within a seed group: the seed, and what a table explains (not which pairs: a
#: different `relevant` changes a query's pairs, so it splits the group)
_NOT_THE_MODEL = ("type", "train_seed", *WHAT_IT_EXPLAINS)


def seed_groups(suite_rankers: dict, suite_seed: int, present: set[str]) -> dict[str, dict[int, str]]:
    """First member's name -> {training seed: ranker name} for groups of >= 2 seeds among `present`."""
    groups: dict[tuple, dict[int, str]] = {}
    for name, t in suite_rankers.items():
        if name not in present or not t.get("explain", True):
            continue
        seed = t.get("train_seed")
        g = groups.setdefault(repr(table_key(name, t, _NOT_THE_MODEL)), {})
        g.setdefault(int(suite_seed if seed is None else seed), name)
    return {next(iter(g.values())): g for g in groups.values() if len(g) >= 2}


def _matrices(df: pd.DataFrame, names: list[str], metric: str, allowed: set[str] | None = None):
    """Oriented query values [n_seeds, n_queries, n_explainers] on the shared queries and competitors (those in
    `allowed` where given, else the non-baselines)."""
    qv = query_values(df[df.ranker.isin(names) & (df.metric == metric)])
    wides = [qv[qv.ranker == r].pivot_table(index="qid", columns="explainer", values="value") for r in names]
    qids = sorted(set.intersection(*[set(w.dropna(axis=1, how="all").index) for w in wides]))
    pick = (lambda cols: [c for c in cols if c in allowed]) if allowed is not None else competitors
    expl = sorted(set.intersection(*[set(pick(w.columns)) for w in wides]))
    if len(qids) < 2 or len(expl) < 3:
        return None, qids, expl
    m = np.stack([w.loc[qids, expl].to_numpy(dtype=float) for w in wides]) * orientation(metric)
    keep = ~np.isnan(m).any(axis=(0, 1))  # an explainer missing on some query of some seed is left out
    return m[:, :, keep], qids, [e for e, k in zip(expl, keep) if k]


def _mean_tau(means: np.ndarray) -> float:
    """means [n_seeds, n_explainers] -> mean Kendall tau over the pairs of seeds (nan pairs skipped)."""
    taus = [kendalltau(means[a], means[b]).statistic for a, b in itertools.combinations(range(len(means)), 2)]
    taus = [t for t in taus if np.isfinite(t)]
    return float(np.mean(taus)) if taus else float("nan")


def seed_study(df: pd.DataFrame, names: list[str], metric: str, seed: int = 0,
               allowed: set[str] | None = None) -> dict | None:
    """Ordering and verdict agreement across the seeds `names` of one group on `metric` (module docstring), over
    the explainers in `allowed` (default: the non-baselines)."""
    m, qids, expl = _matrices(df, names, metric, allowed)
    if m is None or m.shape[2] < 3:
        return None
    rng = np.random.default_rng(seed)
    n_s, n_q, _ = m.shape
    tau = _mean_tau(m.mean(1))
    boot_tau, boot_pool = [], []
    for _ in range(N_BOOT):
        qi = rng.integers(n_q, size=n_q)
        boot_tau.append(_mean_tau(m[:, qi].mean(1)))
        si = rng.integers(n_s, size=n_s)
        boot_pool.append(m[si][:, qi].mean(1).mean(0))
    lo, hi = np.nanpercentile(boot_tau, [2.5, 97.5])
    pool_lo, pool_hi = np.percentile(np.array(boot_pool), [2.5, 97.5], axis=0)
    verdicts = {}
    for r in names:
        c = compare_to(df[df.qid.isin(qids)], r, metric, "gradcam")
        for x in c.itertuples() if not c.empty else []:
            if x.explainer in expl:
                verdicts.setdefault(x.explainer, []).append(x.verdict)
    same = sum(1 for v in verdicts.values() if len(v) == len(names) and len(set(v)) == 1)
    sign = orientation(metric)
    return {"seeds": n_s, "queries": n_q, "explainers": expl, "tau": tau, "tau_low": float(lo), "tau_high": float(hi),
            "verdicts_same": same, "verdicts_compared": len(verdicts),
            "per_seed": m.mean(1) * sign, "pooled": m.mean(1).mean(0) * sign,
            "pooled_low": np.where(sign > 0, pool_lo, pool_hi) * sign,
            "pooled_high": np.where(sign > 0, pool_hi, pool_lo) * sign}
