"""Declarative suite files (TOML, read with stdlib tomllib) and their validation.

```toml
[suite]
name = "quick"            # rows are keyed by it
collection = "synthetic"  # cranfield | synthetic | irds:<id>
seed = 0
device = "cpu"            # cpu | cuda (the CLI's --device overrides)
batch_size = 256          # rows per model call in explainers and metrics

[samples]
split = "test"            # queries come from this split, in order
queries = 8               # how many (0 = all); the CLI's --limit overrides
top_k = 2                 # the ranker's top-k candidates per query ...
relevant = 1              # ... plus up to this many judged-relevant candidates
contrast_gap = 5          # d- for pairwise metrics: the candidate this many ranks below d+

[rankers.knrm]            # one table per ranker; optional: checkpoint = "path", train = true,
                          # queries = N, and per-ranker parameter overrides (costly rankers):
[rankers.crossencoder]
queries = 3
explainers = { kernel_shap = { n_samples = 50 } }
metrics = { pairwise_flip = { max_steps = 20 } }
[explainers.occlusion]    # one table per explainer; keys are its constructor parameters
window = 1
[metrics.deletion]        # one table per metric; keys are its parameters
max_steps = 20

[effectiveness]           # optional: evaluate `rankers` (default: the suite's) on these collections too
collections = ["cranfield", "synthetic"]
rankers = ["bm25", "knrm", "random"]
```
"""
from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from rankers.errors import BadInput

SUITE_KEYS = {"name": str, "collection": str, "seed": int, "device": str, "batch_size": int, "description": str}
SAMPLE_KEYS = {"split": str, "queries": int, "top_k": int, "relevant": int, "contrast_gap": int}
RANKER_KEYS = {"checkpoint": str, "train": bool, "queries": int, "explainers": dict, "metrics": dict}


@dataclass
class SuiteConfig:
    name: str
    collection: str
    path: Path | None = None
    seed: int = 0
    device: str = "cpu"
    batch_size: int = 256
    description: str = ""
    split: str = "test"
    queries: int = 8
    top_k: int = 2
    relevant: int = 1
    contrast_gap: int = 5
    rankers: dict[str, dict] = field(default_factory=dict)
    explainers: dict[str, dict] = field(default_factory=dict)
    metrics: dict[str, dict] = field(default_factory=dict)
    effectiveness: list[str] = field(default_factory=list)
    effectiveness_rankers: list[str] = field(default_factory=list)


def _check(where: str, table: dict, allowed: dict) -> dict:
    if not isinstance(table, dict):
        raise BadInput(f"{where}: expected a table")
    for k, v in table.items():
        if k not in allowed:
            raise BadInput(f"{where}: unknown key {k!r}; allowed: {', '.join(allowed)}")
        typ = allowed[k]
        if not isinstance(v, typ) or (typ is int and isinstance(v, bool)):
            raise BadInput(f"{where}.{k}: expected {typ.__name__}, got {type(v).__name__} {v!r}")
    return table


def load_suite(path: str | Path) -> SuiteConfig:
    """Parse and validate a suite file; every problem is a BadInput naming file, key and what is allowed."""
    from explainers import EXPLAINERS, explainer_class
    from metrics import METRICS
    from rankers import RANKERS

    path = Path(path)
    if not path.exists():
        raise BadInput(f"suite file {path} does not exist")
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as e:
        raise BadInput(f"{path}: malformed TOML: {e}") from None
    f = str(path)
    top = {"suite", "samples", "rankers", "explainers", "metrics", "effectiveness"}
    for k in data:
        if k not in top:
            raise BadInput(f"{f}: unknown section [{k}]; allowed: {', '.join(sorted(top))}")
    suite = _check(f"{f} [suite]", data.get("suite", {}), SUITE_KEYS)
    for req in ("name", "collection"):
        if req not in suite:
            raise BadInput(f"{f} [suite]: missing required key {req!r}")
    samples = _check(f"{f} [samples]", data.get("samples", {}), SAMPLE_KEYS)
    cfg = SuiteConfig(path=path, **suite, **samples)
    if cfg.device not in ("cpu", "cuda"):
        raise BadInput(f"{f} [suite].device: {cfg.device!r}; allowed: cpu, cuda")
    for section, registry in (("rankers", RANKERS), ("explainers", EXPLAINERS), ("metrics", METRICS)):
        table = data.get(section, {})
        if not table:
            raise BadInput(f"{f}: [{section}] is empty; name at least one of: {', '.join(registry)}")
        for name, params in table.items():
            if name not in registry:
                raise BadInput(f"{f} [{section}.{name}]: unknown {section[:-1]} {name!r}; valid: "
                               f"{', '.join(sorted(registry))}")
            if not isinstance(params, dict):
                raise BadInput(f"{f} [{section}.{name}]: expected a table of parameters")
        setattr(cfg, section, {k: dict(v) for k, v in table.items()})
    import inspect

    def check_params(where, kind, table, names):
        for name, params in table.items():
            if name not in names:
                raise BadInput(f"{where}: {kind} {name!r} is not in the suite's [{kind}s]")
            if not isinstance(params, dict):
                raise BadInput(f"{where}.{name}: expected a table of parameters")
            allowed = (set(inspect.signature(explainer_class(name).__init__).parameters) - {"self", "ranker"}
                       if kind == "explainer" else set(METRICS[name].defaults))
            for k in params:
                if k not in allowed:
                    raise BadInput(f"{where}.{name}: unknown parameter {k!r}; allowed: "
                                   f"{', '.join(sorted(allowed)) or '(none)'}")

    check_params(f"{f} [explainers]", "explainer", cfg.explainers, cfg.explainers)
    check_params(f"{f} [metrics]", "metric", cfg.metrics, cfg.metrics)
    for name, params in cfg.rankers.items():
        _check(f"{f} [rankers.{name}]", params, RANKER_KEYS)
        check_params(f"{f} [rankers.{name}].explainers", "explainer", params.get("explainers", {}), cfg.explainers)
        check_params(f"{f} [rankers.{name}].metrics", "metric", params.get("metrics", {}), cfg.metrics)
    eff = data.get("effectiveness", {})
    _check(f"{f} [effectiveness]", eff, {"collections": list, "rankers": list})
    cfg.effectiveness = list(eff.get("collections", []))
    cfg.effectiveness_rankers = list(eff.get("rankers", []))
    for r in cfg.effectiveness_rankers:
        if r not in RANKERS:
            raise BadInput(f"{f} [effectiveness].rankers: unknown ranker {r!r}; valid: {', '.join(sorted(RANKERS))}")
    return cfg
