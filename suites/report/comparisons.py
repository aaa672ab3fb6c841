"""The paired comparisons of every explainer against a reference (Grad-CAM, random), as tables of a ranker's
page; the verdicts of the primary family are the report-wide ones (`primary`)."""
from __future__ import annotations

import pandas as pd

from ..stats import ALPHA, MIN_DIFF_SHARE, MIN_DIFF_UNBOUNDED, POWER
from .common import arrow, md_table


def comparisons_note(family_size: int) -> str:
    return ("Each explainer against the reference on paired query values, oriented so that + = better than the "
            "reference: mean difference [95% query-bootstrap CI], rank-biserial effect r, n queries, the minimum "
            f"detectable difference (mdd: the paired difference a Wilcoxon test finds with {POWER:.0%} power at "
            "this n and family) and the verdict: better / worse = Wilcoxon p < "
            f"{ALPHA} after Holm and a difference at least the metric's declared minimum meaningful difference "
            f"({MIN_DIFF_SHARE:g} of its range on bounded metrics, {MIN_DIFF_UNBOUNDED:g} on anchored gains); "
            "negligible = the CI lies within that difference, or significant but smaller; not resolved = the data "
            "cannot tell (never \"no difference\"). **Bold** verdicts belong to the primary family (competitors "
            f"and Grad-CAM on the ★ metrics of unflagged rankers), Holm-adjusted over all {family_size} of its "
            "comparisons at once; the others are exploratory (Holm within their table only).")


def comparison_table(ev, ranker: str, metrics: list[str], reference: str, heading: str = "###") -> list[str]:
    """"### RANKER: versus REFERENCE" and a table explainer x metric, or nothing when nothing is compared."""
    rows: dict[str, dict[str, str]] = {}
    for m in metrics:
        c = ev.comparisons.table(ranker, m, reference)
        for x in c.itertuples():
            v = f"**{x.verdict}**" if x.primary else x.verdict
            rows.setdefault(ev.label(ranker, x.explainer), {})[f"{m} {arrow(m)}"] = (
                f"{x.diff:+.3f} [{x.ci_low:+.3f}, {x.ci_high:+.3f}] r={x.effect:+.2f} n={x.queries} "
                f"mdd={x.mdd:.3f} {v}")
    if not rows:
        return []
    t = pd.DataFrame([{"explainer": e, **v} for e, v in sorted(rows.items())]).fillna("n/a")
    return [f"{heading} {ranker}: versus {ev.label(ranker, reference)}", "", md_table(t), ""]
