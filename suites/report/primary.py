"""The report's comparisons, computed once: every explainer against Grad-CAM and against random, per ranker and
metric (`stats.compare_to`), and the declared primary family controlled across the whole report.

The primary family, declared before any run: on every ranker that is not flagged (`flags`), each competing
explainer (`roles`) against Grad-CAM and against random, and Grad-CAM against random, on the headline (★)
metrics, except on a ranker where the metric failed the corruption test (`validity.withheld`). Its p-values are Holm-adjusted over the whole family at once (every ranker and metric together), and
each comparison's minimum detectable difference is stated at that family's strictest step. Every other
comparison (baselines, Grad-CAM's variants, non-headline metrics, flagged rankers) is exploratory: Holm within
its own table only.

An explainer whose document-word explanation is constant on most of a ranker's pairs (`constant`: RankingSHAP
explains the query's words and gives every document word 0) orders no word: its curves on that ranker read a tie
order, not the explainer, so it competes there only on the metrics that read the query x document map or the
query words (`MAP_OR_QUERY_METRICS`)."""
from __future__ import annotations

import pandas as pd

from ..stats import ALPHA, compare_to, holm, minimum_detectable_difference, verdict
from .roles import REFERENCE, is_competitor

#: the references every explainer is compared with: the seed's method and chance
REFERENCES = (REFERENCE, "random")

#: the metrics that read an explanation's query x document map (`pair_map`) or its query-word scores
#: (`query_scores`); every other metric reads its document-word scores
MAP_OR_QUERY_METRICS = ("pair_deletion", "pair_insertion", "query_deletion")


class Comparisons:
    """`compare_to` tables keyed (ranker, metric, reference), exploratory (Holm within the table), and the
    primary family's rows re-adjusted over the whole report (`primary`). `constant`: the (ranker, explainer)
    pairs whose document-word explanations are mostly constant (`common.degenerate_shares`)."""

    def __init__(self, df: pd.DataFrame, suite_explainers: dict, rankers: list[str], metrics: list[str],
                 headlines: list[str], flagged: set[str], withheld: set[tuple[str, str]] = frozenset(),
                 constant: set[tuple[str, str]] = frozenset()):
        self.suite_explainers, self.constant = suite_explainers, set(constant)
        self.tables: dict[tuple[str, str, str], pd.DataFrame] = {}
        for r in rankers:
            for m in metrics:
                for ref in REFERENCES:
                    c = compare_to(df, r, m, ref)
                    if not c.empty:
                        self.tables[(r, m, ref)] = c
        rows = []
        for (r, m, ref), c in self.tables.items():
            if r in flagged or m not in headlines or (r, m) in withheld:  # withheld: failed validity there
                continue
            member = c.explainer.map(lambda e: self.competes(r, m, e) or (ref == "random" and e == REFERENCE))
            rows.append(c[member].assign(ranker=r, metric=m, reference=ref))
        fam = pd.concat(rows, ignore_index=True) if rows else pd.DataFrame()
        if not fam.empty:
            fam["p_family"] = holm(fam.p.tolist())
            fam["mdd_family"] = [minimum_detectable_difference(sd, n, len(fam), ALPHA)
                                 for sd, n in zip(fam.sd, fam.queries)]
            fam["verdict"] = [verdict(x.diff, x.ci_low, x.ci_high, x.p_family, x.min_diff) for x in fam.itertuples()]
        self.primary = fam
        self._primary_keys = ({(x["ranker"], x["metric"], x["reference"], x["explainer"]): x
                               for x in fam.to_dict("records")} if not fam.empty else {})

    def competes(self, ranker: str, metric: str, explainer: str) -> bool:
        """A real competitor (`roles`) whose explanation orders what `metric` reads on `ranker`."""
        return is_competitor(explainer, self.suite_explainers) and (
            metric in MAP_OR_QUERY_METRICS or (ranker, explainer) not in self.constant)

    @property
    def family_size(self) -> int:
        return len(self.primary)

    def table(self, ranker: str, metric: str, reference: str) -> pd.DataFrame:
        """One (ranker, metric, reference) table; rows of the primary family carry its verdict, adjusted p and
        minimum detectable difference, and `primary` = True."""
        c = self.tables.get((ranker, metric, reference))
        if c is None:
            return pd.DataFrame()
        c = c.copy()
        c["primary"] = False
        for i, e in zip(c.index, c.explainer):
            x = self._primary_keys.get((ranker, metric, reference, e))
            if x is not None:
                c.loc[i, ["verdict", "p_holm", "mdd", "primary"]] = [x["verdict"], x["p_family"], x["mdd_family"], True]
        return c

    def verdict_of(self, ranker: str, metric: str, reference: str, explainer: str) -> str | None:
        x = self._primary_keys.get((ranker, metric, reference, explainer))
        return None if x is None else x["verdict"]
