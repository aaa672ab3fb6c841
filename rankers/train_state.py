"""Training that survives a killed process: after each finished epoch, `train` writes everything the next epoch
depends on (the model's and optimiser's state, the numpy generator that draws the triples and removals, the global
Python, numpy and torch random states, the best epoch so far and the patience count, the log) to one file, and a
later call with the same directory, seed and hyper-parameters continues from there. A resumed training gives the
model an uninterrupted one gives, to the last digit; a state of other settings is ignored and replaced."""
from __future__ import annotations

import os
import random
from pathlib import Path

import numpy as np
import torch

from .identity import training_code

STATE_FILE = "epoch_state.pt"


def _key(seed: int, hp: dict) -> str:
    return repr((seed, training_code(), sorted((k, repr(v)) for k, v in hp.items())))


def save_epoch_state(state_dir: Path, seed: int, hp: dict, epoch: int, model: torch.nn.Module,
                     opt: torch.optim.Optimizer, rng: np.random.Generator, best: float, best_state: dict | None,
                     bad: int, log: dict, seconds: float) -> None:
    """Write the state after `epoch` (1-based) epochs and `seconds` of training so far, atomically (a kill while
    writing leaves the previous one)."""
    state_dir.mkdir(parents=True, exist_ok=True)
    state = {"key": _key(seed, hp), "epoch": epoch, "model": model.state_dict(), "opt": opt.state_dict(),
             "rng": rng.bit_generator.state, "python": random.getstate(), "numpy": np.random.get_state(),
             "torch": torch.get_rng_state(),
             "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
             "best": best, "best_state": best_state, "bad": bad, "log": log, "seconds": seconds}
    tmp = state_dir / (STATE_FILE + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, state_dir / STATE_FILE)


def load_epoch_state(state_dir: Path | None, seed: int, hp: dict, model: torch.nn.Module,
                     opt: torch.optim.Optimizer, rng: np.random.Generator) -> dict | None:
    """Restore a saved state of the same seed and hyper-parameters into `model`, `opt`, `rng` and the global random
    states; returns it (epoch, best, best_state, bad, log, seconds), or None when there is none to continue."""
    path = state_dir / STATE_FILE if state_dir is not None else None
    if path is None or not path.exists():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except Exception:  # noqa: BLE001 -- a damaged state is not resumed: training starts over and replaces it
        return None
    if state.get("key") != _key(seed, hp):
        return None
    model.load_state_dict(state["model"])
    opt.load_state_dict(state["opt"])
    rng.bit_generator.state = state["rng"]
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if state["cuda"] is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    return state


def clear_epoch_state(state_dir: Path | None) -> None:
    """Remove the state once the trained model is saved."""
    if state_dir is not None:
        (state_dir / STATE_FILE).unlink(missing_ok=True)
        if state_dir.is_dir() and not any(state_dir.iterdir()):
            state_dir.rmdir()
