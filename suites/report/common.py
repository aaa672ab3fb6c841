"""Formatting shared by the report's sections: numbers, Markdown tables (cells escaped), matplotlib, metric labels."""
from __future__ import annotations

import numpy as np
import pandas as pd

from metrics import METRICS

from .markup import md_cell


GRID = np.linspace(0, 1, 21)


def fmt(x, nd=3) -> str:
    return "n/a" if x is None or not np.isfinite(x) else f"{x:.{nd}f}"


def md_table(df: pd.DataFrame) -> str:
    cols = list(df.columns)
    lines = ["| " + " | ".join(map(md_cell, cols)) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(md_cell(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join(lines)


def pyplot():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def explanation_rows(exps: list[dict]) -> dict[tuple[str, str], float]:
    """(ranker, explainer) -> mean model evaluations (pairs scored) per explanation, where recorded."""
    acc: dict[tuple[str, str], list[float]] = {}
    for e in exps:
        if e.get("forward_rows") is not None:
            acc.setdefault((e["ranker"], e["explainer"]), []).append(float(e["forward_rows"]))
    return {k: float(np.mean(v)) for k, v in acc.items()}


def score_normalised(metric: str) -> bool:
    return metric in ("deletion", "insertion", "comprehensiveness", "sufficiency")


def arrow(m: str) -> str:
    return "↓" if METRICS[m].direction == "lower" else "↑"


#: an explainer whose document-word explanations are constant on at least this share of a ranker's pairs orders no
#: word there: it is left out of the word-level comparisons and the seed orderings
CONSTANT_SHARE = 0.5


def degenerate_shares(exps: list[dict]) -> dict[tuple[str, str], tuple[int, int]]:
    """(ranker, explainer) -> (constant explanations, explanations): a constant explanation orders no token,
    so every curve it gets is a tie order, not the explainer's view."""
    out: dict[tuple[str, str], list[int]] = {}
    for e in exps:
        s = e.get("doc_scores")
        if s is None:
            continue
        c = out.setdefault((e["ranker"], e["explainer"]), [0, 0])
        c[0] += int(len(s) > 1 and float(np.ptp(np.asarray(s, dtype=float))) == 0.0)
        c[1] += 1
    return {k: (v[0], v[1]) for k, v in out.items()}


def metric_label(m: str, ranker: str) -> str:
    """groundtruth_spearman is ground truth on bm25 only; elsewhere it is agreement with BM25."""
    if m == "groundtruth_spearman" and ranker != "bm25":
        return "bm25_agreement"
    return m


def duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.0f} min" if seconds < 7200 else \
        f"{seconds / 3600:.1f} h"


#: a suite table's settings that say what it explains (which explainers, metrics and queries), not what its model
#: computes: two tables that differ only in these explain the same model
WHAT_IT_EXPLAINS = ("explainers", "metrics", "skip", "queries")


def table_key(name: str, table: dict, ignore) -> tuple:
    """(ranker type, the suite table's other settings) with the keys in `ignore` left out: two tables with one key
    differ only in what `ignore` names (a training seed, a removal operator, what they explain)."""
    return (table.get("type") or name, sorted((k, repr(v)) for k, v in table.items() if k not in ignore))
