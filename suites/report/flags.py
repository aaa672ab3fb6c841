"""Rankers whose faithfulness values are not read as evidence, and why (shown greyed, given no verdicts).

- operator-dominated: random removal of half the explained document's words already sinks it (median standing
  below 0.5; `metrics.diagnostics`), so its curves measure the removal operator;
- below the quality floor: a model closer to the random ranker's nDCG@10 than to the first stage's it
  re-ranks (the floor is their midpoint), or whose empty document scores at least as high as the full one on
  most explained pairs (a model that has not learnt relevance has nothing to explain)."""
from __future__ import annotations

import pandas as pd

from metrics.curves import EMPTY_NOT_BELOW

from .diagnostics import dominated_rankers

#: the share of explained pairs above which an empty document outscoring the full one flags a model
EMPTY_ABOVE_SHARE = 0.5


def quality_floor(rankers: pd.DataFrame) -> float | None:
    """The nDCG@10 midpoint between the random ranker and the first stage (the shipped first stage where the
    run has it, else bm25): a model below it is closer to random than to what it re-ranks. None when the run
    lacks either row."""
    if rankers.empty or "ndcg@10" not in rankers:
        return None
    nd = dict(zip(rankers.ranker, rankers["ndcg@10"]))
    first = next((v for k, v in nd.items() if str(k).startswith("first stage")), nd.get("bm25"))
    if first is None or "random" not in nd or pd.isna(first) or pd.isna(nd["random"]):
        return None
    return (float(first) + float(nd["random"])) / 2


def empty_above_full(df: pd.DataFrame) -> dict[str, float]:
    """ranker -> share of its explained pairs whose empty document scores at least as high as the full one
    (from the score-normalised deletion rows, which record exactly that when they cannot be defined)."""
    d = df[(df.metric == "deletion") & ((df.status == "ok") | (df.message == EMPTY_NOT_BELOW))]
    if d.empty:
        return {}
    per_pair = d.assign(above=d.message == EMPTY_NOT_BELOW).groupby(["ranker", "qid", "docid"]).above.any()
    return per_pair.groupby(level=0).mean().to_dict()


def ranker_flags(df: pd.DataFrame, rankers: pd.DataFrame) -> dict[str, str]:
    """ranker -> why it is flagged (module docstring), for the explained rankers that are."""
    out: dict[str, str] = {}
    for r in sorted(dominated_rankers(rankers)):
        out[r] = "operator-dominated"
    floor = quality_floor(rankers)
    explained = set(df.ranker)
    if floor is not None:
        for r, v in zip(rankers.ranker, rankers["ndcg@10"]):
            if r in explained and pd.notna(v) and v < floor:
                out.setdefault(r, f"below the quality floor (nDCG@10 {v:.3f} < {floor:.3f})")
    for r, share in empty_above_full(df).items():
        if share > EMPTY_ABOVE_SHARE:
            out.setdefault(r, f"below the quality floor (empty document >= full on {share:.0%} of pairs)")
    return out
