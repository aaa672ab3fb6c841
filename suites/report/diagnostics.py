"""RESULTS.md "Removal diagnostics" and "Anchors" (issue 32), before metric validity.

Removal diagnostics: per (ranker, removal operator), where the explained document stands among its query's
candidates after random removal of 10/20/30/50% of its words and when every word is removed. A ranker that
already sinks the document under random removal of half its words (median standing below 0.5) is
operator-dominated: its curves measure the operator, not the words.

Anchors: how often an explainer beats the search oracle that defines a gain of 1 (by more than 0.01 AUC), and
how many pairs had too little room between random and the oracle to be scored."""
from __future__ import annotations

import numpy as np
import pandas as pd

from metrics.diagnostics import OPERATOR_DOMINATED_BELOW, SHARES, operator_dominated

from ..stats import row_info, rows_of
from .common import fmt, md_table


#: how a ranker type with a single removal operator is labelled: its `removal_semantics` says whether removing a
#: word scores the document without it ("deletion") or not (`rexbench list` gives the whole sentence)
OWN_OPERATOR = {"deletion": "deletion", "not deletion": "own (not deletion)"}


def operator_of(suite_rankers: dict, ranker: str) -> str:
    """The removal operator a suite ranker ran under: the suite's `removal`, "pad" for a transformer, else the type's
    single one (`OWN_OPERATOR`: "deletion", or "own (not deletion)" where removal is not deletion, as bm25's fixed
    |d|; "own" for a type rexbench does not know)."""
    op = (suite_rankers.get(ranker) or {}).get("removal")
    if op:
        return op
    if _is_transformer(suite_rankers, ranker):
        return "pad"
    from rankers.registry import RANKERS
    t = _ranker_type(suite_rankers, ranker)
    semantics = RANKERS[t].cls.removal_semantics if t in RANKERS else ""
    return OWN_OPERATOR.get(semantics.split(":", 1)[0], "own")


def removal_label(rankers: pd.DataFrame, suite_rankers: dict, ranker: str) -> str:
    """The operator a ranker was evaluated under, and the one it was trained with when it was trained with
    removal (`removal_training`): "delete (trained with pad, 50% of pairs)"; evaluating under another operator
    than the trained one is allowed and said so."""
    op = operator_of(suite_rankers, ranker)
    if rankers.empty or "removal_training" not in rankers:
        return op
    rt = rankers[rankers.ranker == ranker].removal_training
    rt = next((v for v in rt if isinstance(v, dict)), None)
    if rt is None:
        return op
    trained = rt.get("operator", "-")
    own = op in (*OWN_OPERATOR.values(), "own")      # the type's single operator, as `operator_of` names it
    same = trained == op or (own and trained == "the ranker's own")
    return f"{op} (trained with {'it' if same else trained}, {float(rt.get('share', 0)):.0%} of pairs)"


def _ranker_type(suite_rankers: dict, ranker: str) -> str:
    """The registry type of a suite ranker (its table's `type`, else its name)."""
    return (suite_rankers.get(ranker) or {}).get("type") or ranker


def _is_transformer(suite_rankers: dict, ranker: str) -> bool:
    from rankers.registry import RANKERS
    t = _ranker_type(suite_rankers, ranker)
    return t in RANKERS and RANKERS[t].kind == "transformer" and t != "late_interaction"


def dominated_rankers(rankers: pd.DataFrame) -> set[str]:
    """Rankers labelled operator-dominated by their stored diagnostic."""
    out = set()
    for r, d in _diagnostics(rankers):
        if operator_dominated(d["shares"].get(str(0.5), [])):
            out.add(r)
    return out


def _diagnostics(rankers: pd.DataFrame):
    if rankers.empty or "removal_diagnostic" not in rankers:
        return []
    rows = rankers[rankers.removal_diagnostic.map(lambda v: isinstance(v, dict))]
    return [(r, d) for r, d in zip(rows.ranker, rows.removal_diagnostic)]


def diagnostics_section(rankers: pd.DataFrame, suite_rankers: dict) -> list[str]:
    """The section (nothing for a run recorded before the diagnostics existed)."""
    diags = _diagnostics(rankers)
    if not diags:
        return []
    rows = []
    for r, d in diags:
        half = d["shares"].get(str(0.5), [])
        row = {"ranker": r, "removal": operator_of(suite_rankers, r), "queries": len(d.get("queries", []))}
        row["intact"] = fmt(np.mean(d["full"]) if d["full"] else None)
        for s in SHARES:
            v = d["shares"].get(str(s), [])
            row[f"{s:.0%} removed"] = fmt(np.mean(v) if v else None)
        row["50%: median"] = fmt(np.median(half) if half else None)
        row["empty"] = fmt(np.mean(d["empty"]) if d["empty"] else None)
        row["label"] = ("operator-dominated" if operator_dominated(half) else
                        f"error: {d['error']}" if d.get("error") else "ok")
        rows.append(row)
    return ["## Removal diagnostics", "",
            "Where the explained document (each query's top candidate) stands among its query's other candidates "
            "(1 = above all, 0 = below all) when words are removed at random by the ranker's own operator: the mean "
            f"over queries of the mean over {diags[0][1].get('orders', 8)} random orders per share, the median at "
            "50%, and with every word removed. A faithfulness curve can only tell words apart where random removal "
            f"leaves the document standing: a ranker whose median standing after random removal of half its words is "
            f"below {OPERATOR_DOMINATED_BELOW} is labelled operator-dominated, and its curve metrics measure the "
            "operator, not the words: it is left out of the comparisons and the seed's claim below.", "", md_table(pd.DataFrame(rows)), ""]


#: an explainer beats the oracle on a pair when its AUC is better than the oracle's by more than this
BEATS_BY = 0.01
_GAINS = {"rank_deletion_gain": "deletion", "rank_insertion_gain": "insertion"}


#: the sampling explainer whose cost the oracle's is set against
SAMPLED = "shapley_sampling"


def _oracle_cost(info: pd.Series, ok: pd.DataFrame, excess: pd.Series, exps: list[dict] | None, ranker: str) -> dict:
    """The oracle's rows per pair (greedy and local search, from the gain rows' info) against `SAMPLED`'s rows per
    explanation and how often its AUC beats the oracle's (`excess`: each row's AUC advantage over the oracle);
    columns only where the run recorded the oracle's cost."""
    per_pair = {}
    for (q, d), i in zip(zip(ok.qid, ok.docid), info):
        c = i.get("oracle") or {}
        if "greedy_rows" in c:
            per_pair[(q, d)] = c["greedy_rows"] + c.get("type_greedy_rows", 0) + c.get("search_rows", 0)
    if not per_pair:
        return {}
    rows = [e["forward_rows"] for e in exps or [] if e["ranker"] == ranker and e["explainer"] == SAMPLED
            and e.get("forward_rows") is not None]
    mine = excess[ok.explainer == SAMPLED]
    return {"oracle rows per pair (median)": f"{np.median(list(per_pair.values())):.0f}",
            f"{SAMPLED} rows per explanation (median)": f"{np.median(rows):.0f}" if rows else "-",
            f"{SAMPLED} beats the oracle by > {BEATS_BY}": f"{(mine > BEATS_BY).mean():.0%}" if len(mine) else "-"}


def anchors_section(df: pd.DataFrame, suite_explainers: dict, exps: list[dict] | None = None) -> list[str]:
    """Per ranker and direction: pairs scored, the share of pairs on which some explainer other than the oracle
    itself beats the oracle's AUC by more than `BEATS_BY`, the largest excess, the pairs left out because
    random and oracle lay too close, and where recorded the oracle's cost against `SAMPLED`'s (nothing for a
    run without anchored gains)."""
    oracles = {e for e, p in (suite_explainers or {}).items() if ((p or {}).get("type") or e) == "greedy"}
    rows, from_explanations = [], False
    for ranker in df.ranker.unique() if not df.empty else []:
        for metric, kind in _GAINS.items():
            sub = rows_of(df, ranker, metric)
            sub = sub[sub.docid != "*"]
            ok = sub[(sub.status == "ok") & ~sub.explainer.isin(oracles)]
            if ok.empty:
                continue
            info = ok["info"].map(row_info)
            sign = 1.0 if kind == "deletion" else -1.0  # + = the explainer's AUC better than the oracle's
            excess = pd.Series([sign * (i["oracle_auc"] - i["auc"]) for i in info], index=ok.index)
            by_pair = excess.groupby([ok.qid, ok.docid]).max()
            skipped = sub[(sub.status == "skipped") & sub.message.fillna("").str.contains("room to rank")]
            seeds = pd.Series([(i.get("oracle") or {}).get("seed") for i in info], index=ok.index)
            offered = any("starts" in (i.get("oracle") or {}) for i in info)  # this oracle could start from one
            from_explanations |= offered
            started = seeds.groupby([ok.qid, ok.docid]).first()
            rows.append({"ranker": ranker, "direction": kind, "pairs": len(by_pair),
                         f"pairs where an explainer beats the oracle by > {BEATS_BY}":
                             f"{(by_pair > BEATS_BY).mean():.0%}",
                         "largest excess (AUC)": f"{by_pair.max():+.3f}",
                         f"pairs where the search improves on every explanation by > {BEATS_BY}":
                             f"{(by_pair < -BEATS_BY).mean():.0%}",
                         "search started from an explanation": (
                             f"{(~started.isin(['greedy', 'type_greedy'])).mean():.0%}"
                             if offered and started.notna().all() else "-"),
                         "pairs left out (random and oracle too close)":
                             skipped.groupby(["qid", "docid"]).ngroups,
                         **_oracle_cost(info, ok, excess, exps, ranker)})
    if not rows:
        return []
    return ["## Anchors", "",
            "A gain of 1 means the search oracle's order; it anchors the gains only if no explainer beats it. "
            + ("The oracle's local search starts from the best of its greedy searches and the pair's explanations, "
               "so no explanation can beat it. " if from_explanations else
               "In this run the oracle's local search started from its greedy searches only (the run predates its "
               "starting from the pair's explanations too), so an explanation could beat it: where one did, the "
               "gains there are not anchored on the best order found. ")
            + "Per ranker and "
            "direction: the share of pairs on which some explainer other than the oracle reaches a better AUC than "
            f"the oracle's by more than {BEATS_BY}, the largest such excess (negative: the search improved on every "
            "explanation), the share of pairs where the search found an order better than every explanation's, the "
            "share where it started from an explanation (its greedy searches did worse), and the pairs left out "
            "because random and oracle lay too close to rank explanations between them."
            + (f" The oracle's cost (greedy and local search rows per pair, the same for every explainer of the pair) "
               f"is set against {SAMPLED}'s rows per explanation and how often that sampler beats it."
               if any("oracle rows per pair (median)" in r for r in rows) else ""), "",
            md_table(pd.DataFrame(rows).fillna("-")), ""]
