"""RESULTS.md's removal-operator comparison: one model under several removal operators."""
from __future__ import annotations

import pandas as pd

from metrics import METRICS

from .common import arrow, fmt, md_table


def operator_section(df: pd.DataFrame, suite_rankers: dict) -> list[str]:
    """How much the explainer ranking changes with the removal operator (ROAD, Rong et al. 2022): for
    suite rankers of one type whose tables differ only in `removal`, per headline metric, Kendall tau
    between the explainer orderings (query-means) and the best explainer under each operator."""
    from scipy.stats import kendalltau

    from ..stats import explainer_means, query_values

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
                         "metric": f"{m} {arrow(m)}", "explainers": len(common), "Kendall tau": fmt(tau, 2),
                         "best, first operator": ma[common].idxmax(), "best, second operator": mb[common].idxmax()})
    if not rows:
        return []
    return ["## Removal operators", "",
            "The same ranker under two removal operators (ROAD, Rong et al. 2022): Kendall tau between the "
            "explainer orderings (query-means) of each headline metric; 1 = the operator does not change the "
            "ranking of the explainers.", "", md_table(pd.DataFrame(rows)), ""]
