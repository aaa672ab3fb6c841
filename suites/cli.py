"""The `rexbench` command line (see ../shared/spec/contract.md).

Exit status: 0 success, 2 bad usage or bad input (one-line reason on stderr),
1 internal failure.
"""
from __future__ import annotations

import argparse
import json
import sys
import time

from rankers.errors import BadInput, RunFault


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # argparse's own usage errors -> exit 2 with one line
        raise BadInput(message)


def _int_at_least(lo: int):
    def parse(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if v < lo:
            raise argparse.ArgumentTypeError(f"must be at least {lo}, got {v}")
        return v
    parse.__name__ = f"integer >= {lo}"
    return parse


def _writable_file(path: str, what: str) -> None:
    """Fail before any work when the file `path` cannot be written (its directory may still be created)."""
    from pathlib import Path

    from suites.run.rundir import writable_ancestor
    if Path(path).is_dir():
        raise BadInput(f"{what} {path} is a directory")
    writable_ancestor(Path(path).resolve().parent, f"{what} {path}")


def _read_text(path: str, what: str) -> str:
    try:
        with open(path, encoding="utf-8") as fh:
            return fh.read()
    except (OSError, UnicodeDecodeError) as e:
        raise BadInput(f"{what} {path}: cannot read ({getattr(e, 'strerror', None) or type(e).__name__})") from None


def _common(p: argparse.ArgumentParser, collection: bool = True) -> None:
    if collection:
        p.add_argument("--collection", default="cranfield",
                       help="cranfield | trec-dl-2019 | trec-dl-2020 | vaswani (shipped) | synthetic | beir:DIR | "
                            "trec:DIR | irds:<id>")
    p.add_argument("--data-dir", default=None,
                   help="directory holding cranfield/ (default: $REXBENCH_DATA, else the shipped copy)")
    p.add_argument("--seed", type=_int_at_least(0), default=0)
    p.add_argument("--device", default="cpu", help="cpu | cuda")
    p.add_argument("--checkpoint", default=None, help="use this trained ranker instead of the cache")


def _ranker_def(p: argparse.ArgumentParser) -> None:
    p.add_argument("--suite", default=None, help="suite file whose [rankers.NAME] table defines --ranker")
    _allow_code(p)
    p.add_argument("--ranker-param", action="append", default=[], metavar="KEY=VALUE",
                   help="ranker parameter (repeatable), e.g. --ranker-param model=/path --ranker-param train=false")


def _allow_code(p: argparse.ArgumentParser) -> None:
    p.add_argument("--allow-code", action="store_true",
                   help="run Python code the suite file names (callable rankers: function = \"module:attr\")")


def build_parser() -> argparse.ArgumentParser:
    from rankers.training import rexbench_version
    ap = _Parser(prog="rexbench", description="Benchmark explanations of neural rankers.")
    ap.add_argument("--version", action="version", version=f"rexbench {rexbench_version()}")
    sub = ap.add_subparsers(dest="cmd", required=True, parser_class=_Parser)

    p = sub.add_parser("list", help="registered rankers, explainers, metrics and suites")
    p.add_argument("--json", action="store_true")

    p = sub.add_parser("train", help="train a ranker (cached under $REXBENCH_HOME)")
    p.add_argument("ranker")
    p.add_argument("--ranker-param", action="append", default=[], metavar="KEY=VALUE",
                   help="ranker parameter (repeatable), e.g. --ranker-param model=/path/to/encoder")
    _common(p)
    p.add_argument("--out", default=None, help="checkpoint directory (default: the cache)")

    p = sub.add_parser("rank", help="re-rank a split's BM25 candidates; nDCG@10, MRR@10, MAP")
    p.add_argument("ranker", help="a registered type, or with --suite a [rankers.NAME] of that suite")
    _ranker_def(p)
    _common(p)
    p.add_argument("--split", default="test")
    p.add_argument("--json", action="store_true")

    p = sub.add_parser("explain", help="explain one (query, document) pair")
    p.add_argument("--ranker", required=True, help="a registered type, or with --suite a [rankers.NAME] of that suite")
    _ranker_def(p)
    p.add_argument("--explainer", required=True)
    p.add_argument("--query", help="query text (with --doc or --doc-file)")
    p.add_argument("--doc", help="document text (with --query or --query-file)")
    p.add_argument("--query-file", help="read the query text from this UTF-8 file")
    p.add_argument("--doc-file", help="read the document text from this UTF-8 file (long documents)")
    p.add_argument("--qid", help="query id in --collection (with --docid)")
    p.add_argument("--docid", help="document id in --collection (with --qid)")
    p.add_argument("--target", default="score", help="score | pair:DOCID (margin over a contrast document)")
    p.add_argument("--metrics", default="", help="comma-separated metric names")
    p.add_argument("--param", action="append", default=[], metavar="KEY=VALUE",
                   help="explainer parameter (repeatable), e.g. --param window=1")
    p.add_argument("--snippet", type=_int_at_least(0), default=0, metavar="W",
                   help="also print the best W-word snippet (0: none)")
    p.add_argument("--json", action="store_true")
    p.add_argument("--out", default=None, help="FILE.png (query x document heatmap) or FILE.html (highlights)")
    _common(p)

    p = sub.add_parser("run", help="run a suite file (resumable)")
    _allow_code(p)
    p.add_argument("suite", help="path to a suite .toml, or the name of a bundled suite (quick, cranfield)")
    p.add_argument("--out", default=None, help="output directory (default results/<suite name>)")
    p.add_argument("--resume", action="store_true",
                   help="continue an interrupted run (refused when its suite, seed, parameters or versions differ)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing run in --out")
    p.add_argument("--device", default=None, help="cpu | cuda (overrides the suite file)")
    p.add_argument("--limit", type=_int_at_least(1), default=None, help="number of queries (overrides the suite file)")
    p.add_argument("--rankers", default=None, metavar="NAME,...",
                   help="prepare and run only these [rankers] of the suite this time (a long run's share, e.g. what "
                        "one machine session can finish); --resume runs the rest, and the run is finished then")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--workers", type=_int_at_least(1), default=1,
                   help="worker processes: 1 = this process; N > 1 = a local Dask cluster (rexbench[distributed])")
    p.add_argument("--address", default=None,
                   help="join an existing Dask scheduler, e.g. tcp://10.0.0.5:8786 (it must answer within 20 s; "
                        "$REXBENCH_CONNECT_TIMEOUT); excludes --workers")

    p = sub.add_parser("plan", help="predict a suite's cost on this machine from a short calibration run")
    _allow_code(p)
    p.add_argument("suite", help="path to a suite .toml, or the name of a bundled suite (quick, cranfield)")
    p.add_argument("--device", default=None, help="cpu | cuda (overrides the suite file)")
    p.add_argument("--workers", type=_int_at_least(1), default=1, help="workers the real run will use")
    p.add_argument("--calibrate", type=_int_at_least(1), default=1, metavar="Q",
                   help="queries per ranker in the calibration run (default 1)")
    p.add_argument("--budget", default=None, help="wall-time budget, e.g. 1h or 45m: queries each ranker can afford")
    p.add_argument("--calibration-run", default=None, metavar="DIR",
                   help="calibrate from the first Q queries of each ranker in DIR, a run of this suite (no calibration "
                        "run; e.g. to check a prediction against the finished run)")
    p.add_argument("--design", default=None, metavar="OUT.toml", help="write the suite with queries and documents "
                   "per query chosen from the plan (calibration of >= 2 queries; within --budget)")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--json", action="store_true")

    p = sub.add_parser("floors", help="measure cost-over-floor ratios (speed) on this device; uses untrained "
                                      "weights (cost does not depend on them), so it never trains a ranker")
    p.add_argument("--device", default="cpu")
    p.add_argument("--out", required=True, help="JSON file, e.g. results/cranfield/floors_cpu.json")
    p.add_argument("--pairs", type=_int_at_least(1), default=3)
    p.add_argument("--rankers", default="bm25,knrm,matchpyramid,crossencoder")

    p = sub.add_parser("report", help="write RESULTS.md from a run directory")
    p.add_argument("dir")
    p.add_argument("--out", default=None, help="RESULTS.md path (default DIR/RESULTS.md)")
    p.add_argument("--html", default=None, metavar="OUT_DIR", help="also write a self-contained static site "
                   "(index.html, a page per ranker, figures) into OUT_DIR")
    p.add_argument("--pack", action="store_true", help="also write DIR/results.sqlite.gz, the per-sample results to "
                   "commit with the report (the report regenerates from it on a clean clone)")
    return ap


def _device(name: str) -> str:
    import torch
    if name not in ("cpu", "cuda") and not name.startswith("cuda:"):
        raise BadInput(f"unknown device {name!r}; valid: cpu, cuda")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise BadInput("--device cuda given but no CUDA device is available")
    return name


def cmd_list(args) -> int:
    from suites.listing import listing
    out = listing()
    if args.json:
        print(json.dumps(out, indent=2))
    else:
        for k, rows in out.items():
            print(f"{k}:")
            for r in rows:
                rest = ", ".join(f"{a}={b}" for a, b in r.items()
                                 if a not in ("name", "params") and b not in ({}, [], ""))
                if r.get("params"):
                    rest += ("; " if rest else "") + "params: " + ", ".join(
                        f"{k}={p['default']!r}" for k, p in r["params"].items())
                print(f"  {r['name']:<22} {rest}")
    return 0


def cmd_train(args) -> int:
    from pathlib import Path

    from rankers import ranker_spec
    from rankers.evaluate import evaluate
    from rankers.training import build_ranker, checkpoint_dir, save_ranker, train
    from suites.data.collections import load_collection

    from suites.run.rankerdef import from_cli
    spec = ranker_spec(args.ranker)
    if args.checkpoint:
        raise BadInput("train writes a checkpoint; use --out DIR (not --checkpoint)")
    config = from_cli(args.ranker, args.ranker_param).params
    coll = load_collection(args.collection, args.data_dir)
    if not spec.trainable:
        print(f"{args.ranker} has nothing to train; it is built from the collection on use.", file=sys.stderr)
        return 0
    out_dir = Path(args.out) if args.out else checkpoint_dir(coll.name, args.ranker, args.seed, config)
    _writable_file(str(out_dir / "model.pt"), "checkpoint directory")
    model = build_ranker(args.ranker, coll, args.seed, **config).to(_device(args.device))
    log = train(model, coll, seed=args.seed)
    path = save_ranker(model, out_dir, coll.name, log)
    res = evaluate(model, coll, "dev")
    print(f"trained {args.ranker} on {coll.name} in {log['seconds']:.1f}s (best epoch {log.get('best_epoch')}, "
          f"dev nDCG@10 {res['ndcg@10']:.4f}) -> {path}")
    return 0


def cmd_rank(args) -> int:
    from rankers.evaluate import evaluate
    from suites.data.collections import load_collection
    from suites.run.rankerdef import from_args

    defn = from_args(args)
    coll = load_collection(args.collection, args.data_dir)
    model = defn.load(coll, args.seed, _device(args.device))
    res = {"ranker": args.ranker, "type": defn.type, "collection": coll.name, "split": args.split,
           **evaluate(model, coll, args.split, empty=True)}
    if args.json:
        print(json.dumps(res))
    else:
        print(f"{args.ranker} on {coll.name}/{args.split} ({res['queries']} queries): nDCG@10 {res['ndcg@10']:.4f}  "
              f"MRR@10 {res['mrr@10']:.4f}  MAP {res['map']:.4f}  empty document below 95% of the candidates in "
              f"{res['empty_below_95']:.0%} of queries")
    return 0


def _parse_params(items: list[str]) -> dict:
    from suites.run.rankerdef import parse_items
    return parse_items(items, "--param")


def cmd_explain(args) -> int:
    import numpy as np

    from explainers import build_explainer, check_explainer_params, collection_idf, explainer_class, make_pair
    from explainers.applications import best_snippet, query_term_importance
    from metrics import MetricContext, compute_metrics, metric_spec
    from rankers.training import build_ranker
    from suites.data.collections import load_collection
    from suites.run.rankerdef import from_args, from_plan, suite_of
    from suites.read_warnings import warn_oov, warn_truncated

    if args.query_file is not None:
        if args.query is not None:
            raise BadInput("give --query or --query-file, not both")
        args.query = _read_text(args.query_file, "--query-file")
    if args.doc_file is not None:
        if args.doc is not None:
            raise BadInput("give --doc or --doc-file, not both")
        args.doc = _read_text(args.doc_file, "--doc-file")
    free = args.query is not None or args.doc is not None
    if free == (args.qid is not None or args.docid is not None):
        raise BadInput("give either --query and --doc, or --qid and --docid (with --collection)")
    if not free and (args.qid is None or args.docid is None):
        raise BadInput("--qid and --docid go together: give both (a query id and a document id of --collection)")
    metric_names = [m for m in args.metrics.split(",") if m]
    for m in metric_names:
        metric_spec(m)
    etype, params, defn = args.explainer, {}, None
    cfg = suite_of(args)
    if cfg is not None:  # the ranker and its explainer table (type, parameters, the ranker's overrides); --param wins
        defn = from_plan(cfg, args.ranker)
        ep = cfg.plan.rankers[args.ranker].explainers.get(args.explainer)
        if ep is not None:
            etype, params = ep.type, dict(ep.params)
    explainer_class(etype)
    params = check_explainer_params(etype, {**params, **_parse_params(args.param)}, "--param")
    if args.out:
        if not args.out.endswith((".png", ".html", ".htm")):
            raise BadInput("--out must end in .png or .html")
        _writable_file(args.out, "--out")
    defn = defn or from_args(args)
    coll = load_collection(args.collection, args.data_dir)
    if free:
        if args.query is None or args.doc is None:
            raise BadInput("--query and --doc go together")
        q_text, d_text = args.query, args.doc
    else:
        if args.qid not in coll.queries:
            raise BadInput(f"unknown query id {args.qid!r} in {coll.name}")
        if args.docid not in coll.docs:
            raise BadInput(f"unknown document id {args.docid!r} in {coll.name}")
        q_text, d_text = coll.queries[args.qid], coll.docs[args.docid]
    ranker = defn.load(coll, args.seed, _device(args.device))
    contrast, contrast_id = None, "contrast"
    if args.target != "score":
        if not args.target.startswith("pair:"):
            raise BadInput(f"--target must be 'score' or 'pair:DOCID', not {args.target!r}")
        contrast_id = args.target[5:]
        if contrast_id not in coll.docs:
            raise BadInput(f"pair target: document {contrast_id!r} is not in {coll.name}")
        contrast = coll.docs[contrast_id]
    if etype == "idf_match":
        params.setdefault("idf", collection_idf(coll))
    explainer = build_explainer(etype, ranker, **{"seed": args.seed, **params})  # --param seed=N wins
    pair = make_pair(ranker, q_text, d_text, contrast, contrast_id)
    warn_truncated(ranker, pair, q_text, d_text)
    ranked = None  # (docid, units, score) of the query's candidates, best first, scored once when needed
    if not free and (metric_names or getattr(explainer, "needs_candidates", False)):
        q_units, d_units = coll.units(ranker.analyzer)
        cands = coll.candidates(args.qid)
        scores = ranker.score_tokens(q_units[args.qid], [d_units[d] for d in cands]).double().numpy()
        ranked = [(cands[i], d_units[cands[i]], float(scores[i])) for i in np.argsort(-scores, kind="stable")]
    if ranked is not None and getattr(explainer, "needs_candidates", False):  # a listwise explainer
        pair.candidates = [u for _, u, _ in ranked]
    warn_oov(ranker.name, pair.oov, len(pair.doc_tokens))
    ex = explainer.attribute_pair(pair)
    out = ex.to_json()
    if metric_names:
        others, other_docs = None, None
        if ranked is not None:
            rest = [(u, s) for d, u, s in ranked if d != args.docid]
            other_docs, others = [u for u, _ in rest], np.array([s for _, s in rest])
        ctx = MetricContext(ranker, pair, ex, explainer, others,
                            contrast_score=None if contrast is None else pair.offset,
                            rationale=coll.rationales.get((args.qid, args.docid)),
                            bm25=build_ranker("bm25", coll).to(ranker.device), seed=args.seed, other_docs=other_docs)
        if contrast is not None:  # pairwise_flip compares raw scores of d+ against s(q, d-)
            ctx.pair = make_pair(ranker, q_text, d_text)
        res = compute_metrics(ctx, metric_names)
        out["metrics"] = {k: (None if not np.isfinite(v.value) else v.value) for k, v in res.items()}
        out["metric_status"] = {k: {"status": v.status, "message": v.message} for k, v in res.items()}
        out["curves"] = {k: v.curve for k, v in res.items() if v.curve is not None}
    if args.snippet:
        sn = best_snippet(ex, args.snippet)
        out["snippet"] = {"start": sn.start, "end": sn.end, "text": sn.text, "mass": sn.mass}
    out["query_term_importance"] = query_term_importance(ranker, ex)
    if args.out:
        from pathlib import Path

        from explainers.plot import heatmap_png, highlight_html
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        if args.out.endswith(".png"):
            heatmap_png(ex, args.out)
        else:
            highlight_html(ex, args.out)
    if args.json:
        print(json.dumps(out))
    else:
        print(f"{ex.explainer} on {ex.ranker}: {ex.target} = {ex.score:.4f}  ({ex.seconds * 1000:.1f} ms, "
              f"{ex.forward_passes} forward / {ex.backward_passes} backward passes)"
              + ("  [document truncated]" if ex.truncated else ""))
        top = np.argsort(-ex.doc_scores, kind="stable")[:10]
        print("top document tokens: " + ", ".join(f"{ex.doc_tokens[i]}@{i} ({ex.doc_scores[i]:+.3g})" for i in top))
        print("query terms: " + ", ".join(f"{t} ({v:+.3g})" for t, v in out["query_term_importance"]))
        if args.snippet:
            print(f"snippet: ...{out['snippet']['text']}...")
        for k, v in out.get("metrics", {}).items():
            st = out["metric_status"][k]
            print(f"  {k:<22} {v if v is None else round(v, 4)}  {st['status'] if st['status'] != 'ok' else ''} "
                  f"{st['message']}")
        if args.out:
            print(f"wrote {args.out}")
    return 0


def cmd_run(args) -> int:
    from suites.listing import suite_path
    from suites.run.config import load_suite
    from suites.run.rundir import DB
    from suites.run.runner import run_suite
    from suites.run.store import Store

    cfg = load_suite(suite_path(args.suite), allow_code=args.allow_code)
    if args.device:
        _device(args.device)
    t0 = time.perf_counter()
    out = run_suite(cfg, args.out or f"results/{cfg.name}", resume=args.resume, device=args.device,
                    limit=args.limit, progress=not args.quiet, data_dir=args.data_dir, overwrite=args.overwrite,
                    workers=args.workers, address=args.address,
                    rankers=None if args.rankers is None else args.rankers.split(","))
    store = Store(out / DB, readonly=True)
    try:
        left = store.meta().get("unfinished") or []
    finally:
        store.close()
    print(f"suite {cfg.name}: {'part done' if left else 'done'} in {time.perf_counter() - t0:.1f}s -> "
          f"{out}/results.sqlite" + (f" (left: {', '.join(left)}; continue with --resume)" if left else ""))
    return 0


def cmd_floors(args) -> int:
    from pathlib import Path

    from rankers import ranker_spec
    from suites.report.speed import measure_floors
    names = [r for r in args.rankers.split(",") if r]
    for r in names:
        ranker_spec(r)
    _writable_file(args.out, "--out")
    res = measure_floors(_device(args.device), names, args.pairs)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(res, indent=1))
    print(f"wrote {args.out}")
    return 0


def cmd_plan(args) -> int:
    from suites.listing import suite_path
    from suites.run.config import load_suite
    from suites.run.design import design_suite, refuse_existing
    from suites.run.planner import parse_budget, plan_suite, plan_text
    budget = parse_budget(args.budget) if args.budget is not None else None
    cfg = load_suite(suite_path(args.suite), allow_code=args.allow_code)
    refuse_existing(args.design)  # before any calibration runs
    p = plan_suite(cfg, device=args.device and _device(args.device), workers=args.workers,
                   calibrate=args.calibrate, budget_s=budget, data_dir=args.data_dir,
                   calibration_run=args.calibration_run)
    if args.design is not None:
        p["design"] = design_suite(suite_path(args.suite), cfg, p, args.design, args.data_dir)
    print(json.dumps(p, indent=2) if args.json else plan_text(p))
    return 0


def cmd_report(args) -> int:
    import os
    from pathlib import Path

    from suites.report import write_report
    if args.pack and Path(args.dir).is_dir() and not os.access(args.dir, os.W_OK | os.X_OK):
        raise BadInput(f"--pack writes {Path(args.dir) / 'results.sqlite.gz'}, but {args.dir} is not writable")
    if args.out is not None:
        if Path(args.out).is_dir():
            raise BadInput(f"--out {args.out} is a directory; give the report's file name, e.g. {args.out}/RESULTS.md")
        _writable_file(args.out, "--out")
    if args.html is not None and Path(args.html).exists() and not Path(args.html).is_dir():
        raise BadInput(f"--html {args.html} is a file; give a directory for the site")
    path = write_report(args.dir, args.out, html=args.html)
    print(f"wrote {path}")
    if args.html is not None:
        print(f"wrote {Path(args.html) / 'index.html'}")
    if args.pack:
        from suites.run.rundir import pack_database
        print(f"wrote {pack_database(Path(args.dir))}")
    return 0


def argv_cmd(argv: list[str] | None) -> str | None:
    """The subcommand of a command line (None when there is none)."""
    args = sys.argv[1:] if argv is None else argv
    return next((a for a in args if not a.startswith("-")), None)


COMMANDS = {"list": cmd_list, "train": cmd_train, "rank": cmd_rank, "explain": cmd_explain, "run": cmd_run,
            "report": cmd_report, "floors": cmd_floors, "plan": cmd_plan}


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        return COMMANDS[args.cmd](args)
    except BadInput as e:
        msg = " ".join(str(e).split())  # one line, whatever the user's input held
        print(f"rexbench: error: {msg}", file=sys.stderr)
        return 2
    except RunFault as e:  # not the user's input: one line with the next step
        print(f"rexbench: error: {' '.join(str(e).split())}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        what = ("; the finished shards are kept: the same command with --resume continues"
                if argv_cmd(argv) == "run" else "")
        print(f"rexbench: interrupted{what}", file=sys.stderr)
        return 130
    except SystemExit as e:  # --help / --version
        return e.code if isinstance(e.code, int) else 0
    except BrokenPipeError:  # e.g. `rexbench list | head`: the reader left, nothing is wrong
        import os
        sys.stdout = open(os.devnull, "w")
        return 0


if __name__ == "__main__":
    sys.exit(main())
