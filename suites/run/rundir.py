"""A run directory's guards: checked before anything is written, one writer at a time,
and a fingerprint so `--resume` never mixes two different runs.

- `check_out_dir`: the output path is a (creatable, writable) directory; an existing run
  there needs `--resume` or `--overwrite`.
- `RunLock`: an OS-level lock (`fcntl.flock`) on `DIR/.rexbench.lock`, released by the
  kernel when the process dies; a second writer gets a BadInput naming the holder.
- `fingerprint` / `first_difference`: the resolved suite configuration, collection
  digest and code/library versions stored with the run and compared on `--resume`.
- `stored_meta`: an existing database is checked (SQLite header, `PRAGMA quick_check`, the
  expected tables) on a private copy, so neither it nor its WAL is touched by the check.
- `Staging`: `--overwrite` writes the new run beside the old one and swaps it in only once
  the new run has recorded its first shard; a failure before that leaves the old run whole.
"""
from __future__ import annotations

import copy
import datetime as dt
import fcntl
import hashlib
import json
import os
import shutil
import socket
import sqlite3
import tempfile
from contextlib import contextmanager
from pathlib import Path

from rankers.errors import BadInput

DB = "results.sqlite"
LOCK = ".rexbench.lock"
#: files a run writes (removed by --overwrite; other files in the directory are left alone)
RUN_FILES = (DB, DB + "-wal", DB + "-shm", "results.csv", "summary.csv", "RESULTS.md")
#: where `--overwrite` writes the new run until it replaces the old one (`Staging`)
STAGING = ".rexbench-overwrite"
#: the tables of a rexbench results database (suites.run.store.SCHEMA)
TABLES = {"results", "cells", "explanations", "rankers", "meta", "shards"}
_SQLITE_HEADER = b"SQLite format 3\x00"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def private_tmp(kind: str) -> tempfile.TemporaryDirectory:
    """A temporary directory `rexbench-<kind>-<pid>-*` (removed on exit). Directories of this form left by a
    process that no longer exists (killed with -9: no cleanup ran) are removed first."""
    import re
    root = Path(tempfile.gettempdir())
    for d in root.glob("rexbench-*-*-*"):
        m = re.fullmatch(r"rexbench-[a-z]+-(\d+)-.*", d.name)
        if m and d.is_dir() and not _alive(int(m.group(1))):
            shutil.rmtree(d, ignore_errors=True)
    return tempfile.TemporaryDirectory(prefix=f"rexbench-{kind}-{os.getpid()}-")


def clear_leftovers(out: Path) -> None:
    """What a killed run left in `out` (its lock held now): the staging directory of an `--overwrite` killed
    before its swap (the old run beside it is whole)."""
    shutil.rmtree(out / STAGING, ignore_errors=True)


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


#: the meta table of the packed database last read, keyed by its path and its bytes' SHA-256: one entry
_PACKED_META: dict[tuple, dict] = {}


def stored_meta(out: Path) -> dict | None:
    """The meta table of an existing run in `out` (its database, else its packed copy: a committed run on a clean
    clone), or None when there is none. The database is checked first (`check_database`); a damaged one is a
    BadInput and is never written to."""
    db = out / DB
    if db.exists():
        return check_database(db)
    if (out / PACKED).exists():
        key = (str((out / PACKED).resolve()), hashlib.sha256((out / PACKED).read_bytes()).hexdigest())
        if key not in _PACKED_META:  # a run checks its directory twice (before and under its lock): unpack once
            with private_tmp("unpack") as tmp:
                _PACKED_META.clear()
                _PACKED_META[key] = check_database(unpack_database(out / PACKED, Path(tmp)), shown=out / PACKED)
        return copy.deepcopy(_PACKED_META[key])
    return None


def unpack_to_resume(out: Path) -> bool:
    """Before a --resume: where `out` holds only the packed database (a committed run on a clean clone), unpack it
    into `out` so the run continues it (the packed file, now behind, is rewritten by `rexbench report --pack`).
    Returns whether it unpacked."""
    if (out / DB).exists() or not (out / PACKED).exists():
        return False
    unpack_database(out / PACKED, out)
    return True


def copy_database(db: Path, into: Path) -> Path:
    """Copy a database and its WAL (if any) into the directory `into`; returns the copy's path."""
    copy = into / db.name
    shutil.copyfile(db, copy)
    wal = db.with_name(db.name + "-wal")
    if wal.exists():
        shutil.copyfile(wal, copy.with_name(copy.name + "-wal"))
    return copy


def check_database(db: Path, shown: Path | None = None) -> dict:
    """Check a results database without touching it or its WAL: the SQLite header, then
    `PRAGMA quick_check` and the expected tables on a private copy of the file and its WAL (a
    read-only check that opened the original could still replay or remove the WAL). Returns
    its meta table; anything else is a BadInput naming the file (`shown`: the name to give, e.g. the packed
    file an unpacked copy came from)."""
    db = Path(db)

    def bad(why: str) -> BadInput:
        return BadInput(f"{shown or db} is not a usable rexbench results database ({why}; it was left as it is: move it "
                        "away, use another --out, or `rexbench run --overwrite` to replace it)")
    if not db.is_file():
        raise bad("not a file")
    try:
        with open(db, "rb") as fh:
            head = fh.read(len(_SQLITE_HEADER))
    except OSError as e:
        raise bad(f"cannot read: {e.strerror or e}") from None
    if head != _SQLITE_HEADER:
        raise bad("empty file" if not head else "no SQLite header")
    with tempfile.TemporaryDirectory(prefix="rexbench-check-") as tmp:
        try:
            copy = copy_database(db, Path(tmp))
        except OSError as e:
            raise bad(f"cannot read: {e.strerror or e}") from None
        try:
            con = sqlite3.connect(copy, timeout=30)
            try:
                check = con.execute("PRAGMA quick_check").fetchall()
                if check != [("ok",)]:
                    raise bad(f"integrity check failed: {check[0][0]}")
                tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
                if not TABLES <= tables:
                    raise bad(f"missing tables: {', '.join(sorted(TABLES - tables))}")
                rows = con.execute("SELECT key, value FROM meta").fetchall()
            finally:
                con.close()
            return {k: json.loads(v) for k, v in rows}
        except (sqlite3.Error, ValueError) as e:
            raise bad(f"{type(e).__name__}: {e}") from None


def check_out_dir(out: Path, resume: bool, overwrite: bool) -> dict | None:
    """Validate the output directory (nothing is written); returns the stored run's meta."""
    if resume and overwrite:
        raise BadInput("--resume and --overwrite exclude each other")
    if out.exists() and not out.is_dir():
        raise BadInput(f"output path {out} is a file, not a directory")
    writable_ancestor(out, f"output path {out}")
    for name in RUN_FILES[3:] + ("figures",):  # exports: files, and the figures directory
        p = out / name
        if not p.exists():
            continue
        why = (("a directory" if p.is_dir() else "a file") if p.is_dir() != (name == "figures")
               else None if os.access(p, os.W_OK) else "not writable")
        if why:
            raise BadInput(f"{p} is in the way of the run's exports ({why}); move it away first")
    if (out / DB).exists() and not os.access(out / DB, os.W_OK):
        raise BadInput(f"{out / DB} is not writable (read-only or immutable file)")
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
        self._made: list[Path] = []  # what taking the lock created (removed again if the run wrote nothing)

    def __enter__(self) -> "RunLock":
        missing = [p for p in [self.path.parent, *self.path.parent.parents] if not p.exists()]
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._made = [self.path] * (not self.path.exists()) + missing
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = os.pread(fd, 4096, 0).decode(errors="replace").strip() or "another process"
            os.close(fd)
            self._made = []
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
            if not (self.path.parent / DB).exists():  # nothing was written: leave the directory as it was
                for p in self._made:
                    try:
                        p.unlink() if p == self.path else p.rmdir()
                    except OSError:
                        break
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = None


def clear_run(out: Path) -> None:
    """Remove the files of a previous run (under the lock, after validation)."""
    for name in RUN_FILES:
        (out / name).unlink(missing_ok=True)
    _clear_exports(out)


def _clear_exports(out: Path) -> None:
    """Remove a previous run's exports (results.csv, summary.csv, RESULTS.md, figures), not its database."""
    for name in RUN_FILES[3:]:
        (out / name).unlink(missing_ok=True)
    figs = out / "figures"
    if figs.is_dir():
        for f in figs.glob("*.png"):
            f.unlink()


def fold_wal(db: Path) -> None:
    """Make a database about to be replaced one self-contained file: its WAL checkpointed into it and removed
    by SQLite, so that renaming another database over it can never pair the newcomer with the old WAL. The WAL
    of a database SQLite cannot open (damaged, and being replaced) is removed with it."""
    if db.exists():
        try:
            con = sqlite3.connect(db, timeout=30)
            try:
                con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
                con.execute("PRAGMA journal_mode=DELETE")  # the WAL is folded in and SQLite removes it
            finally:
                con.close()
        except sqlite3.Error:
            pass
    for suffix in ("-wal", "-shm"):
        Path(str(db) + suffix).unlink(missing_ok=True)


class Staging:
    """`--overwrite` without losing the old run: the new database is written in `DIR/.rexbench-overwrite/`
    and `swap(store)` renames it over the old one once the new run has recorded its first shard. The old
    database is first made one self-contained file (`fold_wal`), then the new one replaces it in one rename:
    at every instant one complete run is on disk (the old, then the new); the old run's exports go after.
    `discard()` (the run failed before its first shard) removes the staging directory only; one left by a
    killed run is removed by the next command that takes the directory's lock (`runner.run_suite`)."""

    def __init__(self, out: Path):
        self.out, self.dir = out, out / STAGING
        self.swapped = False

    def db_path(self) -> Path:
        shutil.rmtree(self.dir, ignore_errors=True)  # left by a run killed before its swap
        self.dir.mkdir(parents=True)
        return self.dir / DB

    def swap(self, store) -> None:
        if self.swapped:
            return
        store.move(self.out / DB, before=lambda: fold_wal(self.out / DB))
        (self.out / PACKED).unlink(missing_ok=True)  # the replaced run's packed copy
        _clear_exports(self.out)
        shutil.rmtree(self.dir, ignore_errors=True)
        self.swapped = True

    def discard(self) -> None:
        if not self.swapped:
            shutil.rmtree(self.dir, ignore_errors=True)


def _flat(d, prefix=""):
    if isinstance(d, dict):
        for k in d:
            yield from _flat(d[k], f"{prefix}.{k}" if prefix else str(k))
    else:
        yield prefix, d


def first_difference(stored: dict, now: dict) -> str | None:
    """The first dotted key whose value differs between two fingerprints, with both values."""
    ignore = {"config.suite.description"}  # older runs stored it; it changes nothing computed
    a, b = ({k: v for k, v in _flat(x) if k not in ignore} for x in (stored, now))
    for k in list(b) + [k for k in a if k not in b]:
        if a.get(k, "<absent>") != b.get(k, "<absent>"):
            return f"{k} (stored {a.get(k, '<absent>')!r}, now {b.get(k, '<absent>')!r})"
    return None


def fingerprint(resolved: dict, collection: dict, versions: dict) -> dict:
    """What a run is: its resolved configuration, collection identity and versions (JSON-normalised)."""
    return json.loads(json.dumps({"config": resolved, "collection": collection, "versions": versions}))


PACKED = "results.sqlite.gz"


def pack_database(run_dir: Path) -> Path:
    """Write `run_dir/results.sqlite.gz`: a consistent copy of the run's database (checkpointed, through
    SQLite's backup API, so a WAL is folded in), gzip-compressed with no timestamp, so the same results
    give the same bytes. Tracked in git beside the committed report (`rexbench report` reads it when the
    database itself is absent)."""
    db = run_dir / DB
    if not db.exists():
        raise BadInput(f"{run_dir} holds no {DB} to pack")
    out = run_dir / PACKED
    try:
        return _pack(db, out)
    except OSError as e:
        raise BadInput(f"cannot write {out} ({e.strerror or e})") from None


def _pack(db: Path, out: Path) -> Path:
    import gzip
    with private_tmp("pack") as tmp:
        copy = Path(tmp) / "results.sqlite"
        src, dst = sqlite3.connect(f"file:{db}?mode=ro", uri=True), sqlite3.connect(copy)
        try:
            src.backup(dst)
            dst.execute("PRAGMA journal_mode=DELETE")
            dst.execute("VACUUM")
        finally:
            src.close()
            dst.close()
        part = out.with_name(out.name + ".part")
        with open(copy, "rb") as f, open(part, "wb") as raw:
            with gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=9) as z:
                shutil.copyfileobj(f, z, 1 << 20)
        part.replace(out)
    return out


#: the most bytes a packed database may decompress to (a gzip bomb is refused once it passes this)
MAX_UNPACKED = 8 << 30


def unpack_database(packed: Path, into: Path, limit: int | None = None) -> Path:
    """Decompress a packed database into the directory `into`; returns the database's path. Anything but a
    gzip of an SQLite file (a directory, a truncated or garbage file, one that decompresses past `limit`
    bytes: its header is checked first, then the size as it streams) is a BadInput naming the file."""
    import gzip
    import zlib
    packed, limit = Path(packed), MAX_UNPACKED if limit is None else limit

    def bad(why: str) -> BadInput:
        return BadInput(f"{packed} is not a packed rexbench results database ({why}); it was left as it is")
    if not packed.is_file():
        raise bad("a directory" if packed.is_dir() else "not a file")
    target = into / "results.sqlite"
    try:
        with gzip.open(packed, "rb") as z, open(target, "wb") as f:
            head = z.read(len(_SQLITE_HEADER))
            if head != _SQLITE_HEADER:
                raise bad("it does not hold an SQLite database")
            f.write(head)
            total = len(head)
            while chunk := z.read(1 << 20):
                total += len(chunk)
                if total > limit:
                    raise bad(f"it decompresses to more than {limit >> 20} MiB")
                f.write(chunk)
    except (gzip.BadGzipFile, EOFError, zlib.error) as e:
        raise bad(f"damaged gzip: {type(e).__name__}{': ' + str(e) if str(e) else ''}") from None
    except OSError as e:
        raise bad(f"cannot read: {e.strerror or e}") from None
    return target


@contextmanager
def run_database(run_dir: Path, what: str):
    """The checked results database of the run in `run_dir` (`check_database`), or of its packed copy
    (`results.sqlite.gz`, unpacked into a temporary directory for the life of the context): what every
    command that reads a run directory reads. `what` names the option in the error when there is neither."""
    run_dir = Path(run_dir)
    db = run_dir / DB
    if db.exists():
        check_database(db)
        yield db
        return
    if (run_dir / PACKED).exists():
        with private_tmp("unpack") as tmp:
            unpacked = unpack_database(run_dir / PACKED, Path(tmp))
            check_database(unpacked, shown=run_dir / PACKED)
            yield unpacked
        return
    if not run_dir.is_dir():
        raise BadInput(f"{what} {run_dir}: no such run directory")
    raise BadInput(f"{what} {run_dir} holds no {DB} and no {PACKED} (run `rexbench run SUITE.toml --out "
                   f"{run_dir}` first)")
