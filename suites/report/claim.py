"""RESULTS.md "The seed's claim": Grad-CAM against real competitors at the seed paper's granularities.

Only competitors count (`roles`): baselines, Grad-CAM's own variants, corrupted references, the search oracle
and exact decompositions are outside the tally, and identical explainers are one entry (`aliases`); an explainer
whose document-word explanation is mostly constant on a ranker enters only its pair and query tallies
(`Comparisons.competes`). The tally is given per granularity (pair, word, snippet, query) and names its competitors."""
from __future__ import annotations

import pandas as pd

from .aliases import aliases_of
from .common import md_table
from .roles import REFERENCE, is_competitor

#: the rankers whose interaction layer the seed's Grad-CAM reads
SEED_RANKERS = ("knrm", "matchpyramid", "late_interaction")

#: the seed paper's granularities and the metrics that measure each
GRANULARITIES = {"pair": ("pair_deletion", "pair_insertion"), "word": ("rank_deletion", "rank_insertion"),
                 "snippet": ("snippet_sufficiency",), "query": ("query_deletion",)}


def claim_rows(ev) -> pd.DataFrame:
    """One row per (granularity, ranker, metric, competitor) comparison with Grad-CAM on the seed's rankers that
    are not flagged; `primary` where the verdict is the report-wide one."""
    rows = []
    for gran, metrics in GRANULARITIES.items():
        for r in SEED_RANKERS:
            if r in ev.flags:
                continue
            for m in metrics:
                c = ev.comparisons.table(r, m, REFERENCE)
                for x in c.itertuples() if not c.empty else []:
                    if ev.comparisons.competes(r, m, x.explainer):
                        rows.append({"granularity": gran, "ranker": r, "metric": m, "explainer": x.explainer,
                                     "verdict": x.verdict,
                                     "primary": bool(x.primary)})
    return pd.DataFrame(rows)


def _constant_note(ev) -> str:
    """Names the competitors left out of the word and snippet tallies for a mostly-constant document explanation."""
    names = sorted({e for r, e in ev.comparisons.constant
                    if r in SEED_RANKERS and is_competitor(e, ev.suite_explainers)})
    if not names:
        return ""
    one = len(names) == 1
    return (f"; {', '.join(names)} {'gives' if one else 'give'} a constant document-word explanation on most pairs "
            f"(it orders no word: its word curves read a tie order), so {'it competes' if one else 'they compete'} "
            "at pair and query level only")


def seed_claim_section(ev, pages: dict[str, str]) -> list[str]:
    """The tally per granularity: competitors better / worse / negligible / not resolved against Grad-CAM, with
    the competitors named; the per-ranker tables are on the ranker pages."""
    rows = claim_rows(ev)
    rankers = [r for r in SEED_RANKERS if r in set(ev.df.ranker) and r not in ev.flags]
    if rows.empty and not rankers:
        return []
    out = []
    for gran, metrics in GRANULARITIES.items():
        g = rows[rows.granularity == gran] if not rows.empty else rows
        if g.empty:
            ran = [m for m in metrics if m in set(ev.df[ev.df.ranker.isin(rankers)].metric)]
            if ran:
                out.append({"granularity": gran, "metrics": ", ".join(ran), "rankers": ", ".join(rankers),
                            "comparisons": 0, "competitors": "none ran at this granularity (only Grad-CAM, its "
                            "variants or baselines): nothing decides the claim here"})
            continue
        counts = g.verdict.value_counts()
        names = {}
        for r, e in zip(g.ranker, g.explainer):
            names.setdefault(e, set()).update(aliases_of(ev.aliases, r, e))
        better = sorted(set(g[g.verdict == "better"].explainer))
        out.append({"granularity": gran, "metrics": ", ".join(dict.fromkeys(g.metric)),
                    "rankers": ", ".join(dict.fromkeys(g.ranker)), "comparisons": len(g),
                    "competitor better": int(counts.get("better", 0)),
                    "Grad-CAM better": int(counts.get("worse", 0)),
                    "negligible": int(counts.get("negligible", 0)), "not resolved": int(counts.get("not resolved", 0)),
                    "family": "primary" if g.primary.all() else "exploratory" if not g.primary.any() else "mixed",
                    "competitors": ", ".join(e + (f" (= {', '.join(sorted(a))})" if a else "")
                                             for e, a in sorted(names.items())),
                    "better than Grad-CAM": ", ".join(better) or "none"})
    links = ", ".join(f"[{r}]({pages[r]})" for r in SEED_RANKERS if r in pages)
    return ["## The seed's claim", "",
            "Choi, Choi & Rhee (2020) explain interaction rankers with Grad-CAM's query x document map and use it "
            "for snippets and query-term importance. Here every real competitor against Grad-CAM on the seed's "
            "rankers at each granularity: pair (the query x document map), word (the document's words), snippet "
            "and query (query-term importance). Baselines, Grad-CAM's variants, corrupted references, the search "
            "oracle and exact decompositions are outside the tally; identical explainers are one entry"
            + _constant_note(ev) + ". Word-level "
            "verdicts are the primary family's; the other granularities are exploratory (Holm within each "
            f"table). The tables per comparison are on the ranker pages ({links}).", "",
            md_table(pd.DataFrame(out).fillna("-")), ""]
