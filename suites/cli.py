"""The `rexbench` command line (see ../shared/spec/contract.md).

Exit status: 0 success, 2 bad usage or bad input (one-line reason on stderr),
1 internal failure.
"""
from __future__ import annotations

import argparse
import json
import sys
import time

from rankers.errors import BadInput


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # argparse's own usage errors -> exit 2 with one line
        raise BadInput(message)


def _common(p: argparse.ArgumentParser, collection: bool = True) -> None:
    if collection:
        p.add_argument("--collection", default="cranfield", help="cranfield | synthetic | irds:<id>")
    p.add_argument("--data-dir", default=None, help="directory holding cranfield/ (default: $REXBENCH_DATA)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu", help="cpu | cuda")
    p.add_argument("--checkpoint", default=None, help="use this trained ranker instead of the cache")


def build_parser() -> argparse.ArgumentParser:
    ap = _Parser(prog="rexbench", description="Benchmark explanations of neural rankers.")
    sub = ap.add_subparsers(dest="cmd", required=True, parser_class=_Parser)

    p = sub.add_parser("list", help="registered rankers, explainers, metrics and suites")
    p.add_argument("--json", action="store_true")

    p = sub.add_parser("train", help="train a ranker (cached under $REXBENCH_HOME)")
    p.add_argument("ranker")
    _common(p)
    p.add_argument("--out", default=None, help="checkpoint directory (default: the cache)")

    p = sub.add_parser("rank", help="re-rank a split's BM25 candidates; nDCG@10, MRR@10, MAP")
    p.add_argument("ranker")
    _common(p)
    p.add_argument("--split", default="test")
    p.add_argument("--json", action="store_true")
    return ap


def _device(name: str) -> str:
    import torch
    if name not in ("cpu", "cuda") and not name.startswith("cuda:"):
        raise BadInput(f"unknown device {name!r}; valid: cpu, cuda")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise BadInput("--device cuda given but no CUDA device is available")
    return name


def cmd_list(args) -> int:
    from rankers import RANKERS
    out = {"rankers": [{"name": s.name, "kind": s.kind, "trainable": s.trainable} for s in RANKERS.values()],
           "explainers": [], "metrics": [], "suites": []}
    for extra in _list_extras():
        for k, v in extra.items():
            out[k] = v
    if args.json:
        print(json.dumps(out, indent=2))
    else:
        for k, rows in out.items():
            print(f"{k}:")
            for r in rows:
                rest = ", ".join(f"{a}={b}" for a, b in r.items() if a != "name")
                print(f"  {r['name']:<24} {rest}")
    return 0


def _list_extras() -> list[dict]:
    """Registries of the later layers (explainers, metrics, suites), when importable."""
    extras = []
    try:
        from suites.listing import listing
        extras.append(listing())
    except ImportError:
        pass
    return extras


def cmd_train(args) -> int:
    from pathlib import Path

    from rankers import ranker_spec
    from rankers.evaluate import evaluate
    from rankers.training import build_ranker, checkpoint_dir, save_ranker, train
    from suites.collections import load_collection

    spec = ranker_spec(args.ranker)
    coll = load_collection(args.collection, args.data_dir)
    if not spec.trainable:
        print(f"{args.ranker} has nothing to train; it is built from the collection on use.", file=sys.stderr)
        return 0
    model = build_ranker(args.ranker, coll, args.seed).to(_device(args.device))
    log = train(model, coll, seed=args.seed)
    path = save_ranker(model, Path(args.out) if args.out else checkpoint_dir(coll.name, args.ranker, args.seed),
                       coll.name, log)
    res = evaluate(model, coll, "dev")
    print(f"trained {args.ranker} on {coll.name} in {log['seconds']:.1f}s (best epoch {log.get('best_epoch')}, "
          f"dev nDCG@10 {res['ndcg@10']:.4f}) -> {path}")
    return 0


def cmd_rank(args) -> int:
    from rankers.evaluate import evaluate
    from rankers.training import get_ranker
    from suites.collections import load_collection

    coll = load_collection(args.collection, args.data_dir)
    model = get_ranker(args.ranker, coll, args.seed, args.checkpoint, device=_device(args.device))
    res = {"ranker": args.ranker, "collection": coll.name, "split": args.split, **evaluate(model, coll, args.split)}
    if args.json:
        print(json.dumps(res))
    else:
        print(f"{args.ranker} on {coll.name}/{args.split} ({res['queries']} queries): nDCG@10 {res['ndcg@10']:.4f}  "
              f"MRR@10 {res['mrr@10']:.4f}  MAP {res['map']:.4f}")
    return 0


COMMANDS = {"list": cmd_list, "train": cmd_train, "rank": cmd_rank}


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        return COMMANDS[args.cmd](args)
    except BadInput as e:
        print(f"rexbench: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
