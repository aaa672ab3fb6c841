"""RESULTS.md "Training seeds": the study of `suites.report.seeds` as a section, over the models above the
quality floor (`flags`) and the competing explainers (Grad-CAM and its competitors; not the oracle, corrupted
references, baselines or explainers whose explanations are mostly constant)."""
from __future__ import annotations

import pandas as pd

from .common import arrow, md_table
from .roles import role


def seed_explainers(ev) -> set[str]:
    """The explainers the study orders: Grad-CAM and the competitors, mostly non-constant on every ranker."""
    bad = {e for _, e in ev.comparisons.constant}           # mostly constant on some ranker
    return {e for e in set(ev.df.explainer) if role(e, ev.suite_explainers) in ("reference", "competitor")
            and e not in bad}


def seed_section(ev) -> list[str]:
    """Per seed group and headline metric: the Kendall tau of the explainer orderings across the seeds above the
    quality floor [query-bootstrap CI], the verdicts against Grad-CAM that every seed shares, and the pooled
    leaderboard whose CI resamples seeds and queries; models below the floor are named and left out."""
    from .seeds import seed_groups, seed_study
    df, metrics = ev.df, ev.headlines
    groups = seed_groups(ev.suite.get("rankers", {}), int(ev.suite.get("seed") or 0), set(df.ranker))
    if not groups:
        return []
    allowed = seed_explainers(ev)
    md = ["## Training seeds", "",
          "Rankers trained from different seeds (suite tables that differ only in `train_seed` and in what they "
          "explain: `skip`, `queries`), compared on the queries and explainers every seed shares. Models below the "
          "quality floor are left out and named. Per "
          "headline metric: the mean Kendall tau between the orderings of Grad-CAM and its competitors (not the "
          "oracle, corrupted references, baselines or mostly-constant explainers) under every two seeds [95% CI, "
          "resampling queries]; how many explainers get the same verdict against Grad-CAM under every seed; and "
          "the leaderboard pooled over seeds, whose 95% CI resamples seeds and queries.", ""]
    for first, by_seed in groups.items():
        out = {k: n for k, n in by_seed.items() if n in ev.flags}
        keep = {k: n for k, n in by_seed.items() if n not in ev.flags}
        left = "; ".join(f"{n} (seed {k}: {ev.flags[n]})" for k, n in sorted(out.items()))
        if len(keep) < 2:
            md += [f"### {first}", "", f"Fewer than two seeds above the quality floor (left out: {left}).", ""]
            continue
        names = [keep[k] for k in sorted(keep)]
        rows, pooled = [], {}
        for m in metrics:
            st = seed_study(df, names, m, allowed=allowed)
            if st is None:
                continue
            rows.append({"metric": f"{m} {arrow(m)}", "seeds": st["seeds"], "queries": st["queries"],
                         "explainers": len(st["explainers"]),
                         "ordering tau [CI]": f"{st['tau']:.2f} [{st['tau_low']:.2f}, {st['tau_high']:.2f}]",
                         "same verdict vs gradcam": f"{st['verdicts_same']} of {st['verdicts_compared']}"})
            for i, e in enumerate(st["explainers"]):
                pooled.setdefault(e, {})[f"{m} {arrow(m)}"] = (
                    f"{st['pooled'][i]:.3f} [{st['pooled_low'][i]:.3f}, {st['pooled_high'][i]:.3f}]")
        if not rows:
            continue
        seeds = ", ".join(f"{keep[k]} (seed {k})" for k in sorted(keep))
        md += [f"### {first}: {seeds}", ""] + ([f"Left out below the quality floor: {left}.", ""] if left else [])
        md += [md_table(pd.DataFrame(rows)), ""]
        t = pd.DataFrame([{"explainer": e, **v} for e, v in sorted(pooled.items())]).fillna("n/a")
        md += ["Pooled over seeds (mean [95% CI over seeds and queries]):", "", md_table(t), ""]
    return md if any(line.startswith("### ") for line in md) else []
