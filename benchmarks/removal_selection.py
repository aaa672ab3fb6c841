"""Select the removal-training share on dev only (issue 32): for each trainable ranker and share, train (or load the
cached model), then on the collection's dev queries measure effectiveness (nDCG@10) and the removal diagnostic of
each query's top candidate (its standing after random removal of half its words, the mean over 8 orders; the
median over queries), never reading a test judgment. Removal training is on (issue 32), so the selected share is
the most effective share above 0 whose median half-removal standing is at least 0.5 (not operator-dominated);
ties (at 4 decimals) go to the smaller share. Share 0 (no removal training) is measured as the reference.

    python benchmarks/removal_selection.py --collection trec-dl --rankers knrm,matchpyramid \
        --shares 0,0.25,0.5,0.75 --out results/trec-dl/removal_selection.json

`--training '{"lr": 2e-5}'` trains with those hyper-parameters over the ranker's own (`train`'s overrides: a
recipe candidate) instead of using the cache, and selects among the rows of each recipe apart; each row records
its recipe and its epochs' loss and dev nDCG@10.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np


def measure(name: str, coll, share: float, seed: int = 0, training: dict | None = None) -> dict:
    from metrics.diagnostics import SHARES, removal_diagnostic
    from rankers.evaluate import evaluate, run_ranker
    from rankers.training import build_ranker, get_ranker, train
    t = time.perf_counter()
    config = {"removal_training": share} if share else {}
    if training:  # a recipe candidate: trained here with the overrides, never read from or written to the cache
        m = build_ranker(name, coll, seed, **config)
        m.train_log = train(m, coll, seed=seed, progress=False, **training)
        m.eval()
    else:
        m = get_ranker(name, coll, seed, progress=False, config=config).eval()
    trained = time.perf_counter() - t
    log = getattr(m, "train_log", None) or {}
    run = run_ranker(m, coll, "dev")
    eff = evaluate(m, coll, "dev", run=run)
    queries, docs = coll.units(m.analyzer)
    half, empty = [], []
    for q, scores in run.items():
        top = max(scores, key=scores.get)
        others = np.array([s for d, s in scores.items() if d != top])
        diag = removal_diagnostic(m, queries[q], docs[top], others, shares=SHARES, n_orders=8, seed=seed)
        half.append(diag["shares"][0.5])
        empty.append(diag["empty"])
    return {"ranker": name, "share": share, "dev_queries": eff["queries"], "dev_ndcg@10": eff["ndcg@10"],
            "median_half_removal_standing": float(np.median(half)), "median_empty_standing": float(np.median(empty)),
            "best_epoch": log.get("best_epoch"), "seconds": time.perf_counter() - t,
            "train_or_load_seconds": trained, "training": training or {}, "epochs": log.get("epochs")}


def select(rows: list[dict]) -> dict[str, float]:
    """ranker (with ``_seed<k>`` for training seeds other than 0, then a recipe's overrides as JSON) -> the selected
    share (the module docstring)."""
    def recipe(r: dict) -> str:
        return json.dumps(r.get("training") or {}, sort_keys=True)

    out = {}
    for name, seed, rec in dict.fromkeys((r["ranker"], r.get("train_seed", 0), recipe(r)) for r in rows):
        ok = [r for r in rows if r["ranker"] == name and r.get("train_seed", 0) == seed and recipe(r) == rec
              and r["share"] > 0 and r["median_half_removal_standing"] >= 0.5]
        if ok:
            out[name + (f"_seed{seed}" if seed else "") + (f" {rec}" if rec != "{}" else "")] = max(
                ok, key=lambda r: (round(r["dev_ndcg@10"], 4), -r["share"]))["share"]
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--collection", default="trec-dl")
    ap.add_argument("--rankers", default="knrm,matchpyramid")
    ap.add_argument("--shares", default="0,0.25,0.5,0.75")
    ap.add_argument("--seed", type=int, default=0, help="the collection's seed (its splits), as a suite's seed")
    ap.add_argument("--train-seeds", default=None,
                    help="comma-separated training seeds, each selected on its own (default: --seed)")
    ap.add_argument("--training", type=json.loads, default=None,
                    help="JSON hyper-parameter overrides: a recipe candidate, trained here (not cached)")
    ap.add_argument("--out", type=Path, required=True)
    a = ap.parse_args(argv)
    from suites.data.collections import load_collection
    coll = load_collection(a.collection, seed=a.seed)
    seeds = [int(x) for x in a.train_seeds.split(",")] if a.train_seeds else [a.seed]
    rows = [{**measure(n, coll, float(s), t, a.training), "train_seed": t} for n in a.rankers.split(",")
            for t in seeds for s in a.shares.split(",")]
    for r in rows:
        print(f"{r['ranker']:14s} seed {r['train_seed']} share {r['share']:.2f}  dev nDCG@10 {r['dev_ndcg@10']:.4f}  "
              f"median standing after half removed {r['median_half_removal_standing']:.3f}  "
              f"empty {r['median_empty_standing']:.3f}")
    res = {"collection": a.collection, "split": "dev", "seed": a.seed, "rule": __doc__.split("\n\n")[0],
           "rows": rows, "selected": select(rows)}
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(res, indent=1) + "\n")
    print("selected:", res["selected"])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
