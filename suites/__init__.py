"""Suites: declarative benchmark runs, their results and reports. Rooms, each importing only the ones before it:

- `suites.stats`: statistics over queries (bootstrap CIs, paired tests, Holm, effect sizes); pure functions.
- `suites.data`: collections and their file formats.
- `suites.run`: suite files and their resolution, the runner, engines, shards, the store, run directories,
  the cost planner.
- `suites.report`: RESULTS.md (one module per section), figures, and the seed, speed and scaling studies.
- Entry points here: `cli` (the `rexbench` command), `api` (`benchmark(...)` from Python), `listing`
  (`rexbench list`).

Below suites, imports run rankers < explainers < metrics (ARCHITECTURE.md)."""
