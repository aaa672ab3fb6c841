"""SQLite results store (the source of truth of a suite run), WAL mode.

Tables:
- results: one row per ranker x explainer x sample x metric (primary key, so a
  resumed run can never duplicate a row);
- cells: finished (ranker, explainer, qid, docid) cells, written in the same
  transaction as their rows;
- shards: finished (ranker, query) shards, written in the same transaction as all their
  cells (a shard is recorded whole or not at all), which is what `--resume` skips;
- explanations: each explanation's attributions (for peers, listwise metrics and figures);
- rankers: effectiveness per ranker and collection; meta: key -> JSON.
"""
from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Iterable

import pandas as pd

RESULT_COLUMNS = ["suite", "ranker", "explainer", "collection", "qid", "docid", "metric", "value", "seconds", "device",
                  "seed", "status", "message", "forward_passes", "backward_passes", "truncated", "peak_mem_mb",
                  "curve", "info"]

_TYPES = {"value": "REAL", "seconds": "REAL", "peak_mem_mb": "REAL", "seed": "INTEGER", "forward_passes": "INTEGER",
          "backward_passes": "INTEGER", "truncated": "INTEGER"}

SCHEMA = f"""
CREATE TABLE IF NOT EXISTS results (
    {', '.join(f"{c} {_TYPES.get(c, 'TEXT')}" for c in RESULT_COLUMNS)},
    PRIMARY KEY (suite, ranker, explainer, qid, docid, metric));
CREATE TABLE IF NOT EXISTS cells (suite TEXT, ranker TEXT, explainer TEXT, qid TEXT, docid TEXT,
    PRIMARY KEY (suite, ranker, explainer, qid, docid));
CREATE TABLE IF NOT EXISTS explanations (suite TEXT, ranker TEXT, explainer TEXT, qid TEXT, docid TEXT, data TEXT,
    PRIMARY KEY (suite, ranker, explainer, qid, docid));
CREATE TABLE IF NOT EXISTS rankers (ranker TEXT, collection TEXT, split TEXT, data TEXT,
    PRIMARY KEY (ranker, collection, split));
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE IF NOT EXISTS shards (suite TEXT, ranker TEXT, qid TEXT, seconds REAL,
    PRIMARY KEY (suite, ranker, qid));
"""


class Store:
    """The run's database. `readonly=True` (reports) opens it without writing anything to it."""

    def __init__(self, path: str | Path, readonly: bool = False):
        self.path = Path(path)
        if readonly:
            self.db = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=30)
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(self.path, timeout=30)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.executescript(SCHEMA)

    def close(self) -> None:
        self.db.close()

    def move(self, new_path: Path, before=None) -> None:
        """Move the database file to `new_path` (same file system) and reopen it there: the WAL is
        checkpointed into the main file first, so one file moves; `before()` runs just before the move."""
        self.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        self.db.close()
        if before is not None:
            before()
        for suffix in ("-wal", "-shm"):
            Path(str(self.path) + suffix).unlink(missing_ok=True)
        Path(self.path).replace(new_path)
        self.__init__(new_path)

    # ------------------------------------------------------------------ writes
    def write_shard(self, suite: str, ranker: str, qid: str, cells: Iterable, seconds: float = 0.0) -> None:
        """Every cell of one (ranker, query) shard and the shard's 'done' mark, in one transaction.
        A shard already recorded is refused (one writer; a retried task cannot duplicate rows)."""
        with self.db:
            if self.db.execute("SELECT 1 FROM shards WHERE suite=? AND ranker=? AND qid=?",
                               (suite, ranker, qid)).fetchone():
                raise RuntimeError(f"shard ({ranker}, {qid}) of suite {suite} is already recorded")
            for c in cells:
                self._write_cell(c.key, c.rows, c.explanation)
            self.db.execute("INSERT INTO shards VALUES (?,?,?,?)", (suite, ranker, qid, seconds))

    def _write_cell(self, key, rows, explanation) -> None:
        self.db.executemany(
            f"INSERT OR REPLACE INTO results ({', '.join(RESULT_COLUMNS)}) VALUES "
            f"({', '.join('?' * len(RESULT_COLUMNS))})",
            [tuple(_cell(r.get(c)) for c in RESULT_COLUMNS) for r in rows])
        if explanation is not None:
            self.db.execute("INSERT OR REPLACE INTO explanations VALUES (?,?,?,?,?,?)",
                            (*key, json.dumps(explanation)))
        self.db.execute("INSERT OR REPLACE INTO cells VALUES (?,?,?,?,?)", key)

    def set_meta(self, key: str, value) -> None:
        with self.db:
            self.db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, json.dumps(value)))

    def set_ranker(self, ranker: str, collection: str, split: str, data: dict) -> None:
        with self.db:
            self.db.execute("INSERT OR REPLACE INTO rankers VALUES (?,?,?,?)", (ranker, collection, split,
                                                                              json.dumps(data)))

    # ------------------------------------------------------------------ reads
    def done_cells(self, suite: str) -> set[tuple[str, str, str, str, str]]:
        return set(self.db.execute("SELECT * FROM cells WHERE suite = ?", (suite,)).fetchall())

    def done_shards(self, suite: str) -> set[tuple[str, str]]:
        return set(self.db.execute("SELECT ranker, qid FROM shards WHERE suite = ?", (suite,)).fetchall())

    def has_ranker(self, ranker: str, collection: str) -> bool:
        return self.ranker(ranker, collection) is not None

    def ranker(self, ranker: str, collection: str) -> dict | None:
        """The stored record (effectiveness, timings) of `ranker` on `collection`, or None."""
        row = self.db.execute("SELECT data FROM rankers WHERE ranker=? AND collection=?",
                              (ranker, collection)).fetchone()
        return None if row is None else json.loads(row[0])

    def explanation(self, key) -> dict | None:
        row = self.db.execute("SELECT data FROM explanations WHERE suite=? AND ranker=? AND explainer=? AND qid=? "
                              "AND docid=?", key).fetchone()
        return None if row is None else json.loads(row[0])

    def shard_seconds(self) -> pd.DataFrame:
        """One row per finished shard: ranker, qid, seconds (its wall time in the worker)."""
        return pd.read_sql_query("SELECT ranker, qid, seconds FROM shards", self.db)

    def meta(self) -> dict:
        return {k: json.loads(v) for k, v in self.db.execute("SELECT key, value FROM meta")}

    def results(self) -> pd.DataFrame:
        return pd.read_sql_query("SELECT * FROM results ORDER BY ranker, explainer, qid, docid, metric", self.db)

    def rankers(self) -> pd.DataFrame:
        rows = [{"ranker": r, "collection": c, "split": s, **json.loads(d)}
                for r, c, s, d in self.db.execute("SELECT * FROM rankers ORDER BY collection, ranker")]
        return pd.DataFrame(rows)

    def explanations(self) -> list[dict]:
        return [{"ranker": r, "explainer": e, "qid": q, "docid": d, **json.loads(x)}
                for _, r, e, q, d, x in self.db.execute("SELECT * FROM explanations")]


def _cell(v):
    if isinstance(v, (dict, list)):
        return json.dumps(v)
    if isinstance(v, bool):
        return int(v)
    return v
