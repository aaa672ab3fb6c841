"""Build, train (pairwise loss over BM25 candidates, early stopping on dev), save and load rankers.

Checkpoints live under `$REXBENCH_HOME` (default `~/.cache/rexbench`) as
`<collection>/<ranker>/seed<N>[-<config hash>]/{model.pt, config.json}`: a state_dict loaded
with `weights_only=True` plus a JSON config carrying the checkpoint's identity (ranker type,
collection, vocabulary hash, rexbench version), its constructor args, vocabulary and training
log. Loading checks the identity against what was asked for; a mismatch or a damaged file is
a BadInput (exit 2), never a silent substitution.

Training stops by epochs and dev patience only, so one seed gives one model on any machine;
a wall-clock cap (`time_budget_s`) is opt-in and recorded in the training log.
"""
from __future__ import annotations

import hashlib
import json
import os
import random
import sys
import time
from importlib import metadata
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from .base import Ranker
from .counterfactual import REMOVAL_EMPTY_MARGIN, removal_loss, removal_masks
from .errors import BadInput
from .evaluate import evaluate
from .identity import training_code
from .params import check_params
from .registry import ranker_spec
from .text import Vocab
from .train_state import clear_epoch_state, load_epoch_state, save_epoch_state


def rexbench_home() -> Path:
    return Path(os.environ.get("REXBENCH_HOME", Path.home() / ".cache" / "rexbench"))


def rexbench_version() -> str:
    try:
        return metadata.version("rexbench")
    except metadata.PackageNotFoundError:
        return "unknown"


def config_digest(config: dict) -> str:
    return hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()[:10]


def checkpoint_dir(collection_name: str, ranker: str, seed: int, config: dict | None = None) -> Path:
    """Cache directory of a trained ranker; non-default constructor `config` gets its own."""
    leaf = f"seed{seed}" + (f"-{config_digest(config)}" if config else "")
    return rexbench_home() / collection_name.replace(":", "_").replace("/", "_") / ranker / leaf


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def build_ranker(name: str, collection, seed: int = 0, **config) -> Ranker:
    """A fresh (untrained) ranker of registered type `name` for `collection` (`Ranker.from_collection`)."""
    spec = ranker_spec(name)
    config = check_params(f"ranker {name}", spec.cls.params, config)
    seed_everything(seed)
    return spec.cls.from_collection(collection, seed, **config)


TRAIN_DEFAULTS = {"epochs": 12, "n_per_query": 40, "batch_size": 64, "lr": 1e-3, "emb_lr": 1e-4, "head_lr": 1e-3,
                  "patience": 3, "time_budget_s": None, "empty_margin": None, "pseudo_queries": 0,
                  "removal_anchor": 0.0, "head_init": None}


#: options added after checkpoints were first cached, at the value that means "off": a checkpoint trained
#: before an option existed was trained with it off
_ADDED_OFF = {"pseudo_queries": 0, "removal_anchor": 0.0, "head_init": None}

#: training options that act only with removal training (`removal_training` > 0): without it they are inert and
#: left out of what identifies a trained model (a run's fingerprint, the stale-recipe check)
REMOVAL_ONLY = ("removal_anchor",)


def effective_training(hp: dict, removal_training: float) -> dict:
    """The hyper-parameters that act on a model trained with `removal_training` (`REMOVAL_ONLY` dropped without
    it): what a run's fingerprint records and what the stale-recipe check compares."""
    return {k: v for k, v in hp.items() if removal_training or k not in REMOVAL_ONLY}


def training_hyperparameters(cls: type) -> dict:
    """What `train` uses for ranker class `cls` without overrides: TRAIN_DEFAULTS, then its `train_defaults`.
    Part of a cached checkpoint's identity (`get_ranker`) and of a run's fingerprint."""
    return json.loads(json.dumps({**TRAIN_DEFAULTS, **getattr(cls, "train_defaults", {})}))


def stale_training(model: Ranker, cls: type) -> str | None:
    """The first difference between the hyper-parameters `model` was trained with and `cls`'s current ones, or
    that its training code (`identity.training_code`, recorded in its log) is not today's; None when they agree
    or no hyper-parameters are recorded (a checkpoint saved without a training log is used as given)."""
    log = getattr(model, "train_log", None) or {}
    was = log.get("hyperparameters")
    if was is None:
        return None
    share = float(getattr(model, "removal_training", 0.0) or 0.0)
    now = effective_training(training_hyperparameters(cls), share)
    if log.get("code") != training_code():
        return f"other training code ({log.get('code') or 'not recorded'}; now {training_code()})"
    was = effective_training({**_ADDED_OFF, **was}, share)
    diff = [k for k in sorted(set(was) | set(now)) if was.get(k) != now.get(k)]
    return f"other hyper-parameters ({diff[0]} = {was.get(diff[0])!r}, now {now.get(diff[0])!r})" if diff else None


def _param_groups(model: Ranker, hp: dict) -> list[dict]:
    """Embedding table at emb_lr; a transformer's encoder at lr and its new head at head_lr; else lr."""
    if getattr(model, "embedding", None) is not None:
        emb = model.embedding.weight
        return [{"params": [p for p in model.parameters() if p is not emb], "lr": hp["lr"]},
                {"params": [emb], "lr": hp["emb_lr"]}]
    if getattr(model, "encoder_model", None) is not None:
        enc = {id(p) for p in model.encoder_model.parameters()}
        return [{"params": list(model.encoder_model.parameters()), "lr": hp["lr"]},
                {"params": [p for p in model.parameters() if id(p) not in enc], "lr": hp["head_lr"]}]
    return [{"params": list(model.parameters()), "lr": hp["lr"]}]


def _triples(collection, rng: np.random.Generator, n_per_query: int):
    """(qid, positive docid, negative docid) over the train split's BM25 candidates; positives are the judged-
    relevant documents the collection holds (TREC DL judges passages outside its shipped pool, which are not
    documents of the collection)."""
    out = []
    for q in collection.split("train"):
        cands = collection.bm25_candidates(q)
        rel = collection.qrels.get(q, {})
        pos = [d for d in rel if rel[d] > 0 and d in collection.docs]
        neg = [d for d in cands if rel.get(d, 0) <= 0]
        if not pos or not neg:
            continue
        for _ in range(n_per_query):
            out.append((q, pos[rng.integers(len(pos))], neg[rng.integers(len(neg))]))
    rng.shuffle(out)
    return out


def _lead_and_rest(text: str) -> tuple[str, str] | None:
    """A document's first sentence (up to its first " . ") and the rest; None without one."""
    cut = text.find(" . ")
    return None if cut < 0 else (text[:cut], text[cut + 3:])


class PseudoQueries:
    """Pseudo-queries from the collection's own documents (inverse-cloze style, no judgments used): a
    document's first sentence (Cranfield: its title) is the query, the rest of that document the positive,
    and the rest of a document BM25 ranks 5..50 for the pseudo-query the negative (the first sentence is cut
    from every document, so its presence cannot give the answer away). Only documents whose first sentence
    has 3..32 units and whose rest has at least 10 qualify. Units are the ranker's (`analyzer`)."""

    def __init__(self, collection, analyzer: str):
        from .text import analyze
        self.collection = collection
        self.items: dict[str, tuple[list[str], list[str]]] = {}
        self._leads: dict[str, str] = {}  # the first sentence's text: the BM25 query for negatives
        for d, text in collection.docs.items():
            split = _lead_and_rest(text)
            if split is None:
                continue
            lead, rest = (analyze(analyzer, t) for t in split)
            if 3 <= len(lead) <= 32 and len(rest) >= 10:
                self.items[d], self._leads[d] = (lead, rest), split[0]
        self._order = sorted(self.items, key=int) if all(d.isdigit() for d in self.items) else sorted(self.items)
        self._negatives: dict[str, list[str]] = {}

    def negatives(self, d: str) -> list[str]:
        if d not in self._negatives:
            from .text import tokenize
            hits = [x for x, _ in self.collection.index.retrieve(tokenize(self._leads[d]), 50)][5:]
            self._negatives[d] = [x for x in hits if x != d and x in self.items]
        return self._negatives[d]

    def triples(self, rng: np.random.Generator, n: int) -> list[tuple[list[str], list[str], list[str]]]:
        """`n` (query units, positive units, negative units), sampled without replacement."""
        docs = self._order
        out = []
        for i in rng.permutation(len(docs))[:n]:
            d = docs[int(i)]
            neg = self.negatives(d)
            if neg:
                out.append((self.items[d][0], self.items[d][1], self.items[neg[rng.integers(len(neg))]][1]))
        return out


def train(model: Ranker, collection, seed: int = 0, progress: bool = True, state_dir: Path | None = None,
          **overrides) -> dict:
    """Pairwise hinge training with early stopping on dev nDCG@10; restores the best epoch.

    Hyper-parameters (defaults in TRAIN_DEFAULTS, per-ranker ones in the class's
    `train_defaults`, then `overrides`): epochs, n_per_query (triples per train
    query and epoch), batch_size, lr, emb_lr (embedding table) or head_lr
    (new output head), patience, time_budget_s (None: no wall-clock stop; set it only
    knowingly, the model then depends on machine speed), empty_margin (None, or the
    margin by which every negative must outscore its own empty version: the empty
    document as a further negative), pseudo_queries (per epoch, further triples from the documents
    themselves: `PseudoQueries`). A ranker with `removal_training` > 0 (a constructor parameter: part of the
    cached model's identity, with the operator) also sees that share of each batch's pairs again with a
    uniform-random share u of each document's words removed by its own operator (one u per pair, the positive and
    the negative losing the same share of their words), under the same hinge loss, and
    with the full positive kept above its empty version by `empty_margin` (else REMOVAL_EMPTY_MARGIN)
    (counterfactual training, Hase et al. 2021; Madsen et al. 2024). With `removal_anchor` m > 0, for the pairs
    that lost at most half their words, the partly removed positive is also kept above the full negative by m and
    the full positive above the partly removed negative (`counterfactual.removal_loss`): what a random removal
    leaves must still read as the document it was, not as a removal (the standing the removal diagnostic measures;
    without it a model may rank pairs that both lost words correctly and still learn that any removal means
    irrelevant, as the pad-operator cross-encoder did on TREC DL and Cranfield). With `state_dir`, the state after
    each finished epoch is kept there and a killed training continues from its last finished epoch to the same
    model (`train_state`).
    Returns a log dict: per-epoch loss and dev nDCG@10, best epoch, seconds, hyper-parameters.
    """
    hp = {**training_hyperparameters(type(model)), **overrides}
    epochs, n_per_query, batch_size = int(hp["epochs"]), int(hp["n_per_query"]), int(hp["batch_size"])
    patience, time_budget_s = int(hp["patience"]), hp["time_budget_s"]
    seed_everything(seed)
    if hp["head_init"] is not None:  # the scoring head drawn again from U(-a, a), bias 0, seeded (KNRM)
        model.init_head(float(hp["head_init"]))
    rng = np.random.default_rng(seed)
    opt = torch.optim.Adam(_param_groups(model, hp))
    queries, docs = collection.units(model.analyzer)
    pseudo = PseudoQueries(collection, model.analyzer) if int(hp["pseudo_queries"]) > 0 else None
    share = float(getattr(model, "removal_training", 0.0) or 0.0)
    margin = float(hp["empty_margin"]) if hp["empty_margin"] is not None else REMOVAL_EMPTY_MARGIN
    log = {"epochs": [], "seed": seed, "hyperparameters": hp, "code": training_code()}
    if share > 0:
        log["removal_training"] = {"share": share, "operator": getattr(model, "removal", "the ranker's own")}
    best, best_state, bad, t0, first = -1.0, None, 0, time.perf_counter(), 0
    resumed = load_epoch_state(state_dir, seed, hp, model, opt, rng)
    if resumed is not None:
        first, best, best_state, bad, log = (resumed[k] for k in ("epoch", "best", "best_state", "bad", "log"))
        log["resumed_after_epoch"] = first
        t0 -= resumed["seconds"]  # the log's seconds and the time budget count the epochs before the kill too
    for ep in range(first, epochs):
        model.train()
        triples = [(queries[q], docs[p], docs[n]) for q, p, n in _triples(collection, rng, n_per_query)]
        if pseudo is not None:
            triples += pseudo.triples(rng, int(hp["pseudo_queries"]))
            order = rng.permutation(len(triples))
            triples = [triples[int(i)] for i in order]
        total = 0.0
        bar = tqdm(range(0, len(triples), batch_size), desc=f"train {model.name} ep{ep + 1}", disable=not progress,
                   leave=False)
        for s in bar:
            chunk = triples[s: s + batch_size]
            q_tok = [q for q, _, _ in chunk]
            pos = [p for _, p, _ in chunk]
            neg = [n for _, _, n in chunk]
            sp = _score_pairs(model, q_tok, pos)
            sn = _score_pairs(model, q_tok, neg)
            loss = torch.relu(1.0 - sp + sn).mean()
            if share > 0:  # counterfactual training: the pair again with words removed at random (issue 32)
                k = max(1, int(round(share * len(chunk))))
                pick = rng.choice(len(chunk), size=k, replace=False)
                sub = [q_tok[i] for i in pick]
                shares: list[float] = []
                sp_r = _score_pairs(model, sub, [pos[i] for i in pick], removed=rng, shares=shares)
                sn_r = _score_pairs(model, sub, [neg[i] for i in pick], removed=rng, given=shares)  # the same u
                se_r = _score_pairs(model, sub, [pos[i] for i in pick], empty=True)
                loss = loss + removal_loss(sp[pick], sn[pick], sp_r, sn_r, se_r, shares, margin,
                                           float(hp["removal_anchor"] or 0.0))
            if hp["empty_margin"] is not None:
                se = _score_pairs(model, q_tok, neg, empty=True)
                loss = loss + torch.relu(float(hp["empty_margin"]) - sn + se).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(chunk)
        model.eval()
        dev = evaluate(model, collection, "dev")["ndcg@10"]
        log["epochs"].append({"epoch": ep + 1, "loss": total / max(len(triples), 1), "dev_ndcg@10": dev})
        if dev > best:
            best, bad = dev, 0
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            log["best_epoch"] = ep + 1
        else:
            bad += 1
        if bad >= patience:
            break
        if time_budget_s is not None and time.perf_counter() - t0 > float(time_budget_s):
            log["stopped_by_time_budget"] = True
            break
        if state_dir is not None:
            save_epoch_state(state_dir, seed, hp, ep + 1, model, opt, rng, best, best_state, bad, log,
                             time.perf_counter() - t0)
    if best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    log["seconds"] = time.perf_counter() - t0
    log["best_dev_ndcg@10"] = best
    return log


def _score_pairs(model: Ranker, q_tokens, d_tokens, empty: bool = False,
                 removed: np.random.Generator | None = None, shares: list | None = None,
                 given: list | None = None) -> torch.Tensor:
    """Scores of aligned (query_i, doc_i) pairs (each encoded by the ranker, so truncated by its rules),
    padded into one batch: [B]. `empty`: every document token removed (mask 0); `removed`: a share of each
    document's words removed at random (`removal_masks`, drawn from this generator; the shares go to `shares`, or
    are the `given` ones), by the ranker's operator."""
    from .text import PAD_ID
    encs = [model.encode(q, [d]) for q, d in zip(q_tokens, d_tokens)]
    lq = max(e.q_ids.shape[1] for e in encs)
    ld = max(e.d_ids.shape[1] for e in encs)
    q_ids = torch.stack([torch.nn.functional.pad(e.q_ids[0], (0, lq - e.q_ids.shape[1]), value=PAD_ID) for e in encs])
    d_ids = torch.stack([torch.nn.functional.pad(e.d_ids[0], (0, ld - e.d_ids.shape[1]), value=PAD_ID) for e in encs])
    if removed is not None:
        return model(q_ids, d_ids, removal_masks(d_ids, removed, shares, given))
    return model(q_ids, d_ids, torch.zeros(d_ids.shape, device=d_ids.device) if empty else None)


def identity(model: Ranker, collection_name: str) -> dict:
    """What a checkpoint is: ranker type, collection, vocabulary hash, rexbench version."""
    return {"ranker": model.name, "collection": collection_name, "vocab_sha": model.vocab.digest(),
            "rexbench": rexbench_version()}


def save_ranker(model: Ranker, path: Path, collection_name: str, log: dict | None = None) -> Path:
    """Write `model.pt` and `config.json` (identity, constructor config, vocabulary, training log)."""
    try:
        path.mkdir(parents=True, exist_ok=True)
        tmp = path / "model.pt.tmp"
        torch.save(model.state_dict(), tmp)
        cfg = {**identity(model, collection_name), "config": model.config(), "vocab": model.vocab.itos,
               "train_log": log or {}}
        (path / "config.json.tmp").write_text(json.dumps(cfg))
        os.replace(tmp, path / "model.pt")
        os.replace(path / "config.json.tmp", path / "config.json")
    except OSError as e:
        raise BadInput(f"cannot write checkpoint to {path}: {e.strerror or e}") from None
    return path


class OlderCheckpoint(BadInput):
    """An intact checkpoint whose parameter names are not the current model definition's (written before a change
    of parametrisation): a cache entry of it is retrained, a checkpoint the user names is refused."""


def load_checkpoint(path: str | os.PathLike, expect: dict | None = None) -> Ranker:
    """Load a checkpoint directory (or its model.pt) written by `save_ranker`.

    `expect`: identity keys the checkpoint must match (e.g. {"ranker": "knrm",
    "collection": "cranfield", "vocab_sha": ...}); a mismatch or a damaged file is a BadInput.
    """
    path = Path(path)
    if path.is_file():
        path = path.parent
    if not (path / "config.json").is_file() or not (path / "model.pt").is_file():
        raise BadInput(f"no rexbench checkpoint at {path} (expected config.json and model.pt)")
    try:
        cfg = json.loads((path / "config.json").read_text())
        if not isinstance(cfg, dict) or not {"ranker", "config", "vocab"} <= set(cfg):
            raise ValueError("missing keys")
    except (ValueError, UnicodeDecodeError, OSError) as e:
        raise BadInput(f"checkpoint {path}: config.json is damaged ({type(e).__name__})") from None
    if "vocab_sha" not in cfg:
        raise BadInput(f"checkpoint {path} has no identity (written by an older rexbench); retrain it with "
                       "`rexbench train` or delete the directory")
    for k, want in (expect or {}).items():
        if cfg.get(k) != want:
            raise BadInput(f"checkpoint {path} is for {k} {cfg.get(k)!r}, not {want!r}")
    spec = ranker_spec(cfg["ranker"])
    vocab = Vocab(cfg["vocab"])
    if vocab.digest() != cfg["vocab_sha"]:
        raise BadInput(f"checkpoint {path}: vocabulary does not match its recorded hash (edited file?)")
    try:
        model = spec.cls(vocab, **cfg["config"])
        state = torch.load(path / "model.pt", map_location="cpu", weights_only=True)
        names = set(model.state_dict())
        if isinstance(state, dict) and set(state) != names:  # intact, but written for another model definition
            diff = sorted(set(state) ^ names)
            raise OlderCheckpoint(f"checkpoint {path}: model.pt holds the weights of another model definition "
                                  f"({len(diff)} parameter names differ, first {diff[0]!r})")
        model.load_state_dict(state)
    except BadInput:
        raise
    except Exception as e:  # truncated/edited pickles, wrong shapes
        raise BadInput(f"checkpoint {path}: model.pt cannot be loaded ({type(e).__name__}: "
                       f"{str(e).splitlines()[0][:160] if str(e) else ''})") from None
    model.train_log = cfg.get("train_log", {})
    return model.eval()


def identity_config(spec, config: dict, runtime: dict) -> dict:
    """The constructor config that keys a cached model: runtime parameters left out, except the removal operator
    of a model trained with removal (`removal_training`), which is part of what it learnt."""
    if config.get("removal_training") and "removal" in spec.cls.runtime_params:
        return {**config, "trained_removal": runtime.get("removal", spec.cls.params["removal"].default)}
    return config


def cached_checkpoint(name: str, collection, seed: int = 0, config: dict | None = None) -> Path:
    """Where `get_ranker` caches (and looks for) the trained ranker `name` with constructor `config`."""
    spec = ranker_spec(name)
    config = check_params(f"ranker {name}", spec.cls.params, config or {})
    runtime = {k: config.pop(k) for k in spec.cls.runtime_params if k in config}
    return checkpoint_dir(collection.name, name, seed, identity_config(spec, config, runtime))


def get_ranker(name: str, collection, seed: int = 0, checkpoint: str | None = None, train_if_missing: bool = True,
               device: str = "cpu", progress: bool = True, config: dict | None = None) -> Ranker:
    """A ready ranker: from `checkpoint`, the cache, or trained now (and cached).

    `config`: constructor parameters (the class's declared `params`). A checkpoint must be
    of ranker `name`, for `collection` and its vocabulary (transformers: any vocabulary).
    `train_if_missing=False` (a suite's `train = false`) never trains: a ranker with pretrained
    weights (HF models) is used as given, after `check_usable_untrained` (a cross-encoder
    needs a trained classification head); others need a checkpoint or a cached model.
    """
    spec = ranker_spec(name)
    config = check_params(f"ranker {name}", spec.cls.params, config or {})
    runtime = {k: config.pop(k) for k in spec.cls.runtime_params if k in config}  # no effect on the weights
    expect = {"ranker": name, "collection": collection.name}
    if spec.cls.analyzer == "index":  # word-level rankers have no collection vocabulary
        expect["vocab_sha"] = collection.vocab.digest()
    if checkpoint:
        model = load_checkpoint(checkpoint, expect)
        for k, v in config.items():
            if model.config().get(k) != v:
                raise BadInput(f"checkpoint {checkpoint} has {k}={model.config().get(k)!r}, not {v!r}")
    elif not spec.trainable or (spec.cls.pretrained and not train_if_missing):
        model = build_ranker(name, collection, seed, **config)
        if spec.trainable:
            model.check_usable_untrained()
    else:
        path = checkpoint_dir(collection.name, name, seed, identity_config(spec, config, runtime))
        model, unloadable = None, None
        if (path / "config.json").exists():
            try:
                model = load_checkpoint(path, expect)
            except OlderCheckpoint as e:  # a cache entry of an older model definition (damaged files still stop)
                unloadable = str(e)
        stale = stale_training(model, spec.cls) if model is not None else unloadable
        if unloadable and not train_if_missing:
            raise BadInput(f"{unloadable}; run `rexbench train` to retrain it")
        if stale and not train_if_missing:
            raise BadInput(f"the cached {name} at {path} was trained with {stale}; run `rexbench train` to retrain it")
        if stale:  # a cache entry of an older recipe or model: retrained (and replaced), said on stderr
            why = (f"the cached checkpoint cannot be loaded ({unloadable})" if unloadable  # it names the path
                   else f"the cached checkpoint at {path} was trained with {stale}")
            print(f"retraining {name} (seed {seed}): {why}", file=sys.stderr)
            model = None
        if model is None and not train_if_missing:
            raise BadInput(f"no trained {name} for {collection.name} seed {seed} at {path}; run `rexbench train`")
        if model is None:
            model = build_ranker(name, collection, seed, **config)
            if config.get("removal_training"):  # trained under the operator it will be evaluated with
                for k, v in runtime.items():
                    setattr(model, k, v)
            partial = path.with_name(path.name + ".partial")  # a killed training continues from its last epoch
            log = train(model, collection, seed=seed, progress=progress, state_dir=partial)
            save_ranker(model, path, collection.name, log)
            clear_epoch_state(partial)
            model.train_log = log
            model.trained_now = True  # this call paid `log["seconds"]` (a cached model's log is history)
    for k, v in runtime.items():
        setattr(model, k, v)
    return model.to(device).eval()
