"""Content digests of what computes a ranker's scores, beyond its parameters: a callable's code and the
files of local model and checkpoint directories. A run's fingerprint carries them (`--resume` after an
edit is refused, naming what changed); a name or a path alone would let two versions share one run.

Digests are SHA-256 (first 16 hex digits) of file contents, memoised per process by (path, size, mtime).
"""
from __future__ import annotations

import functools
import hashlib
import importlib.util
import os
from pathlib import Path

_MEMO: dict[tuple, str] = {}


def file_digest(path: str | os.PathLike) -> str:
    """SHA-256 of a file's bytes (16 hex digits)."""
    p = Path(path)
    st = p.stat()
    key = (str(p.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _MEMO:
        h = hashlib.sha256()
        with open(p, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        _MEMO[key] = h.hexdigest()[:16]
    return _MEMO[key]


def weights_digest(model) -> str:
    """SHA-256 (16 hex digits) of a model's state: every tensor's name, dtype, shape and bytes, in name order. A
    model rexbench trained and cached is identified by its configuration and training recipe; this says whether
    the cached weights are still the ones a run started with (a cache entry retrained since, on other hardware or
    by other code, is another model)."""
    import torch
    h = hashlib.sha256()
    for name, t in sorted(model.state_dict().items()):
        t = t.detach().cpu().contiguous()
        h.update(f"{name}\0{t.dtype}\0{tuple(t.shape)}\0".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")  # 0-dim too
    return h.hexdigest()[:16]


def dir_digest(path: str | os.PathLike) -> str:
    """Digest of a directory's regular files (relative names and contents, hidden entries left out):
    weights, config and tokenizer files of a model or checkpoint directory."""
    root = Path(path)
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root)
        if any(part.startswith(".") for part in rel.parts) or not p.is_file():
            continue
        h.update(f"{rel.as_posix()}\0{file_digest(p)}\0".encode())
    return h.hexdigest()[:16]


def module_digest(spec: str, base_dir: str | None = None) -> str | None:
    """Digest of the source file of the module named by a callable's 'module:attr' (found without importing
    it; `base_dir` searched after sys.path like `suites` does), or None where there is no such file."""
    import sys
    mod = spec.split(":", 1)[0] if isinstance(spec, str) and spec.count(":") == 1 else ""
    if not mod:
        return None
    added = base_dir is not None and base_dir not in sys.path
    if added:
        sys.path.append(base_dir)
    try:
        found = importlib.util.find_spec(mod)
    except (ImportError, ValueError):
        found = None
    finally:
        if added and base_dir in sys.path:
            sys.path.remove(base_dir)
    origin = getattr(found, "origin", None)
    return file_digest(origin) if origin and Path(origin).is_file() else None


def source_digest(fn) -> str | None:
    """Digest of a Python callable's source (a function given through the API), None where it has none."""
    import inspect
    try:
        src = inspect.getsource(fn)
    except (OSError, TypeError):
        return None
    return hashlib.sha256(src.encode()).hexdigest()[:16]


def artifacts(params: dict, checkpoint: str | None = None, base_dir: str | None = None) -> dict:
    """What a suite ranker's scores are computed from besides its parameters: {"function": digest of the
    callable's module file, "model": digest of a local model directory, "checkpoint": digest of a checkpoint
    directory}; keys that do not apply are absent."""
    out = {}
    fn = params.get("function")
    if isinstance(fn, str):
        d = module_digest(fn, base_dir)
        if d:
            out["function"] = d
    model = params.get("model")
    if isinstance(model, str) and Path(model).is_dir():
        out["model"] = dir_digest(model)
    if checkpoint and Path(checkpoint).exists():
        p = Path(checkpoint)
        out["checkpoint"] = dir_digest(p if p.is_dir() else p.parent)
    return out


def code_text(source: str) -> str:
    """Python `source` parsed and written back without its docstrings and comments: what the code does."""
    import ast
    tree = ast.parse(source)
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if (isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and body
                and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant)
                and isinstance(body[0].value.value, str)):
            node.body = body[1:] or [ast.Pass()]
    return ast.unparse(tree)


@functools.lru_cache(maxsize=1)
def training_code() -> str:
    """SHA-256 (16 hex digits) of the code that makes a trained model: every module of the `rankers` package
    (models, their inputs and removal operators, `training`) as `code_text` gives it, so an edit of the text around
    the code keeps it and an edit of the code changes it. A cached model trained by other code is trained again
    (`training.stale_training`): its configuration and recipe alone would let a model trained under an older
    objective be reused silently. Computed once per process."""
    h = hashlib.sha256()
    for f in sorted(Path(__file__).resolve().parent.glob("*.py")):
        h.update(f.name.encode() + b"\0" + code_text(f.read_text(encoding="utf-8")).encode() + b"\0")
    return h.hexdigest()[:16]
