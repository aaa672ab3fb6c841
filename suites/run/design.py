"""A suite's samples chosen from its plan (issue 35: power drives the design). `rexbench plan SUITE
--calibration-run DIR --design OUT.toml` writes SUITE again, comments kept, with each explained ranker's `queries`
and `relevant` set by `choose_design` from the calibration's spread, so the run that follows is declared in a file
like any other (its choice and the reason are comments beside the keys).

`choose_design(entry, top_k, available)`: for one ranker's plan entry, the fewest documents per query p (at least
the suite's `top_k`) at which every headline metric's minimum meaningful difference is resolved with the
`available` queries (`stats.pairs_design` where the calibration had queries with several pairs; a metric without
that split is resolved by its own `queries_to_resolve`, which more pairs are not assumed to change), then those
queries, never fewer than the significance floor. Where no p <= `stats.MAX_PAIRS_PER_QUERY` does, every query at
the fewest documents beyond which more would cut the queries needed by less than 5% (e.g. one document a query
where the spread between queries dominates: more documents would cost without resolving more). With a budget, the
queries the ranker can afford at p pairs (its calibrated seconds a query scale with its pairs) cap the choice,
and the reason says that the design then resolves less.
"""
from __future__ import annotations

import math
from pathlib import Path

from rankers.errors import BadInput

from ..stats import MAX_PAIRS_PER_QUERY

#: where no design resolves the differences, the documents per query stop where more would cut the queries needed
#: by less than this factor's excess over 1 (5%)
DIMINISHING = 1.05


def _needed(metric: dict, p: int) -> float:
    """Queries one headline metric needs at p pairs per query (inf where it cannot be resolved)."""
    design = metric.get("design")
    if design is not None:
        need = design["queries_needed"]
        n = need.get(p, need.get(str(p)))
    else:
        n = metric.get("queries_to_resolve")
    return math.inf if n is None else float(n)


def choose_design(entry: dict, top_k: int, available: int) -> dict | None:
    """{"queries", "relevant", "pairs_per_query", "why"} for one ranker's plan entry (`plan_suite`'s
    plan["rankers"][name]), or None where the calibration gave no spread to design from. `relevant` =
    pairs_per_query - top_k: the judged-relevant candidates explained besides the ranker's top_k documents."""
    metrics = (entry.get("power") or {}).get("metrics") or {}
    if not metrics:
        return None
    floor = int(entry.get("queries_for_significance") or 2)
    first = max(int(top_k), 1)
    needs = {p: max(_needed(m, p) for m in metrics.values())
             for p in range(first, max(MAX_PAIRS_PER_QUERY, first) + 1)}
    fits = [p for p, n in needs.items() if n <= available]
    if fits:
        p = fits[0]
        q = max(int(needs[p]), floor)
        why = (f"the fewest documents per query ({p}) at which {q} queries resolve every headline metric's minimum "
               "meaningful difference")
    else:  # every query, at the documents per query beyond which more would cut the queries needed by < 5%
        most = needs[max(needs)]
        p = min(p for p, n in needs.items() if n <= DIMINISHING * most) if math.isfinite(most) else max(needs)
        q, why = available, (f"no design within {available} queries resolves every headline metric's minimum "
                             f"meaningful difference: every query at {p} documents (more documents a query would "
                             f"cut the queries needed by less than {DIMINISHING - 1:.0%})")
    if not any(m.get("design") for m in metrics.values()):
        why += ("; the calibration had one document a query on every board, so how more documents would help is "
                "unknown (calibrate with `relevant` >= 1)")
    q = min(q, available)
    afford = entry.get("affordable_queries")
    if afford is not None:
        at_p = int(afford * _calibration_pairs(metrics, first) / p)
        if at_p < q:
            q = max(at_p, 0)
            why += f"; the budget affords {q} queries at {p} documents, so it resolves less"
    return {"queries": int(q), "relevant": int(p - top_k), "pairs_per_query": int(p), "why": why}


def _calibration_pairs(metrics: dict, top_k: int) -> float:
    """Documents per query in the calibration (what its seconds a query were measured at)."""
    pairs = [m["design"]["pairs_per_query"] for m in metrics.values() if m.get("design")]
    return float(max(pairs)) if pairs else float(top_k)


def refuse_existing(out: str | Path | None) -> None:
    """The design is never written over an existing file (None: no design asked for)."""
    if out is not None and Path(out).exists():
        raise BadInput(f"--design {out}: the file exists; rexbench never replaces a file silently (remove it or "
                       "choose another path)")


def design_suite(suite_path: str | Path, cfg, plan: dict, out: str | Path, data_dir: str | None = None) -> dict:
    """Write the suite at `suite_path` (resolved as `cfg`) to `out` with every designed ranker's `queries` and
    `relevant` set (and `[samples] queries` raised to the most any ranker asks); returns ranker -> choice. Refuses
    an existing `out` and a plan with nothing to design from, before writing anything."""
    import tomlkit

    from ..data.collections import load_collection
    refuse_existing(out)
    available = len(load_collection(cfg.collection, data_dir, seed=cfg.seed).split(cfg.split))
    chosen = {r: c for r, e in plan["rankers"].items() if (c := choose_design(e, cfg.top_k, available)) is not None}
    if not chosen:
        raise BadInput("--design: the calibration gives no spread to design from (it needs at least 2 queries of "
                       "every explained ranker: --calibrate 2, or a --calibration-run that reached them)")
    doc = tomlkit.parse(Path(suite_path).read_text())
    src = plan["calibration"]["source"]
    for r, c in chosen.items():
        table = doc["rankers"][r]
        table["queries"] = c["queries"]
        table["relevant"] = c["relevant"]
        table["relevant"].comment(f"rexbench plan --design ({src}): {c['why']}")
    samples = doc.setdefault("samples", tomlkit.table())
    samples["queries"] = min(max([int(samples.get("queries", 0))] + [c["queries"] for c in chosen.values()]),
                             available)
    Path(out).write_text(tomlkit.dumps(doc))
    return {"out": str(out), "rankers": chosen}
