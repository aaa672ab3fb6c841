"""Shard timings of a run, for sizing a full suite (`make bench-transformers`, RESULTS.md "Scaling").

`python -m suites.report.scaling RUN_DIR --out FILE.json` reads a (possibly partial) run's shards table:
seconds per (ranker, query) shard as measured by the worker that ran it, explanations per shard,
the engine's worker count and the run's wall time. `rexbench report` turns the file into a table:
measured seconds per shard and explanations per second per worker, and the wall time of the whole
suite (every planned query) at 1, 2, 8 and 32 workers projected from them (shards are independent;
the projection assumes workers as fast as the measured ones and no start-up cost).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from rankers.errors import BadInput

from ..run.store import Store


def shard_timings(run_dir: str | Path) -> dict:
    """{suite, device, device_name, workers, wall_seconds, complete, rankers: {name: {shards, seconds: [...],
    explanations, planned_queries}}, unmeasured: [explained rankers of the suite file without a shard]}
    of the run in `run_dir`."""
    from ..run.rundir import copy_database, private_tmp, run_database
    # checked and read as every command reads a run (a packed one too), from a private copy: nothing is written
    with run_database(Path(run_dir), "scaling") as db, private_tmp("scaling") as tmp:
        store = Store(copy_database(db, Path(tmp)), readonly=True)
        try:
            meta = store.meta()
            shards = store.db.execute("SELECT ranker, qid, seconds FROM shards").fetchall()
            n_exp = dict(store.db.execute("SELECT ranker, COUNT(*) FROM explanations GROUP BY ranker").fetchall())
        finally:
            store.close()
    suite, env = meta.get("suite", {}), meta.get("environment", {})
    rankers: dict[str, dict] = {}
    for r, _q, sec in shards:
        d = rankers.setdefault(r, {"shards": 0, "seconds": [], "explanations": n_exp.get(r, 0)})
        d["shards"] += 1
        d["seconds"].append(float(sec))
    planned = _planned_queries(suite)
    for r, d in rankers.items():
        d["planned_queries"] = planned.get(r)
    unmeasured = [r for r in planned if r not in rankers]
    return {"kind": "shards", "suite": suite.get("name"), "suite_path": suite.get("path"),
            "device": env.get("device"), "device_name": env.get("device_name"),
            "workers": meta.get("engine", {}).get("workers", 1),
            "wall_seconds": (meta.get("finished") or {}).get("wall_seconds") or meta.get("elapsed"),
            "complete": "finished" in meta, "rankers": rankers, "unmeasured": unmeasured}


def _planned_queries(suite: dict) -> dict[str, int]:
    """Shards (queries) per explained ranker in the suite file as written (a run with --limit measures fewer)."""
    from collections import Counter

    from ..data.collections import load_collection
    from ..run.config import load_suite
    from ..run.runner import plan, sampled_queries
    path = suite.get("path")
    if not path or not Path(path).is_file():
        return {}
    cfg = load_suite(path, allow_code=True)  # shards are planned only: no ranker is loaded, no code runs
    qids = sampled_queries(cfg, load_collection(cfg.collection, seed=cfg.seed))
    return dict(Counter(r for r, _ in plan(cfg, qids, set())))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m suites.report.scaling", description=__doc__.splitlines()[0])
    p.add_argument("run_dir")
    p.add_argument("--out", required=True, help="JSON file to write (RESULTS.md reads DIR/scaling*.json)")
    a = p.parse_args(argv)
    try:
        data = shard_timings(a.run_dir)
    except BadInput as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    Path(a.out).write_text(json.dumps(data, indent=1))
    print(a.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
