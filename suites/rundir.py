"""A run directory's guards: checked before anything is written, one writer at a time,
and a fingerprint so `--resume` never mixes two different runs.

- `check_out_dir`: the output path is a (creatable, writable) directory; an existing run
  there needs `--resume` or `--overwrite`.
- `RunLock`: an OS-level lock (`fcntl.flock`) on `DIR/.rexbench.lock`, released by the
  kernel when the process dies; a second writer gets a BadInput naming the holder.
- `fingerprint` / `first_difference`: the resolved suite configuration, collection
  digest and code/library versions stored with the run and compared on `--resume`.
"""
from __future__ import annotations

import datetime as dt
import fcntl
import json
import os
import socket
import sqlite3
from pathlib import Path

from rankers.errors import BadInput

DB = "results.sqlite"
LOCK = ".rexbench.lock"
#: files a run writes (removed by --overwrite; other files in the directory are left alone)
RUN_FILES = (DB, DB + "-wal", DB + "-shm", "results.csv", "summary.csv", "RESULTS.md")


def writable_ancestor(path: Path, what: str = "output path") -> None:
    """`path` is, or can be created as, a writable directory: its nearest existing ancestor is a
    writable directory (nothing is created here)."""
    p = Path(path)
    while not p.exists() and p != p.parent:
        p = p.parent
    if not p.is_dir():
        raise BadInput(f"{what}: {p} is a file, not a directory")
    if not os.access(p, os.W_OK | os.X_OK):
        raise BadInput(f"{what}: {p} is not writable")


def stored_meta(out: Path) -> dict | None:
    """The meta table of an existing run in `out`, or None when there is none; a file that is
    not a rexbench results database is a BadInput (never overwritten implicitly)."""
    db = out / DB
    if not db.exists():
        return None
    try:
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
        try:
            rows = con.execute("SELECT key, value FROM meta").fetchall()
        finally:
            con.close()
        return {k: json.loads(v) for k, v in rows}
    except (sqlite3.Error, ValueError) as e:
        raise BadInput(f"{db} is not a readable rexbench results database ({type(e).__name__}: {e}); "
                       "move it away or pass --overwrite") from None


def check_out_dir(out: Path, resume: bool, overwrite: bool) -> dict | None:
    """Validate the output directory (nothing is written); returns the stored run's meta."""
    if resume and overwrite:
        raise BadInput("--resume and --overwrite exclude each other")
    if out.exists() and not out.is_dir():
        raise BadInput(f"output path {out} is a file, not a directory")
    writable_ancestor(out, f"output path {out}")
    meta = None if overwrite else stored_meta(out)
    if meta is not None and not resume:
        suite = meta.get("suite", {}).get("name", "?")
        raise BadInput(f"{out} already holds a run of suite {suite!r}; pass --resume to continue it or "
                       "--overwrite to replace it")
    return meta


class RunLock:
    """Exclusive, non-blocking lock on `DIR/.rexbench.lock` for the life of the run."""

    def __init__(self, out: Path):
        self.path = out / LOCK
        self.fd: int | None = None

    def __enter__(self) -> "RunLock":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = os.pread(fd, 4096, 0).decode(errors="replace").strip() or "another process"
            os.close(fd)
            raise BadInput(f"{self.path.parent} is in use by another rexbench run ({holder}); one writer per run "
                           "directory") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                                  "since": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")}).encode(), 0)
        self.fd = fd
        return self

    def __exit__(self, *exc) -> None:
        if self.fd is not None:
            os.ftruncate(self.fd, 0)
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = None


def clear_run(out: Path) -> None:
    """Remove the files of a previous run (under the lock, after validation)."""
    for name in RUN_FILES:
        (out / name).unlink(missing_ok=True)
    figs = out / "figures"
    if figs.is_dir():
        for f in figs.glob("*.png"):
            f.unlink()


def _flat(d, prefix=""):
    if isinstance(d, dict):
        for k in d:
            yield from _flat(d[k], f"{prefix}.{k}" if prefix else str(k))
    else:
        yield prefix, d


def first_difference(stored: dict, now: dict) -> str | None:
    """The first dotted key whose value differs between two fingerprints, with both values."""
    a, b = dict(_flat(stored)), dict(_flat(now))
    for k in list(b) + [k for k in a if k not in b]:
        if a.get(k, "<absent>") != b.get(k, "<absent>"):
            return f"{k} (stored {a.get(k, '<absent>')!r}, now {b.get(k, '<absent>')!r})"
    return None


def fingerprint(resolved: dict, collection: dict, versions: dict) -> dict:
    """What a run is: its resolved configuration, collection identity and versions (JSON-normalised)."""
    return json.loads(json.dumps({"config": resolved, "collection": collection, "versions": versions}))
