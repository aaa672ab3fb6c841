"""Floor ratios: how close rexbench's explanation and curve costs are to the bare model cost.

All numbers for one device are measured in one process, side by side, as the
median of `repeats` timed calls after a warm-up (CUDA: events after
synchronisation):

- curve / floor: a full deletion + insertion evaluation of one explanation
  (`compute_metrics`) over the time of the bare forward passes over the same
  perturbed inputs at the best batch size. Goal <= 1.3.
- batched speed-up: the same curves computed one model call per step (how
  common tools do it) over rexbench's batched path. Goal >= 10x on
  knrm/matchpyramid, >= 3x on the cross-encoder.
- Grad-CAM / (one forward + one backward). Goal <= 1.5.
- IG / (n_steps forward + backward, batched). Goal <= 1.2.
"""
from __future__ import annotations

import datetime as dt
import statistics

import torch

from explainers import EXPLAINERS, build_explainer, make_pair
from metrics import MetricContext, compute_metrics
from metrics.faithfulness import Deletion, Insertion
from rankers.scorer import PairScorer, Timer

GOALS = {"curve_over_floor": ("<=", 1.3), "gradcam_ratio": ("<=", 1.5), "ig_ratio": ("<=", 1.2),
         "batched_speedup": (">=", {"knrm": 10, "matchpyramid": 10, "crossencoder": 3})}


def _time(fn, device, repeats: int = 5) -> float:
    fn()  # warm-up
    ts = []
    for _ in range(repeats):
        with Timer(device) as t:
            fn()
        ts.append(t.seconds)
    return statistics.median(ts)


def _bare_forward(ranker, pair, masks, bs):
    sc = PairScorer(ranker, pair.q_ids, pair.d_ids, "mask", batch_size=bs)

    def f():
        with torch.no_grad():
            sc(masks)
    return f


def measure_pair(ranker, pair, device, repeats=5, ig_steps=50, batch_size=256) -> dict:
    ex = build_explainer("saliency", ranker).attribute_pair(pair)
    ctx = MetricContext(ranker, pair, ex, batch_size=batch_size)
    masks = torch.cat([Deletion.plan(ctx), Insertion.plan(ctx)]).to(pair.d_ids.device)
    curve_s = _time(lambda: compute_metrics(ctx, ["deletion", "insertion"]), device, repeats)
    floors = {bs: _time(_bare_forward(ranker, pair, masks, bs), device, repeats)
              for bs in sorted({8, 32, 128, 512, len(masks)})}
    best_bs = min(floors, key=floors.get)
    sc1 = PairScorer(ranker, pair.q_ids, pair.d_ids, "mask", batch_size=1)

    def per_step():
        with torch.no_grad():
            for row in masks:
                sc1(row[None])
    per_step_s = _time(per_step, device, max(1, repeats // 2))
    out = {"n_doc": len(pair.d_ids), "curve_rows": len(masks), "curve_s": curve_s, "floor_s": floors[best_bs],
           "floor_batch": best_bs, "curve_over_floor": curve_s / floors[best_bs], "per_step_s": per_step_s,
           "batched_speedup": per_step_s / curve_s}
    sc = PairScorer(ranker, pair.q_ids, pair.d_ids, "mask")

    def fwd_bwd(rows):
        """`rows` forward passes in one batch and one backward pass to the input (no parameter gradients,
        as explainers compute none)."""
        def f():
            x = torch.ones(rows, len(pair.d_ids), device=pair.d_ids.device, requires_grad=True)
            torch.autograd.grad(sc(x).sum(), x)
        return f
    fb1 = _time(fwd_bwd(1), device, repeats)
    if EXPLAINERS["gradcam"].compatible(ranker)[0]:
        gc = build_explainer("gradcam", ranker)
        out.update(gradcam_s=_time(lambda: gc.attribute_pair(pair), device, repeats), fwd_bwd_s=fb1)
        out["gradcam_ratio"] = out["gradcam_s"] / fb1
    ig = build_explainer("integrated_gradients", ranker, n_steps=ig_steps, internal_batch_size=ig_steps)
    out.update(ig_s=_time(lambda: ig.attribute_pair(pair), device, repeats),
               ig_floor_s=_time(fwd_bwd(ig_steps), device, repeats))
    out["ig_ratio"] = out["ig_s"] / out["ig_floor_s"]
    return out


def measure_floors(device: str = "cpu", rankers=("bm25", "knrm", "matchpyramid", "crossencoder"), n_pairs: int = 3,
                   repeats: int = 5, collection: str = "cranfield", progress: bool = True) -> dict:
    """Median over `n_pairs` Cranfield test pairs (each query's first judged-relevant document) per ranker."""
    from rankers.training import build_ranker
    from suites.data.collections import load_collection
    from suites.run.runner import device_name, versions
    coll = load_collection(collection)
    qids = [q for q in coll.split("test") if coll.relevant(q)][:n_pairs]
    res = {"device": device, "device_name": device_name(device), "versions": versions(),
           "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), "collection": collection,
           "pairs": [(q, sorted(coll.relevant(q), key=int)[0]) for q in qids], "repeats": repeats, "rankers": {}}
    for name in rankers:
        torch.manual_seed(0)
        r = build_ranker(name, coll, seed=0).to(device).eval()
        rows = []
        for q, d in res["pairs"]:
            pair = make_pair(r, coll.queries[q], coll.docs[d])
            rows.append(measure_pair(r, pair, device, repeats))
            if progress:
                print(f"  {name} q{q}/d{d}: {rows[-1]['curve_over_floor']:.2f}x floor, "
                      f"{rows[-1]['batched_speedup']:.1f}x vs per-step", flush=True)
        res["rankers"][name] = {k: statistics.median(row[k] for row in rows) for k in rows[0]}
    return res


def _goal(key, ranker, value):
    op, target = GOALS[key]
    if isinstance(target, dict):
        target = target.get(ranker)
    if target is None or value is None:
        return "-"
    met = value <= target if op == "<=" else value >= target
    return f"{'met' if met else 'NOT met'} ({op} {target:g})"


def floors_markdown(runs: list[dict]) -> list[str]:
    md = ["## Speed: cost over the floor", "",
          "Measured by `rexbench floors` in one process per device, side by side, medians over "
          "fixed Cranfield test pairs (see `suites/report/speed.py` for the definitions).", ""]
    for f in runs:
        md += [f"### {f['device']}: {f['device_name']} ({f['date']}; torch {f['versions'].get('torch')})", "",
               "| ranker | doc tokens | curve ms | floor ms (batch) | curve / floor | per-step ms | batched speed-up |"
               " Grad-CAM / (fwd+bwd) | IG / (50 fwd+bwd) |", "|---|---|---|---|---|---|---|---|---|"]
        for r, v in f["rankers"].items():
            gc = f"{v['gradcam_ratio']:.2f} ({_goal('gradcam_ratio', r, v['gradcam_ratio'])})" \
                if "gradcam_ratio" in v else "n/a (no layer)"
            md.append(f"| {r} | {v['n_doc']:.0f} | {v['curve_s'] * 1e3:.2f} | {v['floor_s'] * 1e3:.2f} "
                      f"({v['floor_batch']:.0f}) | {v['curve_over_floor']:.2f} "
                      f"({_goal('curve_over_floor', r, v['curve_over_floor'])}) | {v['per_step_s'] * 1e3:.1f} | "
                      f"{v['batched_speedup']:.1f}x ({_goal('batched_speedup', r, v['batched_speedup'])}) | {gc} | "
                      f"{v['ig_ratio']:.2f} ({_goal('ig_ratio', r, v['ig_ratio'])}) |")
        md.append("")
    return md
