"""RESULTS.md "Metric validity" (corruption ladders), the meta-evaluation of the metrics, and the IG completeness
check."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd

from metrics import METRICS

from ..stats import ALPHA, kendalls_w, metric_agreement, row_info, separation
from .common import arrow, fmt, md_table


def corruption_ladders(suite_explainers: dict) -> dict[str, list[tuple[float, str]]]:
    """base explainer -> [(fraction, suite explainer name)] from the suite's `corrupted` explainers, with the
    base itself at fraction 0 where the suite runs it."""
    ladders: dict[str, list[tuple[float, str]]] = {}
    for name, t in suite_explainers.items():
        if (t.get("type") or name) == "corrupted":
            ladders.setdefault(t.get("base", "greedy"), []).append((float(t.get("fraction", 0.5)), name))
    for base, steps in ladders.items():
        if base in suite_explainers and not any(f == 0 for f, _ in steps):
            steps.append((0.0, base))
        steps.sort()
    return {b: s for b, s in ladders.items() if len(s) >= 2}


#: ladder references that are a metric's own optimiser (the search oracle): passing is a consistency check
CIRCULAR_TYPES = ("greedy",)


def _ladder_row(ranker: str, reference: str, metric: str, per: pd.DataFrame, fractions: list[float],
                circular: bool) -> dict:
    """One validity row: `per` [qid x step] holds the reference's query values at each corrupted share
    `fractions` (0 first, fully corrupted last). Valid when the oriented query-means do not rise with the share
    (tolerance a quarter of the metric's minimum meaningful difference) and the reference beats its fully
    corrupted version on paired queries (rank-biserial r > 0, Wilcoxon p < alpha). With too few queries for
    any outcome to reach p < alpha (the exact test's smallest p, 2 / 2^n) the test cannot be passed: the row
    says so (`_tested` False) and neither validates nor fails the metric."""
    from ..stats import min_meaningful_difference, orientation, paired_test, rank_biserial, smallest_holm_p
    o = orientation(metric)
    cols = list(per.columns)
    means = [o * float(per[c].mean()) for c in cols]
    tol = 0.25 * min_meaningful_difference(metric)
    mono = all(b <= a + tol for a, b in zip(means, means[1:]))
    d = o * (per[cols[0]] - per[cols[-1]]).to_numpy()
    eff, p = rank_biserial(d), paired_test(per[cols[0]].to_numpy(), per[cols[-1]].to_numpy())
    tested = smallest_holm_p(len(per), 1) < ALPHA
    ok = tested and mono and eff > 0 and p < ALPHA
    return {"_metric": metric, "_ok": ok, "_tested": tested, "_circular": circular, "ranker": ranker,
            "reference": reference,
            "metric": f"{metric} {arrow(metric)}", "queries": len(per),
            "means by corrupted share": ", ".join(f"{f:g}: {o * v:.3f}" for f, v in zip(fractions, means)),
            "monotone": "yes" if mono else "no",
            "clean vs fully corrupted": f"{d.mean():+.3f}, r={eff:+.2f}, p={p:.2g}",
            "verdict": ("consistent" if circular else "valid") if ok else "fails" if tested else "too few queries"}


def validity_table(df: pd.DataFrame, suite_explainers: dict, metrics: list[str]) -> pd.DataFrame:
    """The corruption test (`_ladder_row`: a reference explanation shuffled on a growing share of tokens) for
    every declared headline metric on every ranker where a ladder ran, from the suite's `corrupted` explainers
    and from the search oracle's stored ladder (`_stored_oracle_ladders`). One row per (reference, ranker,
    metric): the shown columns, and `_metric`, `_ok`, `_circular` (the reference is the search oracle, the
    curves' own optimiser)."""
    from ..stats import wide_queries
    ladders = corruption_ladders(suite_explainers)
    heads = [m for m in metrics if METRICS[m].headline]
    if df.empty:
        return pd.DataFrame()
    rows = []
    for base, steps in ladders.items():
        circular = ((suite_explainers.get(base) or {}).get("type") or base) in CIRCULAR_TYPES
        for r in df.ranker.unique():
            for m in heads:
                wide = wide_queries(df, r, m)
                names = [n for _, n in steps if n in wide]
                if len(names) < 2:
                    continue
                both = wide[names].dropna()
                if len(both) < 2:
                    continue
                rows.append(_ladder_row(r, base, m, both, [f for f, n in steps if n in names], circular))
    rows += _stored_oracle_ladders(df, heads, {(r["ranker"], r["_metric"]) for r in rows if r["_circular"]})
    return pd.DataFrame(rows)


#: the AUC metric each anchored gain's stored ladder checks
_LADDER_OF = {"rank_deletion_gain": "rank_deletion", "rank_insertion_gain": "rank_insertion"}


def _stored_oracle_ladders(df: pd.DataFrame, heads: list[str], done: set) -> list[dict]:
    """The consistency ladder every gain row records (`metrics.anchored.LADDER`: the oracle's stored order with
    a growing share of its ranks shuffled), as validity rows of the AUC metric it measures and of the gain itself,
    on every ranker where the gains ran and no suite ladder on the oracle did (transformers included). A gain
    is an affine map of the same AUC on each pair, (A_random - A) / (A_random - A_oracle), aggregated like the
    gains' leaderboards as a ratio of query means: a step's query value is mean(A_random - A_step) /
    mean(A_random - A_oracle) over the query's pairs (the uncorrupted order: 1); no model row is added."""
    rows = []
    for gain, m in _LADDER_OF.items():
        g = df[(df.metric == gain) & (df.status == "ok") & (df.docid != "*")].drop_duplicates(["ranker", "qid",
                                                                                              "docid"])
        for r, rg in g.groupby("ranker", sort=False):
            info = [row_info(i) for i in rg["info"]]
            if not all("oracle_ladder" in i for i in info):
                continue
            shares = ["0"] + sorted(info[0]["oracle_ladder"], key=float)
            auc = pd.DataFrame([{"qid": q, "_random": i["random_auc"], "0": i["oracle_auc"], **i["oracle_ladder"]}
                                for q, i in zip(rg.qid, info)]).groupby("qid").mean()
            for target in (m, gain):
                if target not in heads or (r, target) in done or len(auc) < 2:
                    continue
                per = auc[shares] if target == m else \
                    auc[shares].rsub(auc["_random"], axis=0).div(auc["_random"] - auc["0"], axis=0)
                rows.append(_ladder_row(r, "search oracle (stored order)", target, per, [float(f) for f in shares],
                                        True))
    return rows


def withheld(table: pd.DataFrame) -> set[tuple[str, str]]:
    """(ranker, metric) where a headline metric failed the corruption test: it gives no verdicts on that ranker
    (its comparisons there are exploratory), on that ranker only."""
    return set() if table.empty else set(zip(*[table[table._tested & ~table._ok][c] for c in ("ranker", "_metric")]))


def demoted_metrics(table: pd.DataFrame) -> set[str]:
    """The declared headline metrics that failed the corruption test on every ranker where it could be passed
    (they lose their ★)."""
    if table.empty:
        return set()
    t = table[table._tested]
    fails = t[~t._ok].groupby("_metric").ranker.nunique()
    tested = t.groupby("_metric").ranker.nunique()
    return {m for m, n in fails.items() if n == tested[m]}


def validity_status(table: pd.DataFrame, ranker: str, metric: str) -> str:
    """"validated (REFERENCE)" where a reference that is not the metric's optimiser passed on this ranker,
    "fails (REFERENCE)" where any failed, "consistency check only (REFERENCE)" where only the search oracle's
    ladder ran, "not validated (too few queries)" where no ladder had the queries to pass, else "not validated"."""
    if table.empty:
        return "not validated"
    t = table[(table.ranker == ranker) & (table._metric == metric)]
    if t.empty:
        return "not validated"
    if not t._tested.any():
        return f"not validated (too few queries: {int(t.queries.max())})"
    t = t[t._tested]
    if not t._ok.all():
        return "fails (" + ", ".join(t[~t._ok].reference) + ")"
    real = t[~t._circular]
    if not real.empty:
        return "validated (" + ", ".join(real.reference) + ")"
    return "consistency check only (" + ", ".join(t.reference) + ")"


def validity_summary(table: pd.DataFrame, rankers: list[str], metrics: list[str]) -> list[str]:
    """RESULTS.md's view of the ladders: ranker x headline metric, the `validity_status` of each (the full rows are
    on the ranker pages)."""
    if table.empty:
        return []
    rows = [{"ranker": r, **{f"{m} {arrow(m)}": validity_status(table, r, m) for m in metrics}} for r in rankers]
    demoted = sorted(demoted_metrics(table))
    held: dict[str, list[str]] = {}
    for r, m in sorted(withheld(table)):
        if m not in demoted:
            held.setdefault(r, []).append(m)
    return ["## Metric validity", "",
            "Can each headline metric be trusted on each ranker? The corruption test: a reference explanation has "
            "its scores shuffled among a growing share of the document's words (`corrupted`, seeded); a valid "
            "metric must not improve as more is shuffled and must separate the reference from its fully shuffled "
            f"version on paired queries (rank-biserial r > 0, Wilcoxon p < {ALPHA}). validated = a reference "
            "that is not the metric's own optimiser passed (bm25's exact Shapley shares: ground truth); "
            "consistency check only = the only reference is the search oracle (a suite ladder on `greedy`, or the "
            "oracle's stored order, whose corrupted copies every gain row records), the curves' own optimiser, so "
            "passing cannot validate them; not validated = no ladder ran on that ranker (or too few queries for "
            "any outcome to pass). A metric that fails on a ranker gives no verdicts there (its comparisons on "
            "that ranker are exploratory); it loses its ★ where it fails on every ranker it was tested on. The "
            "ladders' values are on the ranker pages.", "",
            md_table(pd.DataFrame(rows)), "",
            (f"Demoted from headline by this test: {', '.join(demoted)}." if demoted else
             "No declared headline metric fails on every ranker it was tested on.")
            + ("".join(f" No verdicts on {r}: {', '.join(ms)} (failed there)." for r, ms in held.items())
               if held else ""), ""]


#: known-good explainers to separate from random: bm25's exact Shapley shares (the ground truth), lexical match
GOOD = (("bm25", "exact_shapley"), ("bm25", "exact_match"), ("knrm", "exact_match"), ("matchpyramid", "exact_match"),
        ("crossencoder", "exact_match"), ("biencoder", "exact_match"))


def meta_evaluation_section(df: pd.DataFrame, metrics: list[str]) -> list[str]:
    """Which metrics to trust: separation of known-good from random, reliability, agreement."""
    metrics = [m for m in metrics if m not in ("explainer_agreement",)]
    pairs = [(r, g) for r, g in GOOD if r in set(df.ranker) and g in set(df[df.ranker == r].explainer)]
    md = ["## Meta-evaluation of the metrics", "",
          "In the spirit of Tomsett et al. (2020) and Kim et al. (SIGIR 2022). (a) Separation: does the metric "
          "rank a known-good explanation above the random one on paired queries? Cell: rank-biserial effect r "
          "(1 = better on every query, in the metric's direction) and Wilcoxon p, n queries; bold where p < 0.01 "
          "and r > 0. (b) Reliability: Kendall's W of the ordering of the competing explainers (baselines left out) across queries (1 = every query "
          "orders the explainers alike). (c) Agreement: Spearman correlation between the explainer orderings of "
          "two metrics.", ""]
    rows = []
    for m in metrics:
        row = {"metric": f"{m}{' ★' if METRICS[m].headline else ''} {arrow(m)}"}
        for r, g in pairs:
            s = separation(df, r, m, g)
            key = f"{r}: {g} vs random"
            if s is None:
                row[key] = "n/a"
                continue
            txt = f"r={s['effect']:+.2f}, p={s['p']:.1g} (n={s['queries']})"
            row[key] = f"**{txt}**" if s["p"] < 0.01 and s["effect"] > 0 else txt
        for r in df.ranker.unique():
            w = kendalls_w(df, r, m)
            row[f"W {r}"] = "n/a" if w is None else f"{w[0]:.2f}"
        rows.append(row)
    md += ["### (a) Separation and (b) reliability", "", md_table(pd.DataFrame(rows)), ""]
    mats = [metric_agreement(df, r, metrics) for r in df.ranker.unique()]
    mats = [x for x in mats if not x.empty]
    if mats:
        names = sorted(set().union(*[set(x.index) for x in mats]), key=metrics.index)
        def mean(a, b):  # over the rankers where both metrics have a finite correlation (NaN where none has)
            v = [float(x.loc[a, b]) for x in mats if a in x.index and b in x.columns]
            v = [y for y in v if np.isfinite(y)]
            return float(np.mean(v)) if v else np.nan
        avg = pd.DataFrame({b: [mean(a, b) for a in names] for b in names}, index=names)
        t = avg.map(lambda v: fmt(v, 2)).reset_index().rename(columns={"index": "metric"})
        md += ["### (c) Agreement between metrics", "",
               f"Spearman correlation of explainer orderings (query-means, oriented so higher = better), averaged "
               f"over the {len(mats)} rankers.", "", md_table(t), ""]
    return md


def ig_completeness_section(df: pd.DataFrame, exps: list[dict]) -> list[str]:
    """|sum(IG attributions) - (s_full - s_empty)| from the stored explanations and deletion curves."""
    dele = df[(df.metric == "deletion") & (df.explainer == "integrated_gradients") & (df.status == "ok")]
    if dele.empty:
        return []
    ends = {(r.ranker, r.qid, r.docid): json.loads(r.info) for r in dele.itertuples()}
    rows = {}
    for e in exps:
        k = (e["ranker"], e["qid"], e["docid"])
        if e["explainer"] == "integrated_gradients" and k in ends:
            span = ends[k]["s_full"] - ends[k]["s_empty"]
            rows.setdefault(e["ranker"], []).append((abs(sum(e["doc_scores"]) - span), abs(span)))
    if not rows:
        return []
    t = pd.DataFrame([{"ranker": r, "pairs": len(v), "median |delta|": f"{np.median([d for d, _ in v]):.2e}",
                       "max |delta|": f"{max(d for d, _ in v):.2e}",
                       "median |delta| / |s_full - s_empty|": f"{np.median([d / max(s, 1e-12) for d, s in v]):.2e}"}
                      for r, v in rows.items()])
    return ["## Integrated Gradients completeness", "",
            "IG over the token mask from the empty document: the attributions should sum to s_full - s_empty.",
            "", md_table(t), ""]
