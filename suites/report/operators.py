"""RESULTS.md's removal-operator comparison: one model under several removal operators, always shown when a run
has one, on the explainers both operators ran."""
from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.stats import kendalltau

from metrics import METRICS

from ..stats import orientation, query_values
from .common import WHAT_IT_EXPLAINS, arrow, fmt, md_table, table_key

#: the settings that may differ between two tables of one model compared across operators (what they explain,
#: not what the model computes)
_NOT_THE_MODEL = ("removal", "type", "relevant", *WHAT_IT_EXPLAINS)
N_BOOT = 1000


def operator_pairs(suite_rankers: dict, present: set[str]) -> list[tuple[str, str]]:
    """Pairs of suite rankers of one model (the same type and model settings) under different removal operators."""
    def key(name):
        return table_key(name, suite_rankers[name], _NOT_THE_MODEL)

    names = [r for r in suite_rankers if r in present]
    return [(a, b) for i, a in enumerate(names) for b in names[i + 1:]
            if key(a) == key(b)
            and suite_rankers[a].get("removal", "pad") != suite_rankers[b].get("removal", "pad")]


def operator_tau(df: pd.DataFrame, a: str, b: str, metric: str, seed: int = 0) -> dict | None:
    """Kendall tau between the explainer orderings (query-means, on the queries and explainers both rankers
    share) under two operators, with a 95% CI from a bootstrap that resamples queries, and each side's winner."""
    qv = query_values(df[df.ranker.isin([a, b]) & (df.metric == metric)])
    wa = qv[qv.ranker == a].pivot_table(index="qid", columns="explainer", values="value")
    wb = qv[qv.ranker == b].pivot_table(index="qid", columns="explainer", values="value")
    expl = sorted(set(wa.columns) & set(wb.columns))
    qids = sorted(set(wa[expl].dropna().index) & set(wb[expl].dropna().index)) if expl else []
    if len(expl) < 3 or len(qids) < 2:
        return None
    ma = wa.loc[qids, expl].to_numpy(float) * orientation(metric)
    mb = wb.loc[qids, expl].to_numpy(float) * orientation(metric)
    tau = kendalltau(ma.mean(0), mb.mean(0)).statistic
    rng = np.random.default_rng(seed)
    boot = []
    for _ in range(N_BOOT):
        i = rng.integers(len(qids), size=len(qids))
        boot.append(kendalltau(ma[i].mean(0), mb[i].mean(0)).statistic)
    lo, hi = np.nanpercentile(boot, [2.5, 97.5])
    return {"explainers": len(expl), "queries": len(qids), "tau": float(tau), "low": float(lo), "high": float(hi),
            "best_a": expl[int(np.argmax(ma.mean(0)))], "best_b": expl[int(np.argmax(mb.mean(0)))]}


def operator_section(df: pd.DataFrame, suite_rankers: dict, headlines: list[str]) -> list[str]:
    """How much the explainer ranking changes with the removal operator (ROAD, Rong et al. 2022): per pair of
    operators and headline metric, Kendall tau [query-bootstrap CI] and the winner under each operator."""
    rows = []
    for a, b in operator_pairs(suite_rankers, set(df.ranker)):
        oa, ob = suite_rankers[a].get("removal", "pad"), suite_rankers[b].get("removal", "pad")
        for m in [m for m in METRICS if m in headlines]:
            t = operator_tau(df, a, b, m)
            if t is None:
                continue
            rows.append({"rankers": f"{a} ({oa}) vs {b} ({ob})", "metric": f"{m} {arrow(m)}",
                         "explainers both ran": t["explainers"], "queries": t["queries"],
                         "Kendall tau [95% CI]": f"{fmt(t['tau'], 2)} [{fmt(t['low'], 2)}, {fmt(t['high'], 2)}]",
                         f"best under {oa}": t["best_a"], f"best under {ob}": t["best_b"]})
    if not rows:
        return []
    return ["## Removal operators", "",
            "The same model under two removal operators (ROAD, Rong et al. 2022), on the explainers and queries "
            "both ran: Kendall tau between the explainer orderings (query-means) of each headline metric, with a "
            "95% CI from a bootstrap that resamples queries, and the explainer each operator puts first; tau 1 = "
            "the operator does not change the ranking of the explainers. A winner that changes with the operator "
            "is a property of the operator as much as of the explainer.", "", md_table(pd.DataFrame(rows)), ""]
