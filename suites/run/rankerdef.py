"""Ranker definitions: one form shared by suite files, the CLI and the Python API.

A definition is a name, a registered type, the type's own parameters, and how to get weights
(`train`, `checkpoint`). Suite files write it as a `[rankers.NAME]` table; the CLI takes
`--suite FILE --ranker NAME` (a table of that suite) or `--ranker TYPE` with repeated
`--ranker-param KEY=VALUE` (JSON values, else strings), e.g.

    rexbench explain --ranker crossencoder --ranker-param model=/models/my-ce \\
        --ranker-param train=false --explainer occlusion --qid 1 --docid 184
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field

from rankers.base import Ranker
from rankers.errors import BadInput
from rankers.params import check_params
from rankers.registry import ranker_spec

from .resolved import importable_from

#: keys a definition may set besides the type's own parameters
DEF_KEYS = ("train", "checkpoint")


@dataclass
class RankerDef:
    name: str
    type: str
    params: dict = field(default_factory=dict)
    train: bool = True
    checkpoint: str | None = None
    #: the suite file's folder: modules there import without PYTHONPATH (`importable_from`)
    base_dir: str | None = None
    #: training seed (None: the caller's, i.e. the suite's seed)
    train_seed: int | None = None

    def load(self, coll, seed: int = 0, device: str = "cpu", progress: bool = True) -> Ranker:
        """The ready ranker (checkpoint, cache, trained now, or as given; see `get_ranker`)."""
        from rankers.training import get_ranker
        with importable_from(self.base_dir):
            seed = seed if self.train_seed is None else int(self.train_seed)
            return get_ranker(self.type, coll, seed, self.checkpoint, train_if_missing=self.train, device=device,
                              progress=progress, config=self.params)


def from_plan(cfg, name: str) -> RankerDef:
    """Ranker `name` of a loaded suite, as its resolved plan has it."""
    if name not in cfg.plan.rankers:
        raise BadInput(f"suite {cfg.path} defines no ranker {name!r}; it defines: {', '.join(cfg.plan.rankers)}")
    p = cfg.plan.rankers[name]
    return RankerDef(name, p.type, p.config, p.train, p.checkpoint, p.base_dir, p.train_seed)


def parse_items(items: list[str], flag: str) -> dict:
    """['KEY=VALUE', ...] -> dict; values parsed as JSON where they are JSON, else kept as strings."""
    out = {}
    for it in items:
        if "=" not in it:
            raise BadInput(f"{flag} expects KEY=VALUE, got {it!r}")
        k, v = it.split("=", 1)
        try:
            out[k] = json.loads(v)
        except json.JSONDecodeError:
            out[k] = v
    return out


def from_cli(name: str, items: list[str], checkpoint: str | None = None) -> RankerDef:
    """`--ranker TYPE` with `--ranker-param KEY=VALUE` items (the type's parameters, train, checkpoint)."""
    from rankers.params import Bool, Str
    spec = ranker_spec(name)
    raw = parse_items(items, "--ranker-param")
    schema = {**spec.cls.params, "train": Bool(True), "checkpoint": Str(None, nullable=True)}
    given = check_params("--ranker-param", schema, raw)
    own = {k: v for k, v in given.items() if k not in DEF_KEYS}
    ckpt = given.get("checkpoint") or checkpoint
    return RankerDef(name, name, own, bool(given.get("train", True)), ckpt)


def suite_of(args):
    """The CLI's `--suite FILE` loaded (None without one); it defines the ranker, so --ranker-param and
    --checkpoint are refused beside it."""
    if not getattr(args, "suite", None):
        return None
    if args.ranker_param or args.checkpoint:
        raise BadInput("--suite takes the ranker's definition from the suite file; drop --ranker-param/--checkpoint")
    from .config import load_suite
    return load_suite(args.suite, getattr(args, "allow_code", False))


def from_args(args) -> RankerDef:
    """The CLI's ranker: `--suite FILE --ranker NAME`, or `--ranker TYPE [--ranker-param ...]`."""
    cfg = suite_of(args)
    if cfg is not None:
        return from_plan(cfg, args.ranker)
    return from_cli(args.ranker, args.ranker_param, args.checkpoint)
