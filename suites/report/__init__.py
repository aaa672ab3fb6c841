"""Reporting a run: `rexbench report DIR` (`writer`) assembles RESULTS.md and the ranker pages from one resolved
view of the run (`evidence`: identical explainers collapsed by `aliases`, explainer `roles`, ranker `flags`,
validity, and the comparisons computed once with the primary family controlled report-wide by `primary`). The
first screen is `answer` (answer card, trust matrix, cost strip, what the evidence does not support); the
sections are `effectiveness`, `validity`, `diagnostics`, `claim`, `operators`, `seed_section`, `cost`; the ranker
pages are `pages` (with `leaderboard` and `comparisons`); `site` writes the static HTML site; figures
(`figures`), the studies they read (`seeds`: training seeds, `speed`: cost floors, `scaling`: shard timings) and
the escaping of what users wrote (`markup`).

May import: rankers, explainers, metrics, suites.data, suites.run (the store, run directories, the planner's
plan-vs-run) and suites.stats."""
from .writer import write_report

__all__ = ["write_report"]
