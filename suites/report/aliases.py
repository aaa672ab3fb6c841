"""Identical explainers are one entry: per ranker, explainers whose values are equal on every (sample, metric)
row (and missing on the same rows) are collapsed into the first by role (`roles.ROLES`) and suite order, which
is named with its aliases in every table, tally and count of the report."""
from __future__ import annotations

import numpy as np
import pandas as pd

from .roles import ROLES, role

#: values equal to this many decimals are identical (float noise below it is not a difference)
DECIMALS = 12


def alias_groups(df: pd.DataFrame, suite_explainers: dict) -> dict[str, dict[str, list[str]]]:
    """ranker -> {kept explainer: [its aliases]} for every group of >= 2 explainers with identical values on
    every sample-level row of that ranker (rows of a status other than ok count as missing; an explainer without
    one ok row is nobody's alias)."""
    order = {n: i for i, n in enumerate(suite_explainers)}

    def rank(e: str) -> tuple:
        return ROLES.index(role(e, suite_explainers)), order.get(e, len(order)), e

    out: dict[str, dict[str, list[str]]] = {}
    rows = df[df.docid != "*"]
    for r, g in rows.groupby("ranker", sort=False):
        v = g.value.astype(float).where(g.status == "ok").round(DECIMALS)
        keyed = pd.DataFrame({"explainer": g.explainer, "key": g.qid.astype(str) + "\x1f" + g.docid.astype(str)
                              + "\x1f" + g.metric.astype(str), "value": v})
        by: dict[tuple, list[str]] = {}
        for e, h in keyed.groupby("explainer", sort=False):
            if h.value.isna().all():  # never ran on this ranker (skipped or failed): nothing to be identical in
                continue
            h = h.sort_values("key", kind="stable")
            sig = (tuple(h.key), tuple(np.where(h.value.isna(), np.inf, h.value)))
            by.setdefault(sig, []).append(e)
        groups = {}
        for names in by.values():
            if len(names) >= 2:
                names = sorted(names, key=rank)
                groups[names[0]] = names[1:]
        if groups:
            out[r] = groups
    return out


def collapse(df: pd.DataFrame, groups: dict[str, dict[str, list[str]]]) -> pd.DataFrame:
    """`df` without the rows of aliases (their kept explainer's rows stand for them)."""
    drop = {(r, a) for r, g in groups.items() for aliases in g.values() for a in aliases}
    if not drop:
        return df
    mask = np.array([(r, e) in drop for r, e in zip(df.ranker, df.explainer)], dtype=bool)
    return df[~mask]


def aliases_of(groups: dict[str, dict[str, list[str]]], ranker: str, explainer: str) -> list[str]:
    return list(groups.get(ranker, {}).get(explainer, []))


def owner_of(groups: dict[str, dict[str, list[str]]], ranker: str, explainer: str) -> str | None:
    """The kept explainer `explainer` is an alias of on this ranker (None when it is nobody's alias)."""
    return next((kept for kept, aliases in groups.get(ranker, {}).items() if explainer in aliases), None)


def label(groups: dict[str, dict[str, list[str]]], ranker: str, explainer: str) -> str:
    """"name (= alias, alias)" where the explainer stands for identical ones on this ranker, else the name."""
    a = aliases_of(groups, ranker, explainer)
    return f"{explainer} (= {', '.join(a)})" if a else explainer
