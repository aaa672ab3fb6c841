"""RESULTS.md's first screen: the answer card, the trust matrix, the cost strip and what the evidence does not
support, all computed from the run's `Evidence` (nothing written by hand)."""
from __future__ import annotations

import numpy as np
import pandas as pd

from metrics import METRICS

from ..stats import ALPHA, VERDICTS, rows_of
from .aliases import owner_of
from .common import arrow, fmt, md_table
from .diagnostics import removal_label
from .effectiveness import FIRST_STAGE, below_reference
from .flags import quality_floor
from .roles import REFERENCE, role
from .validity import validity_status

#: the marks of a trust-matrix cell against Grad-CAM (primary family verdicts, `stats.VERDICTS`)
MARKS = dict(zip(VERDICTS, ("▲", "▼", "≈", "?")))

#: a competitor's cell on a ranker where its document-word explanation is mostly constant: a tie order, no verdict
CONSTANT_MARK = "(constant)"

#: the roles shown as trust-matrix columns, in this order
COLUMN_ROLES = ("reference", "competitor", "exact", "oracle", "baseline")


def ranker_queries(ev, ranker: str, metric: str) -> int:
    g = rows_of(ev.df, ranker, metric)
    g = g[g.status == "ok"]
    return int(g.qid.nunique())


def matrix_columns(ev) -> list[str]:
    """The deduplicated explainers shown as columns: Grad-CAM, the competitors, exact decompositions, the oracle and
    random (other baselines, Grad-CAM's variants and corrupted references are on the ranker pages)."""
    names = list(dict.fromkeys(ev.df.explainer))
    keep = [e for e in names if role(e, ev.suite_explainers) in COLUMN_ROLES
            and (role(e, ev.suite_explainers) != "baseline" or e == "random")]
    return sorted(keep, key=lambda e: (COLUMN_ROLES.index(role(e, ev.suite_explainers)), e))


def trust_matrix(ev) -> pd.DataFrame:
    """Rows: explained rankers with nDCG@10, n queries, removal operator and the matrix metric's validity status;
    columns: deduplicated explainers; cells: the query-mean of the matrix metric and its primary-family mark
    against Grad-CAM. Flagged rankers' cells are in italics without marks."""
    m = ev.matrix_metric
    qv = ev.df[(ev.df.metric == m) & (ev.df.status == "ok")]
    from ..stats import query_values
    means = query_values(qv).groupby(["ranker", "explainer"]).value.mean() if not qv.empty else pd.Series(dtype=float)
    nd = dict(zip(ev.rankers.ranker, ev.rankers["ndcg@10"])) if not ev.rankers.empty else {}
    rows, columns = [], matrix_columns(ev)
    for r in ev.explained:
        flag = ev.flags.get(r)
        row = {"ranker": f"{r} ⚠" if flag else r, "nDCG@10": fmt(nd.get(r), 3),
               "queries": ranker_queries(ev, r, m),
               "removal": removal_label(ev.rankers, ev.suite.get("rankers", {}), r),
               "validity": validity_status(ev.validity, r, m)}
        for e in columns:
            owner = owner_of(ev.aliases, r, e)
            if owner is not None:
                row[e] = f"= {owner}"
                continue
            v = means.get((r, e))
            if v is None or not np.isfinite(v):
                row[e] = "-"
                continue
            if flag:
                row[e] = f"_{fmt(v)}_"
                continue
            if role(e, ev.suite_explainers) == "competitor" and not ev.comparisons.competes(r, m, e):
                row[e] = f"{fmt(v)} {CONSTANT_MARK}"
                continue
            mark = MARKS.get(ev.comparisons.verdict_of(r, m, REFERENCE, e) or "", "")
            row[e] = f"{fmt(v)}{' ' + mark if mark else ''}"
        rows.append(row)
    return pd.DataFrame(rows)


def cost_strip(ev) -> pd.DataFrame:
    """Per deduplicated explainer (the matrix's columns): model evaluations and median milliseconds per
    explanation, the median over the rankers it explained (each explanation counted once)."""
    c = ev.costs
    cols = [e for e in matrix_columns(ev) if e in set(c.explainer)]
    if not cols:
        return pd.DataFrame()
    per = c.groupby(["explainer", "ranker"]).agg(rows=("rows", "mean"), ms=("seconds", "median"))
    out = {"": ["model evaluations", "median ms"]}
    for e in cols:
        g = per.loc[e]
        out[e] = [fmt(float(np.nanmedian(g.rows)), 0) if g.rows.notna().any() else "-",
                  fmt(float(np.median(g.ms)) * 1000, 1)]
    return pd.DataFrame(out)


def _tally(fam: pd.DataFrame) -> str:
    counts = fam.verdict.value_counts()
    return ", ".join(f"{int(counts.get(v, 0))} {v}" for v in MARKS)


def _n_range(ns) -> str:
    ns = sorted(set(int(n) for n in ns))
    return f"n = {ns[0]}" if len(ns) == 1 else f"n = {ns[0]}-{ns[-1]} queries per ranker"


def _tag(ev, rankers: list[str], metric: str) -> str:
    st = [validity_status(ev.validity, r, metric) for r in rankers]
    if st and all(s.startswith("validated") for s in st):
        return "validated"
    if any(s.startswith("validated") for s in st):
        return "validated on " + ", ".join(r for r, s in zip(rankers, st) if s.startswith("validated")) + \
            "; anchored but not validated elsewhere"
    return "anchored but not validated"


def answer_card(ev) -> list[str]:
    """3-6 scoped claims from the primary family, each tagged and with its n."""
    fam, m = ev.comparisons.primary, ev.matrix_metric
    if fam.empty or m is None:
        return []
    claims = []
    vs_g = fam[(fam.reference == REFERENCE) & (fam.metric == m)]
    if not vs_g.empty:
        rk = list(dict.fromkeys(vs_g.ranker))
        claims.append(f"**Grad-CAM against {vs_g.explainer.nunique()} competing explainers** on {m} "
                      f"{arrow(m)} over {len(rk)} rankers ({', '.join(rk)}): of {len(vs_g)} comparisons the "
                      f"competitor is {_tally(vs_g)} (▲ better than Grad-CAM, ▼ worse). "
                      f"[{_tag(ev, rk, m)}; {_n_range(vs_g.queries)}]")
        better = vs_g[vs_g.verdict == "better"].groupby("explainer").ranker.nunique().sort_values(ascending=False)
        if len(better):
            top = better[better == better.iloc[0]].index.tolist()
            scope = (f"on {int(better.iloc[0])} of {len(rk)} rankers; no competitor is better on every ranker"
                     if better.iloc[0] < len(rk) else "on every ranker where both ran")
            claims.append(f"**Most often better than Grad-CAM** on {m}: {', '.join(top)} ({scope}). "
                          f"[{_tag(ev, rk, m)}; {_n_range(vs_g.queries)}]")
    g_r = fam[(fam.reference == "random") & (fam.explainer == REFERENCE) & (fam.metric == m)]
    if not g_r.empty:
        yes = g_r[g_r.verdict == "better"].ranker.tolist()
        claims.append(f"**Grad-CAM against random** on {m}: better on {len(yes)} of {len(g_r)} rankers"
                      + (f" ({', '.join(yes)})" if yes else "") + ("; not resolved or worse on "
                      + ", ".join(g_r[g_r.verdict != 'better'].ranker) if len(yes) < len(g_r) else "")
                      + f". [{_tag(ev, g_r.ranker.tolist(), m)}; {_n_range(g_r.queries)}]")
    valid = [r for r in ev.explained if validity_status(ev.validity, r, m).startswith("validated")
             and r not in ev.flags]
    for r in valid[:1]:
        vr = fam[(fam.ranker == r) & (fam.reference == "random") & (fam.metric == m)]
        if not vr.empty:
            claims.append(f"**Where the ground truth is known** ({r}, {validity_status(ev.validity, r, m)}): "
                          f"{int((vr.verdict == 'better').sum())} of {len(vr)} explainers are better than random "
                          f"on {m}. [validated; n = {int(vr.queries.max())} queries]")
    mdd = fam[fam.metric == m].mdd_family
    unresolved = int((fam.verdict == "not resolved").sum())
    claims.append(f"**Resolution**: {unresolved} of {len(fam)} primary comparisons are not resolved; on {m} the "
                  f"median minimum detectable difference is {fmt(float(np.median(mdd)))} against a declared "
                  f"minimum meaningful difference of {fmt(float(fam[fam.metric == m].min_diff.iloc[0]))} "
                  f"(Holm over the {len(fam)} comparisons at once). [descriptive; {_n_range(fam.queries)}]")
    return ["## The answer", ""] + [f"{i}. {c}" for i, c in enumerate(claims[:6], 1)] + [""]


def not_supported(ev) -> list[str]:
    """The box: what a reader must not conclude from this run."""
    fam, m = ev.comparisons.primary, ev.matrix_metric
    nq = ev.df[ev.df.docid != "*"].qid.nunique()
    lines = [f"a single best explainer: the rankers disagree and {int((fam.verdict == 'not resolved').sum())} "
             f"of {len(fam)} primary comparisons are not resolved (\"not resolved\" is not \"no difference\")"
             if not fam.empty else "a single best explainer",
             f"conclusions beyond `{ev.suite.get('collection')}` ({nq} queries explained in all) or beyond these "
             "rankers",
             "Grad-CAM's wins over baselines, over its own variants, over corrupted references or over the search "
             "oracle as evidence for Grad-CAM: they are outside the tally"]
    if ev.flags:
        lines.append("any verdict on " + "; ".join(f"{r} ({why})" for r, why in ev.flags.items())
                     + ": greyed in the matrix")
    if quality_floor(ev.rankers) is None and not ev.rankers.empty and "ndcg@10" in ev.rankers:
        lines.append("that the explained models rank well above a random ranking: the run has no random ranker row "
                     "(`[rankers.random]` with explain = false), so the quality floor (the nDCG@10 midpoint of "
                     "random and the candidates' ranking) was not checked")
    below = {r: v for r, v in below_reference(ev.rankers).items() if r in ev.explained}
    if below:
        scores = ", ".join(f"{r} {fmt(x, 3)}" for r, (x, _, _) in below.items())
        _, first, ref = next(iter(below.values()))
        what = "the candidates' own first stage" if ref == FIRST_STAGE else f"{ref} re-ranking the same candidates"
        lines.append(f"what a reranker worth deploying attends to, from {', '.join(below)}: they rank below "
                     f"{what} (nDCG@10 {scores} against {fmt(first, 3)}; the paired 95% CI of the per-query "
                     "difference is below 0), so their explanations say how these models score, not how a good "
                     "reranker does")
    circ = [r for r in ev.explained if validity_status(ev.validity, r, m).startswith("consistency")]
    nov = [r for r in ev.explained if validity_status(ev.validity, r, m) == "not validated"]
    if circ or nov:
        lines.append(f"{m} as a validated measure on " + ", ".join(circ + nov) + ": its reference there is the "
                     "search oracle (a consistency check) or none")
    return ["> **What this evidence does not support**", ">"] + [f"> - {x}" for x in lines] + [""]


def first_screen(ev, pages: dict[str, str]) -> list[str]:
    """The answer card, the trust matrix (linking each ranker's page), the cost strip and the box."""
    m = ev.matrix_metric
    if m is None:
        return ["## The answer", "", "None: no declared headline metric passed the validity test on this run (see "
                "\"Metric validity\"), so it supports no claim about which explanation is faithful.", ""]
    md = answer_card(ev)
    t = trust_matrix(ev)
    t["ranker"] = [f"[{c}]({pages[r]})" if r in pages else c for r, c in zip(ev.explained, t.ranker)]
    md += ["## Trust matrix", "",
           f"Each cell: the query-mean of {m} {arrow(m)} ({METRICS[m].unit}) and the primary-family verdict against "
           f"Grad-CAM: {', '.join(f'{v} {k}' for k, v in MARKS.items())} (Wilcoxon on paired queries, Holm over all "
           f"{ev.comparisons.family_size} primary comparisons at alpha {ALPHA}, and at least the declared minimum "
           "meaningful difference). Identical explainers are one entry (\"= name\"); ⚠ rankers are flagged (why: the "
           "box below) and their cells (italic) get no verdict" + (
               f"; {CONSTANT_MARK}: the explainer's document-word explanation is constant on most of the ranker's "
               "pairs, so its curve reads a tie order: no verdict"
               if t.astype(str).apply(lambda c: c.str.endswith(CONSTANT_MARK)).any().any() else "")
           + ". Every ranker's full leaderboards, comparisons, validity, skips and costs are on its page (the "
           "ranker's link).", "",
           md_table(t), ""]
    same = [f"{r}: " + "; ".join(f"{k} = {', '.join(a)}" for k, a in g.items()) for r, g in ev.aliases.items()]
    if same:
        md += ["Identical on every sample (one entry, the first name): " + " · ".join(same) + ".", ""]
    strip = cost_strip(ev)
    if not strip.empty:
        env = ev.meta.get("environment", {})
        md += ["**Cost strip** (per explanation, median over the rankers each explainer explained; measured on "
               f"`{env.get('device')}`, {env.get('device_name')}):", "", md_table(strip), ""]
    md += not_supported(ev)
    return md
