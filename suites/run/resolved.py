"""A suite resolved once: every ranker's type, parameters (as given and with defaults filled in), training
seed, samples, skip list, weights (train, checkpoint, cache entry) and every explainer's and metric's
parameters with the ranker's own overrides. `SuiteConfig.plan` builds it on first use; the runner, the
shard executor on every worker and the planner read it and never look at the suite's tables again.

`SuitePlan.fingerprint()` is the configuration part of a run's fingerprint (`rundir.fingerprint`): what
`--resume` and `plan --calibration-run` compare.
"""
from __future__ import annotations

import json
import sys
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from explainers import explainer_class
from metrics import METRICS, metric_spec
from rankers.base import Ranker
from rankers.identity import artifacts, source_digest
from rankers.params import resolved
from rankers.registry import ranker_spec
from rankers.params import ADDED_OFF
from rankers.training import effective_training
from rankers.training import cached_checkpoint, get_ranker, training_hyperparameters

if TYPE_CHECKING:
    from .config import SuiteConfig


@contextmanager
def importable_from(directory: str | None):
    """`function = "module:attr"` finds a module in `directory` (the suite file's folder) without
    PYTHONPATH: the folder is appended to sys.path while rankers load (installed modules win a name
    clash). The imported module stays in sys.modules."""
    if directory is None or directory in sys.path:
        yield
        return
    sys.path.append(directory)
    try:
        yield
    finally:
        if directory in sys.path:
            sys.path.remove(directory)


@dataclass(frozen=True)
class ExplainerPlan:
    """An explainer as one ranker runs it: its registered type and parameters (the suite's table with that
    ranker's overrides, without `type`)."""

    name: str
    type: str
    params: dict


@dataclass(frozen=True)
class RankerPlan:
    """One suite ranker, resolved. `config`: its constructor parameters as written (what loads the weights and
    keys the cache entry); `params`: every constructor parameter, defaults filled in."""

    name: str
    type: str
    config: dict
    params: dict
    train: bool
    checkpoint: str | None
    #: training seed: the table's `train_seed`, else the suite's seed
    seed: int
    #: judged-relevant samples per query: the table's `relevant`, else the suite's
    relevant: int
    #: queries explained: the table's `queries` (0: every sampled query of the suite)
    queries: int
    explain: bool
    skip: frozenset
    explainers: dict[str, ExplainerPlan]
    metrics: dict[str, dict]
    #: training hyper-parameters when this run trains it (else None)
    training: dict | None
    #: content digests of what computes its scores besides the parameters (`rankers.identity.artifacts`)
    artifacts: dict
    #: the table's own `train_seed` (None: it trains with the suite's seed)
    train_seed: int | None = None
    #: the suite file's folder (a callable's module is found there)
    base_dir: str | None = None
    #: a Python object given to the API (used as it is)
    obj: Ranker | None = field(default=None, compare=False, repr=False)

    @property
    def trainable_here(self) -> bool:
        """Trained (or fine-tuned) on first use by this run when not cached."""
        return self.obj is None and ranker_spec(self.type).trainable and self.train and not self.checkpoint

    def cache_dir(self, coll) -> Path | None:
        """Where the trained weights are cached for collection `coll` (None when they come from elsewhere)."""
        return cached_checkpoint(self.type, coll, self.seed, self.config) if self.trainable_here else None

    def load(self, coll, device: str = "cpu", progress: bool = False, train: bool | None = None,
             own_checkpoint: bool = True) -> Ranker:
        """The ranker ready on `device`: the API's object, or loaded, taken from the cache or trained now
        (`train` = False never trains: only a cached model or weights as given). `own_checkpoint` = False: for
        another collection (`[effectiveness]`), whose model is cached or trained for it; the table's checkpoint,
        made for the suite's collection, is not used."""
        if self.obj is not None:
            return self.obj.to(device).eval()
        with importable_from(self.base_dir):
            return get_ranker(self.type, coll, self.seed, self.checkpoint if own_checkpoint else None,
                              train_if_missing=self.train if train is None else train, device=device,
                              progress=progress, config=self.config)

    def weights_key(self) -> str | None:
        """What determines the unperturbed scores: type, constructor parameters other than the runtime ones,
        training seed and weights (None for Python objects: never shared). Rankers with one key (tables that
        differ only in `removal`, unless the model was trained with its removal) score the candidates alike."""
        if self.obj is not None:
            return None
        from rankers.training import identity_config
        spec = ranker_spec(self.type)
        runtime = {k: v for k, v in self.config.items() if k in spec.cls.runtime_params}
        # a runtime parameter that the weights learnt (the operator of removal training) keeps tables apart
        params = identity_config(spec, {k: v for k, v in self.config.items() if k not in runtime}, runtime)
        return json.dumps([self.type, params, self.train_seed, self.checkpoint, self.train], sort_keys=True,
                          default=str)


@dataclass(frozen=True)
class SuitePlan:
    """The resolved suite: its rankers in table order (`rankers`), the explainers in run order (the agreement
    reference first), and the rankers evaluated on the `[effectiveness]` collections."""

    rankers: dict[str, RankerPlan]
    explainer_order: tuple[str, ...]
    effectiveness_rankers: tuple[RankerPlan, ...]
    _fingerprint: dict = field(repr=False, compare=False, default_factory=dict)

    def explained(self) -> list[RankerPlan]:
        return [r for r in self.rankers.values() if r.explain]

    def fingerprint(self) -> dict:
        """Every setting after defaults (the run fingerprint's configuration part)."""
        return json.loads(json.dumps(self._fingerprint))


def resolve(cfg: "SuiteConfig") -> SuitePlan:
    """Resolve `cfg` (a validated suite) once; see the module docstring."""
    from .config import RANKER_KEYS, SAMPLE_KEYS, SUITE_KEYS, NOT_FINGERPRINTED
    ref = cfg.metrics.get("explainer_agreement", {}).get("reference",
                                                         METRICS["explainer_agreement"].defaults["reference"])
    order = tuple(sorted(cfg.explainers, key=lambda e: e != ref))
    base = cfg.base_dir()
    rankers, printed = {}, {}
    for r, t in cfg.rankers.items():
        explainers = {e: ExplainerPlan(e, cfg.explainer_type(e), cfg.explainer_params(e, r)) for e in order}
        metrics = {m: {**cfg.metrics[m], **t.get("metrics", {}).get(m, {})} for m in cfg.metrics}
        common = dict(name=r, relevant=cfg.ranker_relevant(r), queries=int(t.get("queries") or 0),
                      explain=bool(t.get("explain", True)), skip=frozenset(t.get("skip", [])),
                      explainers=explainers, metrics=metrics, base_dir=base)
        if r in cfg.objects:  # a Python object: its class and constructor config identify it
            obj = cfg.objects[r]
            code = artifacts(obj.config())
            fn = source_digest(getattr(obj, "fn", None))  # a Python function's own source
            if fn:
                code["function"] = fn
            rankers[r] = RankerPlan(type=cfg.ranker_type(r), config=obj.config(), params=obj.config(), train=False,
                                    checkpoint=None, seed=cfg.seed, training=None, artifacts=code, obj=obj, **common)
            printed[r] = {"object": f"{type(obj).__module__}.{type(obj).__qualname__}", "params": obj.config(),
                          "explainers": t.get("explainers", {}), "metrics": t.get("metrics", {}),
                          **({"artifacts": code} if code else {})}
            continue
        rtype = cfg.ranker_type(r)
        spec = ranker_spec(rtype)
        config = cfg.ranker_config(r)
        own = resolved(spec.cls.params, config)
        train, checkpoint = bool(t.get("train", True)), t.get("checkpoint")
        training = training_hyperparameters(spec.cls) if spec.trainable and train and not checkpoint else None
        code = artifacts(own, checkpoint, base)
        rankers[r] = RankerPlan(type=rtype, config=config, params=own, train=train, checkpoint=checkpoint,
                                seed=cfg.ranker_seed(r), training=training, artifacts=code,
                                train_seed=t.get("train_seed"), **common)
        printed[r] = {**resolved({k: p for k, p in RANKER_KEYS.items() if k not in ("explainers", "metrics")},
                                 {k: v for k, v in t.items() if k in RANKER_KEYS}),
                      "type": rtype, "params": {k: v for k, v in own.items()
                                                if not (k in ADDED_OFF and v == ADDED_OFF[k])},
                      "explainers": t.get("explainers", {}),
                      "metrics": t.get("metrics", {}),
                      **({"training": effective_training(training, own.get("removal_training") or 0.0)}
                         if training is not None else {}),
                      **({"artifacts": code} if code else {})}  # code and local files, by content
    effectiveness = tuple(rankers[r] if r in rankers else _registered(r, cfg)
                          for r in (cfg.effectiveness_rankers or [r for r in cfg.rankers if r not in cfg.objects]))
    fp = {"suite": {k: getattr(cfg, k) for k in SUITE_KEYS if k not in NOT_FINGERPRINTED},
          "samples": {k: getattr(cfg, k) for k in SAMPLE_KEYS},
          "rankers": printed,
          "explainers": {e: {**({"type": p["type"]} if "type" in p else {}),
                             **resolved(explainer_class(cfg.explainer_type(e)).params, cfg.explainer_params(e))}
                         for e, p in cfg.explainers.items()},
          "metrics": {m: resolved(metric_spec(m).params, p) for m, p in cfg.metrics.items()},
          "effectiveness": {"collections": cfg.effectiveness, "rankers": cfg.effectiveness_rankers}}
    return SuitePlan(rankers, order, effectiveness, fp)


def _registered(name: str, cfg: "SuiteConfig") -> RankerPlan:
    """A registered ranker type named in `[effectiveness].rankers` without a table of its own: its defaults."""
    spec = ranker_spec(name)
    return RankerPlan(name=name, type=name, config={}, params=resolved(spec.cls.params, {}), train=True,
                      checkpoint=None, seed=cfg.seed, relevant=cfg.relevant, queries=0, explain=False, skip=frozenset(),
                      explainers={}, metrics={}, training=None, artifacts={}, base_dir=cfg.base_dir())
