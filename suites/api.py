"""Python API: benchmark explainers of your own ranker objects, get a pandas DataFrame.

    import pandas as pd
    from suites.api import benchmark

    def my_scores(queries: list[str], docs: list[str]) -> list[float]: ...

    df = benchmark({"mine": my_scores, "bm25": "bm25"},
                   explainers=["occlusion", "kernel_shap"], metrics=["rank_deletion", "rank_insertion"],
                   collection="cranfield", queries=5)
    df.groupby(["ranker", "explainer", "metric"]).value.mean()

Rankers may be `Ranker` objects (`rankers.CallableRanker(fn)`, a loaded transformer, your own
subclass), sentence-transformers `CrossEncoder` / `SentenceTransformer` objects (read through
their own model and tokenizer, gradients included: `rankers.st_objects`), plain functions `fn(queries, docs) -> scores` (wrapped as callable rankers),
registered type names, or ranker tables as in a suite file (`{"mine": {"type": "crossencoder",
"model": DIR, "train": False}}`). The run goes through the suite runner (the same validation, crash
recording and results schema as `rexbench run`); with `out` it stays there for
`rexbench report` (and `resume` continues it), else it is written to a temporary directory.
"""
from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import pandas as pd

from rankers.base import Ranker
from rankers.callable import CallableRanker
from rankers.errors import BadInput
from rankers.st_objects import from_sentence_transformers, is_sentence_transformers

from .run.config import RANKER_KEYS, SuiteConfig, check_name


def _as_table(x: Sequence[str] | Mapping[str, dict], what: str) -> dict[str, dict]:
    if isinstance(x, Mapping):
        for k, v in x.items():
            if v is not None and not isinstance(v, Mapping):
                raise BadInput(f"{what}[{k!r}]: expected a mapping of parameters (or None), not "
                               f"{type(v).__name__} {str(v)[:60]}")
        return {k: dict(v or {}) for k, v in x.items()}
    if isinstance(x, str) or not x:
        raise BadInput(f"{what}: give a non-empty list of names or a mapping name -> parameters")
    return {k: {} for k in x}


def _rankers(rankers: Any) -> tuple[dict[str, dict], dict[str, Ranker]]:
    """-> (suite ranker tables, name -> object) for objects, functions and registered names."""
    if isinstance(rankers, (Ranker, str)) or callable(rankers) and not isinstance(rankers, Mapping):
        rankers = [rankers]
    if not isinstance(rankers, (Mapping, list, tuple)):
        raise BadInput(f"rankers: expected a Ranker, a function, a registered name, or a list or mapping of them, "
                       f"not {type(rankers).__name__}")
    if not rankers:
        raise BadInput("rankers: give at least one ranker")
    if not isinstance(rankers, Mapping):
        rankers = {(r if isinstance(r, str) else getattr(r, "name", None) or getattr(r, "__name__", "ranker")): r
                   for r in rankers}
    tables, objects = {}, {}
    for name, r in rankers.items():
        if not isinstance(name, str):
            raise BadInput(f"ranker names must be strings, not {type(name).__name__} {name!r}")
        check_name(name, "ranker name")
        if isinstance(r, str):
            tables[name] = {"type": r}
        elif isinstance(r, Mapping):  # a ranker table, as `[rankers.NAME]` in a suite file
            tables[name] = {"type": name, **dict(r)}
            if not isinstance(tables[name]["type"], str):
                raise BadInput(f"ranker {name!r}: 'type' must be a registered ranker type name")
        elif isinstance(r, Ranker):
            tables[name], objects[name] = {}, r
        elif is_sentence_transformers(r):
            try:
                tables[name], objects[name] = {}, from_sentence_transformers(r)
            except BadInput as e:
                raise BadInput(f"ranker {name!r}: {e}") from None
        elif callable(r):
            tables[name], objects[name] = {}, CallableRanker(r, name=name)
        else:
            raise BadInput(f"ranker {name!r}: expected a Ranker, a function fn(queries, docs) -> scores, or a "
                           f"registered name, not {type(r).__name__}")
    return tables, objects


def benchmark(rankers: Ranker | Callable | str | Sequence | Mapping[str, Any],
              explainers: Sequence[str] | Mapping[str, dict], metrics: Sequence[str] | Mapping[str, dict],
              collection: str = "cranfield", *, split: str = "test", queries: int = 8, top_k: int = 2,
              relevant: int = 1, contrast_gap: int = 5, run_file: str | None = None, seed: int = 0,
              device: str = "cpu", batch_size: int | str = "auto", name: str = "api", out: str | Path | None = None,
              resume: bool = False, overwrite: bool = False, progress: bool | None = None,
              data_dir: str | None = None, workers: int = 1, address: str | None = None) -> pd.DataFrame:
    """Run explainers x metrics over `queries` of `collection` for each ranker; returns the result rows
    (columns as `results.csv`: suite, ranker, explainer, collection, qid, docid, metric, value, status,
    message, seconds, forward_passes, ...). Incompatible explainers appear as status "skipped" with the
    reason, crashes as "error"; bad input raises `BadInput` before anything runs. `workers` > 1 or
    `address` run the shards on Dask as `rexbench run` does; ranker objects then travel to the workers
    (cloudpickle: module-level functions, lambdas and torch modules do; open files, locks, sockets don't).
    `progress`: progress bars on stderr (default: when stderr is a terminal; True forces them, e.g. in a
    notebook). A callable ranker can be bounded per call: `CallableRanker(fn, timeout_s=60)`."""
    from explainers import explainer_class
    from metrics import metric_spec
    from rankers.params import check_params

    from .run.config import SAMPLE_KEYS, SUITE_KEYS
    from .run.engine import engine
    from .run.runner import run_suite

    import sys
    for flag, v in (("resume", resume), ("overwrite", overwrite)):
        if not isinstance(v, bool):
            raise BadInput(f"benchmark({flag}=...): expected True or False, got {v!r}")
    if resume and out is None:
        raise BadInput("benchmark(resume=True) needs out=DIR: the run to continue")
    if out is not None and not isinstance(out, (str, Path)):
        raise BadInput(f"benchmark(out=...): expected a directory path, got {type(out).__name__}")
    if address is not None and not isinstance(address, str):
        raise BadInput(f"benchmark(address=...): expected 'HOST:PORT' or 'tcp://HOST:PORT', got {address!r}")
    engine(workers, address, device if isinstance(device, str) else "cpu")  # workers/address checked, nothing started
    if progress is None:
        progress = sys.stderr.isatty()
    tables, objects = _rankers(rankers)
    exp, met = _as_table(explainers, "explainers"), _as_table(metrics, "metrics")
    for e, p in exp.items():
        check_params(f"explainer {e}", explainer_class(e).params, p)
    for m, p in met.items():
        check_params(f"metric {m}", metric_spec(m).params, p)
    check_params("benchmark()", {**SUITE_KEYS, **SAMPLE_KEYS},
                 {"name": name, "collection": collection, "seed": seed, "device": device, "batch_size": batch_size,
                  "split": split, "queries": queries, "top_k": top_k, "relevant": relevant,
                  "contrast_gap": contrast_gap, "run_file": run_file})
    check_name(name, "benchmark(name=...)")
    for r, t in tables.items():
        if r not in objects:
            from rankers import ranker_spec
            check_params(f"ranker {r}", {**RANKER_KEYS, **ranker_spec(t["type"]).cls.params}, t)
    cfg = SuiteConfig(name=name, collection=collection, seed=seed, device=device, batch_size=batch_size,
                      split=split, queries=queries, top_k=top_k, relevant=relevant, contrast_gap=contrast_gap,
                      run_file=str(Path(run_file).resolve()) if run_file else None, rankers=tables, explainers=exp,
                      metrics=met, objects=objects)
    if workers > 1 or address:
        _check_shippable(objects)
    if out is not None:
        run_suite(cfg, out, resume=resume, overwrite=overwrite, progress=progress, data_dir=data_dir,
                  workers=workers, address=address)
        return pd.read_csv(Path(out) / "results.csv", dtype={"qid": str, "docid": str})
    with tempfile.TemporaryDirectory(prefix="rexbench-") as tmp:
        run_suite(cfg, Path(tmp) / "run", progress=progress, data_dir=data_dir, workers=workers, address=address)
        return pd.read_csv(Path(tmp) / "run" / "results.csv", dtype={"qid": str, "docid": str})


def _check_shippable(objects: dict) -> None:
    """Ranker objects must make the round trip to Dask workers (installed); one that cannot is a one-line
    BadInput."""
    import logging

    from distributed.protocol.pickle import dumps, loads
    log = logging.getLogger("distributed.protocol.pickle")  # it logs each failed attempt with a traceback
    level = log.level
    log.setLevel(logging.CRITICAL)
    try:
        for name, obj in objects.items():
            try:
                loads(dumps(obj))  # what a worker would do with it
            except Exception as e:
                raise BadInput(f"ranker {name!r} cannot be sent to Dask workers ({type(e).__name__}: "
                               f"{str(e).splitlines()[0] if str(e) else ''}); use workers=1") from None
    finally:
        log.setLevel(level)
