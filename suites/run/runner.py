"""The resumable suite runner: rankers x explainers x samples x metrics -> SQLite rows."""
from __future__ import annotations

import dataclasses
import datetime as dt
import errno
import platform
import sqlite3
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from rankers.errors import BadInput, RunFault, about_ranker
from rankers.evaluate import evaluate
from rankers.registry import ranker_spec
from rankers.training import OlderCheckpoint, build_ranker, load_checkpoint, rexbench_version, stale_training

from ..data.collections import load_collection
from .config import SuiteConfig
from .engine import SerialEngine, engine
from .execute import RunSpec, runtime
from .prepare import plan, prepare, unfinished
from .resolved import RankerPlan
from .rundir import (DB, PACKED, RunLock, Staging, check_out_dir, clear_leftovers, clear_run, first_difference,
                     fingerprint, unpack_to_resume, writable_ancestor)
from .store import Store


def device_name(device: str) -> str:
    if device.startswith("cuda"):
        return torch.cuda.get_device_name(torch.device(device))
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return f"CPU: {line.split(':', 1)[1].strip()} ({torch.get_num_threads()} threads)"
    except OSError:
        pass
    return f"CPU: {platform.processor() or platform.machine()}"


def versions() -> dict:
    import captum
    import scipy
    out = {"python": platform.python_version(), "torch": torch.__version__, "captum": captum.__version__,
           "numpy": np.__version__, "scipy": scipy.__version__}
    try:
        import transformers
        out["transformers"] = transformers.__version__
    except ImportError:
        pass
    return out


def check_inputs(cfg: SuiteConfig, device: str, data_dir: str | None, only: set[str] | None = None):
    """Everything a run reads, checked before anything is written: the device, collection,
    split, checkpoints and effectiveness collections. `only` (`--rankers`): the rankers this call prepares, the
    only ones probed (the rest are probed by the call that runs them). Returns (collection, query ids, the rankers
    the checks loaded, by name: the run reuses them instead of loading them again)."""
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise BadInput("device cuda requested but no CUDA device is available")
    if cfg.top_k == 0:
        empty = [p.name for p in cfg.plan.explained() if p.relevant == 0]
        if empty:
            where = "[samples]" if cfg.relevant == 0 else f"[rankers.{empty[0]}]"
            raise BadInput(f"{where}: top_k = 0 and relevant = 0 select no document to explain for "
                           f"{', '.join(empty)}; set one above 0")
    if not cfg.plan.explained():
        raise BadInput("no ranker of the suite is explained (every [rankers] table has explain = false)")
    coll = load_collection(cfg.collection, data_dir, seed=cfg.seed)
    qids = sampled_queries(cfg, coll)
    if not qids:
        raise BadInput(f"split {cfg.split!r} of {coll.name} has no queries")
    if cfg.run_file:
        coll = coll.with_run(cfg.run_file)
        lacking = [q for q in qids if q not in coll.run]
        if lacking:
            raise BadInput(f"run file {cfg.run_file} has no ranking for sampled queries {', '.join(lacking[:5])}"
                           f"{' ...' if len(lacking) > 5 else ''} ({len(lacking)} of {len(qids)})")
    probed = {p.name: m for p in cfg.plan.rankers.values()
              if (only is None or p.name in only) and (m := probe_ranker(p, coll, qids[0])) is not None}
    for cname in cfg.effectiveness:
        load_collection(cname, data_dir, seed=cfg.seed)
    return coll, qids, probed


def sampled_queries(cfg: SuiteConfig, coll) -> list[str]:
    """The suite's queries: the first `queries` of its split (all with 0)."""
    qids = coll.split(cfg.split)
    return qids[: cfg.queries] if cfg.queries else qids


def probe_ranker(p: RankerPlan, coll, qid: str):
    """Load every ranker that needs no training now (HF models, callables, checkpoints, cached trained
    models, bm25) and score two candidates and the empty document, so an unloadable model, a damaged
    cached checkpoint or a misbehaving function stops the run before it writes. A ranker still to
    be trained needs a writable cache ($REXBENCH_HOME), checked here. A cached model that the run will train
    again (other training code or recipe, an older model definition) counts as not cached: the probe never trains.
    Returns the ranker when it is the one the run will use (else None: trained or fine-tuned later)."""
    if p.obj is not None:
        return _probe(p.obj, p.name, coll, qid)
    cached = False
    if p.trainable_here:
        cache = p.cache_dir(coll)
        if not (cache / "config.json").exists() or _retrained(p, cache):  # trained on first use (KNRM, ...)
            writable_ancestor(cache, f"ranker {p.name!r} will be trained and cached in {cache}; $REXBENCH_HOME")
            if ranker_spec(p.type).cls.pretrained:
                build_ranker(p.type, coll, p.seed, **p.config)  # weights load
            return None
        cached = True  # the cache is loaded (nothing to train)
    # never trains here: as given, a checkpoint or the cache; the same model the run loads
    try:
        r = p.load(coll, train=cached)
    except BadInput as e:
        raise BadInput(about_ranker(p.name, e)) from None
    return _probe(r, p.name, coll, qid)


def _retrained(p: RankerPlan, cache: Path) -> bool:
    """Whether the run will train the model cached at `cache` again, as `rankers.training.get_ranker` decides: an
    older model definition, or trained by other training code or hyper-parameters. A damaged checkpoint is a
    BadInput naming the ranker."""
    try:
        model = load_checkpoint(cache)
    except OlderCheckpoint:
        return True
    except BadInput as e:
        raise BadInput(about_ranker(p.name, e)) from None
    return stale_training(model, ranker_spec(p.type).cls) is not None


def _probe(r, rname: str, coll, qid: str):
    q_units, d_units = coll.units(r.analyzer)
    docs = [d_units[d] for d in coll.candidates(qid)[:2]]
    what = "two candidates"
    try:
        with torch.no_grad():
            r.score_tokens(q_units[qid], docs)
            what = "the empty document (every word removed, as in the effectiveness check and deletion curves)"
            enc = r.encode(q_units[qid], docs[:1])
            empty = r(enc.q_ids, enc.d_ids, torch.zeros(enc.d_ids.shape, device=enc.d_ids.device))
            if not bool(torch.isfinite(empty).all()):
                raise BadInput(f"non-finite score {float(empty[0])}")
    except (BadInput, FloatingPointError) as e:
        raise BadInput(f"{about_ranker(rname, e)} (while scoring {what})") from None
    return r


def run_suite(cfg: SuiteConfig, out_dir: str | Path, resume: bool = False, device: str | None = None,
              limit: int | None = None, progress: bool = True, data_dir: str | None = None,
              overwrite: bool = False, workers: int = 1, address: str | None = None,
              rankers: Sequence[str] | None = None) -> Path:
    """Run a suite into `out_dir` (results.sqlite, results.csv, summary.csv); returns out_dir.

    Validates everything first (options, the engine address and its scheduler, inputs, rankers,
    the output directory and any stored run), then takes the directory's lock; refuses an existing
    run unless `resume` (same fingerprint) or `overwrite` (the old run is replaced only once the new
    one has recorded its first shard: `rundir.Staging`). `workers` > 1 runs shards on a local Dask
    cluster, `address` on an existing one (`suites.run.engine`); the values are the same as with one
    worker, so neither is part of the fingerprint (a run may resume with others). `rankers` (names of the
    suite's rankers) prepares and runs only those this time, e.g. one session's share of a long run: the rows are
    the same, so it is not part of the fingerprint either; the run is finished once a later `resume` has run the
    rest. Faults that are not the input's (lost scheduler, disk full) are a `RunFault` naming the directory and
    `--resume`."""
    out = Path(out_dir)
    device = device or cfg.device
    eng = engine(workers, address, device)  # options parsed (BadInput); nothing started yet
    if limit is not None:
        cfg = dataclasses.replace(cfg, queries=int(limit))
    only = _selected(cfg, rankers)
    stored = check_out_dir(out, resume, overwrite)
    coll, qids, probed = check_inputs(cfg, device, data_dir, only)
    fp = run_fingerprint(cfg, device, coll)
    _check_resumable(out, stored, fp)
    # workers start now: before this process opens the run's files (forked workers inherit no descriptor)
    # and, spawned, while it loads and trains rankers; a scheduler at --address must answer here
    eng.start()
    try:
        with RunLock(out):
            clear_leftovers(out)  # a killed --overwrite's staging directory
            stored = check_out_dir(out, resume, overwrite)  # again, under the lock
            _check_resumable(out, stored, fp)
            if resume and stored is not None:
                unpack_to_resume(out)
            staging = Staging(out) if overwrite and ((out / DB).exists() or (out / PACKED).exists()) else None
            return _run(cfg, out, resume and stored is not None, device, coll, qids, fp, progress, data_dir, eng,
                        address, probed, staging, only)
    except RunFault as e:
        raise RunFault(f"{e}; {_continue(cfg, out)}") from None
    except sqlite3.OperationalError as e:
        raise RunFault(f"the results database in {out} cannot be written ({e}); {_continue(cfg, out)}") from None
    except OSError as e:
        if e.errno not in (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EIO):
            raise
        raise RunFault(f"cannot write in {out} ({e.strerror or e}); {_continue(cfg, out)}") from None
    finally:
        eng.close()


#: the packages whose code computes what a run records (the report's own code is left out: it reads, it records
#: nothing); their source digest is part of a run's identity
CODE_PACKAGES = ("rankers", "explainers", "metrics", "suites/run", "suites/data")


def code_digest() -> str:
    """sha256 (first 12 hex digits) over the paths and bytes of every .py file in `CODE_PACKAGES`: two checkouts
    with the same code give the same digest, whatever the machine."""
    import hashlib
    root = Path(__file__).resolve().parents[2]
    h = hashlib.sha256()
    for pkg in CODE_PACKAGES:
        for f in sorted((root / pkg).rglob("*.py")):
            h.update(f.relative_to(root).as_posix().encode() + b"\0" + f.read_bytes() + b"\0")
    return h.hexdigest()[:12]


def run_fingerprint(cfg: SuiteConfig, device: str, coll) -> dict:
    """What a run of `cfg` on `device` is (`rundir.fingerprint`): --resume and plan --calibration-run check it.
    Its versions include `code_digest()`: a run resumed by other code would mix two versions of its values, so
    --resume refuses it (continue from the commit the run started at)."""
    return fingerprint({**cfg.plan.fingerprint(), "device": device}, {"name": coll.name, "digest": coll.digest},
                       {**versions(), "rexbench": rexbench_version(), "rexbench_code": code_digest()})


def _selected(cfg: SuiteConfig, rankers: Sequence[str] | None) -> set[str] | None:
    """The names `rankers` selects (None: every ranker), checked against the suite's [rankers] tables."""
    if rankers is None:
        return None
    names = [r for r in rankers if r]
    unknown = [r for r in names if r not in cfg.plan.rankers]
    if unknown or not names:
        raise BadInput(f"--rankers: {'no ranker named' if not names else f'unknown ranker {unknown[0]!r}'}; the "
                       f"suite's rankers: {', '.join(cfg.plan.rankers)}")
    return set(names)


def _continue(cfg: SuiteConfig, out: Path) -> str:
    """The next step after a fault: the finished shards are kept and --resume continues."""
    return (f"the finished shards are kept; fix the cause, then `rexbench run {cfg.path or cfg.name} --out {out} "
            "--resume` continues")


def _check_resumable(out: Path, stored: dict | None, fp: dict) -> None:
    if stored is None:
        return
    why = "it has no fingerprint (written by an older rexbench)" if "fingerprint" not in stored else None
    diff = why or first_difference(stored["fingerprint"], fp)
    if diff and diff.startswith("versions.rexbench_code"):
        raise BadInput(f"--resume refused: rexbench's code changed since {out} was started ({diff}); a run "
                       "continues only with the code that started it (check out that commit), or use another "
                       "--out, or --overwrite to replace it")
    if diff:
        raise BadInput(f"--resume refused: {out} holds a different run; first difference: {diff}. "
                       "Use another --out, or --overwrite to replace it")


def _run(cfg: SuiteConfig, out: Path, resume: bool, device: str, coll, qids: list[str], fp: dict, progress: bool,
         data_dir: str | None, eng, address: str | None = None, probed: dict | None = None,
         staging: Staging | None = None, only: set[str] | None = None) -> Path:
    """Prepare (load or train each ranker once, effectiveness), plan (the shards not yet recorded),
    execute (here or on Dask workers, engine `eng` started) and record (this process, the one writer).
    With `staging` (--overwrite of an existing run) the database is written there and swapped in
    after the first recorded shard; with `only`, those rankers alone (the run is finished when none is left)."""
    store = Store(staging.db_path() if staging else out / DB)
    t_start = time.perf_counter()
    elapsed_before = _record_start(store, cfg, coll, device, fp, resume)
    spec = RunSpec(cfg, device, data_dir, digest=coll.digest)
    try:
        # shard order matters only when shards run side by side
        loaded, cost = prepare(cfg, coll, store, device, progress, probed or {},
                               None if isinstance(eng, SerialEngine) else qids[0], qids, only)
        _warn_cut_queries(loaded, coll, qids)
        if "prepared" not in store.meta():  # the fixed cost (`rexbench plan`): the first start's, not a resume's
            store.set_meta("prepared", {"seconds": time.perf_counter() - t_start, "resumed": resume})
        shards = plan(cfg, qids, store.done_shards(cfg.name), cost, only)
        with eng:
            _execute(eng, spec, shards, loaded, store, cfg, address, progress,
                     lambda: elapsed_before + time.perf_counter() - t_start, staging)
            if staging:
                staging.swap(store)
            eng.close(wait=False)  # the cluster shuts down while the coordinator exports
            left = unfinished(cfg, coll, store, qids)
            store.set_meta("unfinished", left)  # rankers a later --resume runs ([] once finished)
            if not left:
                store.set_meta("finished", {"wall_seconds": elapsed_before + time.perf_counter() - t_start,
                                            "finished": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")})
                if cfg.effectiveness:
                    _effectiveness(store, cfg, device, progress, data_dir)
            export(store, out)
    except BadInput:
        # the input's fault found while preparing (e.g. a function that fails on the whole split): a new run
        # that recorded no shard leaves nothing behind (exit 2 writes nothing); a resumed one keeps its shards
        if not resume and staging is None and not store.done_shards(cfg.name):
            store.close()
            clear_run(out)
        raise
    finally:  # the engine is closed by `with eng` (or by run_suite when preparing failed)
        store.close()
        if staging:
            staging.discard()  # the new run failed before its first shard: the old run stays
    return out


def _warn_cut_queries(loaded: dict, coll, qids: list[str]) -> None:
    """One stderr line per ranker that reads only the first `max_query_len` words of some sampled queries (each
    such row records `info.query_truncated`)."""
    import sys
    for rname, ranker in loaded.items():
        q_units = coll.units(ranker.analyzer)[0]
        cut = [q for q in qids if len(q_units[q]) > ranker.max_query_len]
        if cut:
            print(f"rexbench: warning: ranker {rname!r} reads the first {ranker.max_query_len} words of a query "
                  f"(max_query_len); {len(cut)} of the {len(qids)} sampled queries are longer "
                  f"({', '.join(cut[:5])}{' ...' if len(cut) > 5 else ''}); their rows record query_truncated",
                  file=sys.stderr)


def _execute(eng, spec: RunSpec, shards: list[tuple[str, str]], loaded: dict, store: Store, cfg: SuiteConfig,
             address: str | None, progress: bool, elapsed, staging: Staging | None = None) -> None:
    """Run the shards on the engine and record each one's rows as it arrives (this process: the one writer);
    `staging`: swapped in after the first recorded shard."""
    if isinstance(eng, SerialEngine):
        for rname, ranker in loaded.items():  # the serial worker reuses the rankers loaded here
            runtime(spec, rname, ranker)
    loaded.clear()
    store.set_meta("engine", {"workers": eng.workers, "address": address})
    failed: list[str] = []
    bar = tqdm(total=len(shards), desc=f"{cfg.name} ({eng.workers} worker{'s' * (eng.workers > 1)})",
               unit="shard", disable=not progress)
    for res in eng.run(spec, shards):
        bar.update(1)
        if isinstance(res, BaseException):
            failed.append(f"{type(res).__name__}: {res}")
            continue
        store.write_shard(cfg.name, res.ranker, res.qid, res.cells, res.seconds)
        store.set_meta("elapsed", elapsed())  # survives a kill
        if staging:
            staging.swap(store)
    bar.close()
    if failed:
        raise RunFault(f"{len(failed)} of {len(shards)} shards failed on every retry (first: "
                       f"{' '.join(failed[0].split())[:300]})")


def _record_start(store: Store, cfg: SuiteConfig, coll, device: str, fp: dict, resume: bool) -> float:
    """Write the run's fingerprint, suite and environment; returns the seconds already spent (resume)."""
    store.set_meta("fingerprint", fp)
    store.set_meta("suite", {"name": cfg.name, "path": str(cfg.path) if cfg.path else None,
                             "description": cfg.description, "collection": coll.name, "split": cfg.split,
                             "seed": cfg.seed, "rankers": cfg.rankers, "explainers": cfg.explainers,
                             "metrics": cfg.metrics, "samples": {"queries": cfg.queries, "top_k": cfg.top_k,
                                                                 "relevant": cfg.relevant,
                                                                 "run_file": cfg.run_file}})
    now = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    prev = store.meta().get("environment", {}) if resume else {}
    store.set_meta("environment", {"device": device, "device_name": device_name(device),
                                   "versions": {**versions(), "rexbench_code": fp["versions"]["rexbench_code"]},
                                   "started": prev.get("started", now),
                                   "resumed": prev.get("resumed", []) + ([now] if prev else [])})
    return store.meta().get("elapsed", 0.0) if resume else 0.0


def _effectiveness(store, cfg, device, progress, data_dir):
    for cname in cfg.effectiveness:
        c = load_collection(cname, data_dir, seed=cfg.seed)
        for p in cfg.plan.effectiveness_rankers:
            m = p.load(c, device, progress, own_checkpoint=False)
            log = getattr(m, "train_log", {}) or {}
            store.set_ranker(p.name, c.name, "test", {**evaluate(m, c, "test", empty=True),
                                                      "train_seconds": log.get("seconds"),
                                                      "best_epoch": log.get("best_epoch"), "device": device,
                                                      "units": m.analyzer})


def export(store: Store, out: Path) -> None:
    """results.csv (flat export) and summary.csv (means with 95% bootstrap CIs)."""
    from ..stats import summarize
    df = store.results()
    df.to_csv(out / "results.csv", index=False)
    summarize(df).to_csv(out / "summary.csv", index=False)
