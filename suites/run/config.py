"""Declarative suite files (TOML, read with stdlib tomllib) and their validation.

```toml
[suite]
name = "quick"            # an identifier (letters, digits, _ and -); rows are keyed by it
collection = "synthetic"  # cranfield | trec-dl-2019 | trec-dl-2020 | vaswani | synthetic | beir:DIR | trec:DIR | irds:<id>
seed = 0
device = "cpu"            # cpu | cuda (the CLI's --device overrides)
batch_size = "auto"       # rows per model call; auto: per device and ranker (CPU 16 transformers, 128 others; CUDA 128-512)

[samples]
split = "test"            # queries come from this split, in order
queries = 8               # how many (0 = all); the CLI's --limit overrides
top_k = 2                 # the ranker's top-k candidates per query ...
relevant = 1              # ... plus up to this many judged-relevant candidates
contrast_gap = 5          # d- for pairwise metrics: the candidate this many ranks below d+
# run_file = "first_stage.trec"  # candidates from your own first stage (default: BM25 top-100)

[rankers.knrm]            # one table per ranker; optional: checkpoint = "path", train = true,
dim = 64                  # queries = N, the ranker's own parameters (`rexbench list --json`),
                          # and per-ranker explainer/metric overrides (costly rankers):
[rankers.crossencoder]
queries = 3
[rankers.ce_delete]       # several rankers of one type under their own names
type = "crossencoder"
removal = "delete"
[rankers.my_ce]           # your own cross-encoder, used as given
type = "crossencoder"
model = "/path/to/model"  # local directory (offline) or HF id already in the HF cache
train = false
[rankers.my_fn]           # any scoring function fn(queries, docs) -> scores
type = "callable"
function = "mypkg.scoring:score"
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

import functools
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from rankers.errors import BadInput
from rankers.params import Bool, Choice, Int, IntOrAuto, Param, Str, check_params

NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")

SUITE_KEYS = {"name": Str(None, doc="identifier: letters, digits, _ and -"),
              "collection": Str(None, doc="cranfield | trec-dl-2019 | trec-dl-2020 | vaswani | synthetic | beir:DIR | "
                                "trec:DIR | irds:<id>"),
              "seed": Int(0, lo=0, hi=2 ** 32 - 1), "device": Choice("cpu", ("cpu", "cuda")),
              "batch_size": IntOrAuto((int, str), "auto", lo=1, doc="rows per model call in explainers and metrics; "
                                     "auto: per device and ranker (rankers.scorer.default_batch_size: CPU 16 for "
                                     "transformers, 128 others; CUDA 128-512 by memory)"),
              "description": Str("")}
#: suite keys that do not change what a run computes (editing them does not refuse --resume)
NOT_FINGERPRINTED = ("description",)
SAMPLE_KEYS = {"split": Choice("test", ("train", "dev", "test", "all")),
               "queries": Int(8, lo=0, hi=100000, doc="queries from the split (0 = all)"),
               "top_k": Int(2, lo=0, hi=1000, doc="the ranker's top-k candidates per query"),
               "relevant": Int(1, lo=0, hi=1000, doc="plus up to this many judged-relevant candidates"),
               "contrast_gap": Int(5, lo=1, hi=1000, doc="d- for pairwise metrics: this many ranks below d+"),
               "run_file": Str(None, nullable=True, doc="TREC run file (qid Q0 docid rank score tag, path relative to "
                               "the suite file) giving the candidates of every sampled query (default: BM25 top-100)")}
#: keys of a `[rankers.NAME]` table besides the ranker's own constructor parameters
RANKER_KEYS = {"type": Str(None, nullable=True, doc="registered ranker type (default: the table name)"),
               "checkpoint": Str(None, nullable=True, doc="trained checkpoint directory"),
               "train": Bool(True, "train (or fine-tune) on first use when no checkpoint is cached; false: never train "
                             "(HF models are used as given; others need a checkpoint)"),
               "relevant": Int(None, lo=0, hi=1000, nullable=True,
                               doc="judged-relevant samples per query for this ranker (default: the suite's [samples])"),
               "train_seed": Int(None, lo=0, hi=2 ** 32 - 1, nullable=True,
                                 doc="training seed of this ranker (default: the suite's seed); tables of one type "
                                 "that differ only in train_seed form RESULTS.md's training-seed study"),
               "queries": Int(0, lo=0, hi=100000, doc="fewer queries for this ranker (0 = the suite's)"),
               "explain": Bool(True, "explain this ranker; false: effectiveness only (e.g. a variant to compare)"),
               "skip": Param((list,), [], each=Str(None), allow_empty=True, doc="suite explainers and metrics not run for this ranker "
                             "(their rows are recorded as skipped, with this reason: e.g. what a CPU cannot afford)"),
               "explainers": Param((dict,), {}, doc="per-ranker explainer parameter overrides"),
               "metrics": Param((dict,), {}, doc="per-ranker metric parameter overrides")}
EFFECTIVENESS_KEYS = {"collections": Param((list,), [], each=Str(None)), "rankers": Param((list,), [], each=Str(None))}


@dataclass
class SuiteConfig:
    name: str
    collection: str
    path: Path | None = None
    seed: int = 0
    device: str = "cpu"
    batch_size: int | str = "auto"
    description: str = ""
    split: str = "test"
    queries: int = 8
    top_k: int = 2
    relevant: int = 1
    contrast_gap: int = 5
    run_file: str | None = None
    rankers: dict[str, dict] = field(default_factory=dict)
    explainers: dict[str, dict] = field(default_factory=dict)
    metrics: dict[str, dict] = field(default_factory=dict)
    effectiveness: list[str] = field(default_factory=list)
    effectiveness_rankers: list[str] = field(default_factory=list)
    #: rankers given as Python objects (`suites.api.benchmark`): name -> ready Ranker
    objects: dict = field(default_factory=dict, repr=False)

    def explainer_type(self, name: str) -> str:
        """The registered type of the suite's explainer `name` (its `type` key, else the name itself), e.g.
        `[explainers.gradcam_signed] type = "gradcam"`."""
        return self.explainers.get(name, {}).get("type") or name

    def explainer_params(self, name: str, ranker: str | None = None) -> dict:
        """The explainer's parameters (without `type`), with a ranker's own overrides."""
        own = self.rankers.get(ranker, {}).get("explainers", {}).get(name, {}) if ranker else {}
        return {k: v for k, v in {**self.explainers.get(name, {}), **own}.items() if k != "type"}

    def ranker_type(self, name: str) -> str:
        """The registered type of the suite's ranker `name` (its `type` key, else the name itself)."""
        if name in self.objects:
            return self.objects[name].name if self.objects[name].name in _registered() else "object"
        return self.rankers[name].get("type") or name

    def ranker_config(self, name: str) -> dict:
        """The ranker's own constructor parameters given in its table."""
        return {k: v for k, v in self.rankers[name].items() if k not in RANKER_KEYS}

    def ranker_seed(self, name: str) -> int:
        """The seed ranker `name` is built and trained with: its `train_seed`, else the suite's `seed`."""
        seed = self.rankers[name].get("train_seed")
        return self.seed if seed is None else int(seed)

    def ranker_relevant(self, name: str) -> int:
        """Judged-relevant samples per query for ranker `name`: its own `relevant`, else the suite's."""
        relevant = self.rankers.get(name, {}).get("relevant")
        return self.relevant if relevant is None else int(relevant)

    def base_dir(self) -> str | None:
        """The suite file's folder (its modules import without PYTHONPATH), or None without a file."""
        return str(Path(self.path).resolve().parent) if self.path else None

    @functools.cached_property
    def plan(self):
        """The suite resolved once (`resolved.SuitePlan`): what the runner, workers and planner read."""
        from .resolved import resolve
        return resolve(self)

    def resolved(self) -> dict:
        """Every setting after defaults (the run fingerprint's configuration part: `SuitePlan.fingerprint`)."""
        return self.plan.fingerprint()


def _registered() -> dict:
    from rankers import RANKERS
    return RANKERS


def check_name(name: str, where: str) -> str:
    if not isinstance(name, str) or not NAME_RE.fullmatch(name):
        raise BadInput(f"{where}: {name!r} is not an identifier (letters, digits, _ and -, starting with a "
                       "letter or digit, at most 64 characters)")
    return name


def load_suite(path: str | Path, allow_code: bool = False) -> SuiteConfig:
    """Parse and validate a suite file; every problem is a BadInput naming file, key and what is allowed.

    `allow_code`: the user's opt-in (`--allow-code`) to run Python code a suite file names (a callable
    ranker's `function = "module:attr"`, which imports the module, one beside the suite file included).
    Without it such a suite is refused in one line: a suite file alone never executes code."""
    from explainers import EXPLAINERS, check_explainer_params
    from metrics import METRICS, check_metric_params
    from rankers import RANKERS

    path = Path(path)
    if path.is_dir():
        raise BadInput(f"suite file {path} is a directory; give a suite .toml file in it")
    if not path.is_file():
        raise BadInput(f"suite file {path} does not exist")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise BadInput(f"{path}: malformed TOML: {str(e).splitlines()[0] if str(e) else type(e).__name__}") from None
    except OSError as e:
        raise BadInput(f"{path}: cannot read ({e.strerror or e})") from None
    f = str(path)
    top = {"suite", "samples", "rankers", "explainers", "metrics", "effectiveness"}
    for k in data:
        if k not in top:
            raise BadInput(f"{f}: unknown section [{k}]; allowed: {', '.join(sorted(top))}")
    suite = check_params(f"{f} [suite]", SUITE_KEYS, data.get("suite", {}))
    for req in ("name", "collection"):
        if req not in suite:
            raise BadInput(f"{f} [suite]: missing required key {req!r}")
    check_name(suite["name"], f"{f} [suite].name")
    samples = check_params(f"{f} [samples]", SAMPLE_KEYS, data.get("samples", {}))
    if samples.get("run_file"):
        samples["run_file"] = str((path.parent / samples["run_file"]).resolve())
        if not Path(samples["run_file"]).is_file():
            raise BadInput(f"{f} [samples].run_file: {samples['run_file']} does not exist")
    cfg = SuiteConfig(path=path, **suite, **samples)
    for section, registry in (("rankers", RANKERS), ("explainers", EXPLAINERS), ("metrics", METRICS)):
        table = data.get(section, {})
        if not isinstance(table, dict) or not table:
            raise BadInput(f"{f}: [{section}] is empty; name at least one of: {', '.join(registry)}")
        for name, params in table.items():
            if not isinstance(params, dict):
                raise BadInput(f"{f} [{section}.{name}]: expected a table of parameters")
            kind = params.get("type", name) if section in ("rankers", "explainers") else name
            if section in ("rankers", "explainers"):
                check_name(name, f"{f} [{section}.{name}]")
            if not isinstance(kind, str) or kind not in registry:
                what = f"type {kind!r}" if kind != name else repr(name)
                raise BadInput(f"{f} [{section}.{name}]: unknown {section[:-1]} {what}; valid: "
                               f"{', '.join(sorted(registry))}")
        setattr(cfg, section, {k: dict(v) for k, v in table.items()})

    def check_tables(where, kind, table, names):
        if not isinstance(table, dict):
            raise BadInput(f"{where}: expected a table")
        for name, params in table.items():
            if name not in names:
                raise BadInput(f"{where}: {kind} {name!r} is not in the suite's [{kind}s]")
            if kind == "explainer":
                if "type" in params and names is not cfg.explainers:
                    raise BadInput(f"{where}.{name}: `type` belongs in [explainers.{name}], not in a ranker's table")
                check_explainer_params(cfg.explainer_type(name), {k: v for k, v in params.items() if k != "type"},
                                       f"{where}.{name}")
            else:
                check_metric_params(name, params, f"{where}.{name}")

    check_tables(f"{f} [explainers]", "explainer", cfg.explainers, cfg.explainers)
    check_tables(f"{f} [metrics]", "metric", cfg.metrics, cfg.metrics)
    for name, params in cfg.rankers.items():
        schema = {**RANKER_KEYS, **RANKERS[cfg.ranker_type(name)].cls.params}
        check_params(f"{f} [rankers.{name}]", schema, params)
        check_tables(f"{f} [rankers.{name}].explainers", "explainer", params.get("explainers", {}), cfg.explainers)
        check_tables(f"{f} [rankers.{name}].metrics", "metric", params.get("metrics", {}), cfg.metrics)
        if isinstance(params.get("function"), str) and not allow_code:
            raise BadInput(f"{f} [rankers.{name}]: function = {params['function']!r} imports and runs Python code; "
                           "a suite file runs code only with --allow-code")
        for x in params.get("skip", []):
            if x not in cfg.explainers and x not in cfg.metrics:
                raise BadInput(f"{f} [rankers.{name}].skip: {x!r} is neither an explainer nor a metric of the suite")
    ref = cfg.metrics.get("explainer_agreement", {}).get("reference")
    if ref is not None and ref not in EXPLAINERS:
        raise BadInput(f"{f} [metrics.explainer_agreement].reference: unknown explainer {ref!r}")
    eff = check_params(f"{f} [effectiveness]", EFFECTIVENESS_KEYS, data.get("effectiveness", {}))
    cfg.effectiveness = list(eff.get("collections", []))
    cfg.effectiveness_rankers = list(eff.get("rankers", []))
    for r in cfg.effectiveness_rankers:
        if r not in RANKERS and r not in cfg.rankers:
            raise BadInput(f"{f} [effectiveness].rankers: unknown ranker {r!r}; valid: {', '.join(sorted(RANKERS))}")
    return cfg
