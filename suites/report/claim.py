"""RESULTS.md "The seed's claim": Grad-CAM against its competitors at the seed paper's granularities."""
from __future__ import annotations

import pandas as pd

from .comparisons import comparison_table


#: the rankers whose interaction layer the seed's Grad-CAM reads, and the metrics of its claim
SEED_RANKERS = ("knrm", "matchpyramid", "late_interaction")


SEED_METRICS = ("pair_deletion", "pair_insertion", "rank_deletion", "rank_insertion", "snippet_sufficiency",
                "query_deletion")


def seed_claim_section(df: pd.DataFrame) -> list[str]:
    """The seed's claim (Grad-CAM on interaction layers; snippets and query-term importance) on its own rankers:
    every Grad-CAM variant and competitor against Grad-CAM at pair, term, snippet and query level, and a
    paragraph counting what the paired comparisons support."""
    rankers = [r for r in SEED_RANKERS if r in set(df.ranker)]
    metrics = [m for m in SEED_METRICS if m in set(df.metric)]
    if not rankers or not metrics or "gradcam" not in set(df.explainer):
        return []
    md = ["## The seed's claim", "",
          "Choi, Choi & Rhee (2020) explain interaction rankers with Grad-CAM's query x document map and use it "
          "for snippets and query-term importance. Here each explainer against Grad-CAM (ReLU, channel-mean "
          "weights: the seed's) on the seed's rankers, at pair level (pair_deletion / pair_insertion), term "
          "level (rank_deletion / rank_insertion), snippet level (snippet_sufficiency) and query level "
          "(query_deletion); cells as in \"Comparisons that matter\" (+ = better than Grad-CAM).", ""]
    compared: dict[tuple[str, str], pd.DataFrame] = {}
    for r in rankers:
        md += comparison_table(df, r, metrics, "gradcam", compared)
    tally = pd.concat(compared.values()).verdict.value_counts().to_dict() if compared else {}
    total = sum(tally.values())
    if total:
        parts = ", ".join(f"{tally.get(v, 0)} {v}" for v in ("better", "worse", "negligible", "not shown different",
                                                              "underpowered"))
        md += [f"What the evidence supports: of {total} (ranker, metric, explainer) comparisons with Grad-CAM, "
               f"{parts} (better = the explainer beats Grad-CAM by at least the minimum meaningful difference "
               "after Holm). A claim that Grad-CAM is the most faithful explanation of these rankers holds only "
               "where no explainer is better." + _seed_claim_detail(compared, rankers), ""]
    return md


def _seed_claim_detail(compared: dict[tuple[str, str], pd.DataFrame], rankers: list[str]) -> str:
    """Per ranker and seed's-use metric (pair map, snippet, query terms): which explainers beat Grad-CAM and
    how many it beats, from the section's paired comparisons (`compared`: (ranker, metric) -> compare_to)."""
    out = []
    for r in rankers:
        parts = []
        for m in ("pair_deletion", "snippet_sufficiency", "query_deletion"):
            c = compared.get((r, m))
            if c is None:
                continue
            better = sorted(c[c.verdict == "better"].explainer)
            worse = int((c.verdict == "worse").sum())
            parts.append(f"{m}: {len(better)} of {len(c)} better than Grad-CAM"
                         + (f" ({', '.join(better)})" if better else "") + f", {worse} worse")
        if parts:
            out.append(f"{r}: " + "; ".join(parts))
    return (" Per ranker, at the seed's own granularity and uses: " + ". ".join(out) + ".") if out else ""
