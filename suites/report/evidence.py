"""One resolved view of a run for every part of the report: what ran, identical explainers collapsed, flagged
rankers, validity, and the comparisons computed once (the primary family controlled across the whole report)."""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import pandas as pd

from metrics import METRICS

from .aliases import alias_groups, collapse, label
from .common import CONSTANT_SHARE, degenerate_shares
from .cost import explanation_costs
from .flags import ranker_flags
from .primary import Comparisons
from .validity import demoted_metrics, validity_table, withheld


#: the trust matrix's metric: the deletion standing AUC, defined on every pair and free of the search oracle
MATRIX_METRIC = "rank_deletion"


@dataclass
class Evidence:
    meta: dict
    raw: pd.DataFrame                      # every row of the run
    df: pd.DataFrame                       # sample rows with aliases collapsed
    rankers: pd.DataFrame                  # the effectiveness table
    exps: list[dict]
    aliases: dict[str, dict[str, list[str]]]
    flags: dict[str, str]                  # ranker -> why flagged
    metric_order: list[str]
    headlines: list[str]                   # declared headlines that passed validity, in metric order
    validity: pd.DataFrame
    comparisons: Comparisons
    sweep: list[str] = field(default_factory=list)   # Grad-CAM layer-sweep explainers (a study, not competitors)

    @property
    def suite(self) -> dict:
        return self.meta.get("suite", {})

    @property
    def suite_explainers(self) -> dict:
        return self.suite.get("explainers", {})

    @property
    def explained(self) -> list[str]:
        """The explained rankers, in the run's order."""
        return list(self.df.ranker.unique())

    @cached_property
    def costs(self) -> pd.DataFrame:
        """One row per explanation (`cost.explanation_costs`), computed once for the cost strip, the figures and
        the ranker pages."""
        return explanation_costs(self.raw, self.exps)

    @property
    def matrix_metric(self) -> str | None:
        if MATRIX_METRIC in self.headlines:
            return MATRIX_METRIC
        return self.headlines[0] if self.headlines else None

    def label(self, ranker: str, explainer: str) -> str:
        return label(self.aliases, ranker, explainer)

    def labels(self) -> dict[tuple[str, str], str]:
        return {(r, e): label(self.aliases, r, e) for r, g in self.aliases.items() for e in g}


def gather(meta: dict, df: pd.DataFrame, rankers: pd.DataFrame, exps: list[dict]) -> Evidence:
    """The run's evidence (`df` non-empty)."""
    from .figures import layer_sweep
    suite = meta.get("suite", {})
    se = suite.get("explainers", {})
    metric_order = [m for m in METRICS if m in set(df.metric)]
    table = validity_table(df, se, metric_order)
    demoted = demoted_metrics(table)
    heads = [m for m in metric_order if METRICS[m].headline and m not in demoted]
    held = withheld(table)
    groups = alias_groups(df, se)
    # the layer sweep is a study of Grad-CAM itself, not a competitor: one of its layers is gradcam's own
    sweep = [n for _, n in layer_sweep(se)]
    sweep = sweep if len(sweep) >= 2 else []
    flat = collapse(df, groups)
    flat = flat[~flat.explainer.isin(sweep)]
    flags = ranker_flags(df, rankers)
    constant = {k for k, (c, n) in degenerate_shares(exps).items() if n and c / n >= CONSTANT_SHARE}
    comps = Comparisons(flat, se, list(flat.ranker.unique()), metric_order, heads, set(flags), held, constant)
    return Evidence(meta=meta, raw=df, df=flat, rankers=rankers, exps=exps, aliases=groups, flags=flags,
                    metric_order=metric_order, headlines=heads, validity=table, comparisons=comps,
                    sweep=sweep)
