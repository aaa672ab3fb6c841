"""Build, train (pairwise loss over BM25 candidates, early stopping on dev), save and load rankers.

Checkpoints live under `$REXBENCH_HOME` (default `~/.cache/rexbench`) as
`<collection>/<ranker>/seed<N>/{model.pt, config.json}`: a state_dict loaded with
`weights_only=True` plus a JSON config (constructor args, vocabulary, training log).
"""
from __future__ import annotations

import json
import os
import random
import time
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from .base import Ranker
from .bm25 import BM25
from .embeddings import ppmi_svd
from .errors import BadInput
from .evaluate import evaluate
from .registry import ranker_spec
from .text import Vocab


def rexbench_home() -> Path:
    return Path(os.environ.get("REXBENCH_HOME", Path.home() / ".cache" / "rexbench"))


def checkpoint_dir(collection_name: str, ranker: str, seed: int) -> Path:
    return rexbench_home() / collection_name.replace(":", "_").replace("/", "_") / ranker / f"seed{seed}"


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def build_ranker(name: str, collection, seed: int = 0, **config) -> Ranker:
    """A fresh (untrained) ranker for `collection`; neural ones start from PPMI-SVD embeddings."""
    spec = ranker_spec(name)
    if name == "bm25":
        return BM25.from_index(collection.index, **config)
    seed_everything(seed)
    if name == "random":
        return spec.cls(collection.vocab, seed=seed, **config)
    if spec.kind == "transformer":
        return spec.cls(init_seed=seed, **config)
    model = spec.cls(collection.vocab, **config)
    train_q = collection.split("train")
    emb = ppmi_svd(list(collection.doc_tokens.values()) + [collection.query_tokens[q] for q in train_q],
                   collection.vocab, dim=model.dim, seed=seed)
    with torch.no_grad():
        model.embedding.weight.copy_(torch.from_numpy(emb))
    return model


TRAIN_DEFAULTS = {"epochs": 12, "n_per_query": 40, "batch_size": 64, "lr": 1e-3, "emb_lr": 1e-4, "head_lr": 1e-3,
                  "patience": 3, "time_budget_s": 150.0}


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
    """(qid, positive docid, negative docid) over the train split's BM25 candidates."""
    out = []
    for q in collection.split("train"):
        cands = collection.candidates(q)
        rel = collection.qrels.get(q, {})
        pos = [d for d in rel if rel[d] > 0]
        neg = [d for d in cands if rel.get(d, 0) <= 0]
        if not pos or not neg:
            continue
        for _ in range(n_per_query):
            out.append((q, pos[rng.integers(len(pos))], neg[rng.integers(len(neg))]))
    rng.shuffle(out)
    return out


def train(model: Ranker, collection, seed: int = 0, progress: bool = True, **overrides) -> dict:
    """Pairwise hinge training with early stopping on dev nDCG@10; restores the best epoch.

    Hyper-parameters (defaults in TRAIN_DEFAULTS, per-ranker ones in the class's
    `train_defaults`, then `overrides`): epochs, n_per_query (triples per train
    query and epoch), batch_size, lr, emb_lr (embedding table) or head_lr
    (new output head), patience, time_budget_s. Returns a log dict: per-epoch
    loss and dev nDCG@10, best epoch, seconds, hyper-parameters.
    """
    hp = {**TRAIN_DEFAULTS, **getattr(model, "train_defaults", {}), **overrides}
    epochs, n_per_query, batch_size = int(hp["epochs"]), int(hp["n_per_query"]), int(hp["batch_size"])
    patience, time_budget_s = int(hp["patience"]), float(hp["time_budget_s"])
    seed_everything(seed)
    rng = np.random.default_rng(seed)
    opt = torch.optim.Adam(_param_groups(model, hp))
    docs, queries = collection.doc_tokens, collection.query_tokens
    log = {"epochs": [], "seed": seed, "hyperparameters": hp}
    best, best_state, bad, t0 = -1.0, None, 0, time.perf_counter()
    for ep in range(epochs):
        model.train()
        triples = _triples(collection, rng, n_per_query)
        total = 0.0
        bar = tqdm(range(0, len(triples), batch_size), desc=f"train {model.name} ep{ep + 1}", disable=not progress,
                   leave=False)
        for s in bar:
            chunk = triples[s: s + batch_size]
            q_tok = [queries[q] for q, _, _ in chunk]
            pos = [docs[p] for _, p, _ in chunk]
            neg = [docs[n] for _, _, n in chunk]
            sp = _score_pairs(model, q_tok, pos)
            sn = _score_pairs(model, q_tok, neg)
            loss = torch.relu(1.0 - sp + sn).mean()
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
        if bad >= patience or time.perf_counter() - t0 > time_budget_s:
            break
    if best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    log["seconds"] = time.perf_counter() - t0
    log["best_dev_ndcg@10"] = best
    return log


def _score_pairs(model: Ranker, q_tokens, d_tokens) -> torch.Tensor:
    """Scores of aligned (query_i, doc_i) pairs (each encoded by the ranker, so truncated by its rules),
    padded into one batch: [B]."""
    from .text import PAD_ID
    encs = [model.encode(q, [d]) for q, d in zip(q_tokens, d_tokens)]
    lq = max(e.q_ids.shape[1] for e in encs)
    ld = max(e.d_ids.shape[1] for e in encs)
    q_ids = torch.stack([torch.nn.functional.pad(e.q_ids[0], (0, lq - e.q_ids.shape[1]), value=PAD_ID) for e in encs])
    d_ids = torch.stack([torch.nn.functional.pad(e.d_ids[0], (0, ld - e.d_ids.shape[1]), value=PAD_ID) for e in encs])
    return model(q_ids, d_ids)


def save_ranker(model: Ranker, path: Path, collection_name: str, log: dict | None = None) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), path / "model.pt")
    cfg = {"ranker": model.name, "collection": collection_name, "config": model.config(),
           "vocab": model.vocab.itos, "train_log": log or {}}
    (path / "config.json").write_text(json.dumps(cfg))
    return path


def load_checkpoint(path: str | os.PathLike) -> Ranker:
    """Load a checkpoint directory (or its model.pt) written by `save_ranker`."""
    path = Path(path)
    if path.is_file():
        path = path.parent
    if not (path / "config.json").exists():
        raise BadInput(f"no rexbench checkpoint at {path} (expected config.json and model.pt)")
    cfg = json.loads((path / "config.json").read_text())
    spec = ranker_spec(cfg["ranker"])
    model = spec.cls(Vocab(cfg["vocab"]), **cfg["config"])
    state = torch.load(path / "model.pt", map_location="cpu", weights_only=True)
    model.load_state_dict(state)
    model.train_log = cfg.get("train_log", {})
    return model.eval()


def get_ranker(name: str, collection, seed: int = 0, checkpoint: str | None = None, train_if_missing: bool = True,
               device: str = "cpu", progress: bool = True) -> Ranker:
    """A ready ranker: from `checkpoint`, the cache, or trained now (and cached)."""
    spec = ranker_spec(name)
    if checkpoint:
        model = load_checkpoint(checkpoint)
    elif not spec.trainable:
        model = build_ranker(name, collection, seed)
    else:
        path = checkpoint_dir(collection.name, name, seed)
        if (path / "config.json").exists():
            model = load_checkpoint(path)
        elif not train_if_missing:
            raise BadInput(f"no trained {name} for {collection.name} seed {seed} at {path}; run `rexbench train`")
        else:
            model = build_ranker(name, collection, seed)
            log = train(model, collection, seed=seed, progress=progress)
            save_ranker(model, path, collection.name, log)
            model.train_log = log
    return model.to(device).eval()
