"""RESULTS.md's leaderboards (per ranker, headline metrics with query-bootstrap CIs) and the score-normalised views."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd

from metrics import METRICS

from ..stats import ALPHA, POWER, board_power, leaderboard, rows_of, smallest_holm_p, underpowered
from .common import arrow, fmt, metric_label, md_table, degenerate_shares


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
    return f"{verdict} (\\|rho\\| {fmt(rho, 2)} vs ceiling {fmt(top, 2)}; pass <= {SANITY_PASS:g} x ceiling)"


def leaderboard_section(df: pd.DataFrame, metrics: list[str], gpu_suite: bool = False,
                        exps: list[dict] | None = None, headlines: set[str] | None = None,
                        labels: dict[tuple[str, str], str] | None = None, title: str = "## Leaderboards"
                        ) -> list[str]:
    """Per ranker: explainer x metric, query-means with query-bootstrap CIs, n, constant-explanation share;
    `labels` names an explainer that stands for identical ones ((ranker, explainer) -> label)."""
    labels = labels or {}
    md = [title, "",
          "Each cell: the mean over queries of the query's mean over its samples, with a 95% CI from a bootstrap "
          "that resamples queries. ↓ lower is better, ↑ higher is better. Rows are ordered by the first headline "
          "metric's mean where the ranker has enough queries for a difference to reach significance; on an "
          "underpowered ranker they are alphabetical and nothing is ranked. No cell is marked best: which "
          "differences hold, and how large they are, is in \"Comparisons that matter\" below. Headline "
          "faithfulness metrics (★) are rank-based, so unchanged by any increasing transform of the scores and "
          "comparable across rankers: the standing AUCs are bounded and defined on every sample; the gains are "
          "anchored (0 = random, 1 = the search oracle; where the oracle starts from the pair's explanations no "
          "explanation exceeds 1, in older runs above 1 beats the oracle: see Anchors), shown as a ratio of query "
          "means "
          "(sum of the queries' A_random - A over the sum of their A_random - A_oracle, CI resampling queries) and "
          "skip, counted, a pair whose random-to-oracle span is below the declared floor. `bm25_agreement` is groundtruth_spearman outside bm25: agreement "
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
                    s = _sanity_cell(df, r, row.explainer) or f"{fmt(row['mean'])} (no ceiling recorded)"
                else:
                    s = f"{fmt(row['mean'])} [{fmt(row.ci_low)}, {fmt(row.ci_high)}]"
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
            rows.append({"explainer": labels.get((r, e), e), "n queries / pairs": "%d / %d" % ns.get(e, (0, 0)),
                         "constant": f"{c / n:.0%}" if n else "-",
                         **{f"{metric_label(m, r)}{' ★' if m in heads else ''} {arrow(m)}":
                            cells[e].get(m, "n/a") for m in cols}})
        floor_p = smallest_holm_p(qn, m_cmp)
        note = (f"; **underpowered, not ranked**: with {qn} queries and {m_cmp} comparisons no difference can "
                f"reach p < {ALPHA} after Holm (smallest attainable adjusted p {floor_p:.2g}); more queries are "
                "needed (e.g. on a GPU" + (": `suites/cranfield_gpu.toml`" if gpu_suite else "") + ")" if weak else "")
        md += [f"### {r} ({qn} queries, {pn} pairs{note})", "", md_table(pd.DataFrame(rows)), ""]
        md += _power_line(df, r, [m for m in cols if m in heads], m_cmp)
    return md


def _power_line(df: pd.DataFrame, ranker: str, metrics: list[str], m_cmp: int) -> list[str]:
    """What this board can resolve: per headline metric, the minimum detectable difference at its n against the
    declared minimum meaningful difference, and the queries that would resolve the latter."""
    parts = []
    for m in metrics:
        p = board_power(df, ranker, m, m_cmp)
        if p is None:
            continue
        need = f"{p['needed']} queries to resolve it" if p["needed"] else "more than 100000 queries to resolve it"
        parts.append(f"{m} {fmt(p['mdd'])} at n = {p['queries']} (minimum meaningful {p['min_meaningful']:g}; {need})")
    if not parts:
        return []
    return [f"Resolution: the smallest paired difference a Wilcoxon test detects with {POWER:.0%} power at "
            f"{ALPHA} / {m_cmp} (the strictest Holm step over the {m_cmp} comparisons), from the median spread of "
            "the explainers' paired query differences: " + "; ".join(parts) + ". A difference below it is not "
            "resolved by this board, whatever its sign.", ""]


def normalised_section(df: pd.DataFrame, metrics: list[str]) -> list[str]:
    """The score-normalised variants: defined counts and query-means, not ranked as headlines."""
    if not metrics:
        return []
    rows = []
    for r in df.ranker.unique():
        for m in metrics:
            g = rows_of(df, r, m)
            ok = g[g.status == "ok"].value.astype(float)
            if g.empty:
                continue
            rows.append({"ranker": r, "metric": f"{m} {arrow(m)}", "defined": f"{len(ok)} / {len(g)}",
                         "min": fmt(ok.min() if len(ok) else np.nan), "median": fmt(ok.median() if len(ok) else
                                                                                       np.nan),
                         "max": fmt(ok.max() if len(ok) else np.nan),
                         "outside [0, 1]": int(((ok < 0) | (ok > 1)).sum())})
    return ["## Score-normalised variants (not headlines)", "",
            "Deletion / insertion (Petsiuk et al. 2018) and ERASER comprehensiveness / sufficiency normalise by "
            "s_full - s_empty: unbounded, ill-conditioned when that span is small and undefined unless the full "
            "document outscores the empty one. Shown for comparison with the literature; conclusions rest on the "
            "rank-based headlines above.", "", md_table(pd.DataFrame(rows)), ""]
