"""RESULTS.md's paired comparisons of every explainer against a reference (Grad-CAM, random)."""
from __future__ import annotations

import pandas as pd

from metrics import METRICS

from ..stats import ALPHA, MIN_DIFF_SHARE, MIN_DIFF_UNBOUNDED, compare_to
from .common import arrow, md_table


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
            rows.setdefault(x.explainer, {})[f"{m} {arrow(m)}"] = (
                f"{x.diff:+.3f} [{x.ci_low:+.3f}, {x.ci_high:+.3f}] r={x.effect:+.2f} n={x.queries} {x.verdict}")
    if not rows:
        return []
    t = pd.DataFrame([{"explainer": e, **v} for e, v in sorted(rows.items())]).fillna("n/a")
    return [f"### {ranker}: versus {reference}", "", md_table(t), ""]
