"""Reporting a run: `rexbench report DIR` (`writer`) assembles RESULTS.md from one module per section
(`validity`, `leaderboard`, `comparisons`, `claim`, `seed_section`, `operators`, `cost`), its figures
(`figures`), the studies they read (`seeds`: training seeds, `speed`: cost floors, `scaling`: shard timings)
and the escaping of what users wrote (`markup`).

May import: rankers, explainers, metrics, suites.data, suites.run (the store, run directories, the planner's
plan-vs-run) and suites.stats."""
from .writer import write_report

__all__ = ["write_report"]
