"""Running a suite: suite files and their resolution (`config`, `rankerdef`), the runner (`runner`: validate,
prepare, plan the shards, record), the shard executor run by workers (`execute`), the engines that run shards
here or on Dask (`engine`), the results database (`store`), run directories (`rundir`: locks, fingerprints,
overwrite, packed databases) and the cost planner (`planner`).

May import: rankers, explainers, metrics, suites.data and suites.stats; never suites.report."""
