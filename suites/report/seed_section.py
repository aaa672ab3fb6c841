"""RESULTS.md "Training seeds": the study of `suites.report.seeds` as a section."""
from __future__ import annotations

import pandas as pd

from .common import arrow, md_table


def seed_section(df: pd.DataFrame, suite_rankers: dict, suite_seed: int, metrics: list[str]) -> list[str]:
    """RESULTS.md "Training seeds" (`suites.report.seeds`): per seed group and headline metric, the Kendall tau of
    the explainer orderings across seeds [query-bootstrap CI], the verdicts against Grad-CAM that every seed
    shares, and the pooled leaderboard whose CI resamples seeds and queries."""
    from .seeds import seed_groups, seed_study
    groups = seed_groups(suite_rankers, suite_seed, set(df.ranker))
    if not groups:
        return []
    md = ["## Training seeds", "",
          "Rankers trained from different seeds (suite tables that differ only in `train_seed`), explained on the "
          "same queries with the same settings. Per headline metric: the mean Kendall tau between the competing "
          "explainers' orderings under every two seeds [95% CI, resampling queries]; how many explainers get the "
          "same verdict against Grad-CAM under every seed; and, below, the leaderboard pooled over seeds, whose "
          "95% CI resamples seeds and queries (so it includes the model's variance, not only the queries').", ""]
    for first, by_seed in groups.items():
        names = [by_seed[k] for k in sorted(by_seed)]
        rows, pooled = [], {}
        for m in metrics:
            st = seed_study(df, names, m)
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
        seeds = ", ".join(f"{by_seed[k]} (seed {k})" for k in sorted(by_seed))
        md += [f"### {first}: {seeds}", "", md_table(pd.DataFrame(rows)), ""]
        t = pd.DataFrame([{"explainer": e, **v} for e, v in sorted(pooled.items())]).fillna("n/a")
        md += ["Pooled over seeds (mean [95% CI over seeds and queries]):", "", md_table(t), ""]
    return md if any(line.startswith("### ") for line in md) else []
