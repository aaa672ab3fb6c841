"""Test collections behind one interface: documents, queries, graded qrels,
deterministic query splits and a BM25 top-100 candidate list per query.

Names: `cranfield` (real data, shipped in `suites/data/cranfield/`; `--data-dir` /
`$REXBENCH_DATA` name another directory holding `cranfield/`), `trec-dl-2019` and `trec-dl-2020` (shipped:
the documents are the union of the shipped BM25 top-100 lists, which are the candidates), `vaswani`
(shipped), `synthetic` (generated from a seed, with planted rationales), `beir:DIR` and `trec:DIR` (your own
files, `suites.data.formats`), `irds:<id>`.

Splits are by query ordinal (1-based order of the query file): ordinal % 5 == 0
-> test, ordinal % 5 == 1 -> dev, the rest -> train (Cranfield: 135/45/45). TREC DL 2019 is a test
collection: every query is in `test`; `trec-dl` joins the two years so that trained rankers train and select
on DL 2020 (its ordinal train/dev split) and are tested on DL 2019.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np

from rankers.bm25 import BM25Index
from rankers.errors import BadInput, unknown_name
from rankers.text import Vocab, analyze, tokenize

COLLECTIONS = ("cranfield", "trec-dl-2019", "trec-dl-2020", "trec-dl", "vaswani", "synthetic", "beir:DIR",
               "trec:DIR", "irds:<id>")
SPLITS = ("train", "dev", "test", "all")


@dataclass
class Collection:
    """A test collection.

    docs / queries: id -> raw text; qrels: qid -> docid -> graded relevance
    (0 = judged non-relevant); rationales: (qid, docid) -> token positions in
    the tokenised document that carry the relevance signal (synthetic only).
    """

    name: str
    docs: dict[str, str]
    queries: dict[str, str]
    qrels: dict[str, dict[str, int]]
    rationales: dict[tuple[str, str], list[int]] = field(default_factory=dict)
    n_candidates: int = 100
    #: qid -> candidate docids, best first, from a first-stage run file (`with_run`); other queries: BM25
    run: dict[str, list[str]] = field(default_factory=dict)
    run_source: str | None = None
    #: split -> query ids where the collection fixes its splits (TREC DL 2019: every query is a test query)
    fixed_splits: dict[str, list[str]] | None = None
    #: the grade from which a document counts as relevant for binary measures (MRR, MAP; TREC DL: 2)
    rel_threshold: int = 1

    def first_stage(self) -> dict[str, dict[str, float]] | None:
        """The candidates' own run as scores (qid -> docid -> score, best first), where a first stage gave them
        (a shipped run or a run file); None for BM25 candidates made here."""
        if not self.run:
            return None
        return {q: {d: float(len(ds) - i) for i, d in enumerate(ds)} for q, ds in self.run.items()}

    @cached_property
    def doc_tokens(self) -> dict[str, list[str]]:
        return {d: tokenize(t) for d, t in self.docs.items()}

    @cached_property
    def query_tokens(self) -> dict[str, list[str]]:
        return {q: tokenize(t) for q, t in self.queries.items()}

    @cached_property
    def digest(self) -> str:
        """Content hash of documents, queries and judgments (a run's collection identity)."""
        import hashlib
        import json
        blob = json.dumps([self.docs, self.queries, self.qrels] + ([self.run] if self.run else []),
                          sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]

    @cached_property
    def vocab(self) -> Vocab:
        return Vocab.build(list(self.doc_tokens.values()) + list(self.query_tokens.values()))

    @cached_property
    def index(self) -> BM25Index:
        return BM25Index(list(self.docs), list(self.doc_tokens.values()), self.vocab)

    def units(self, analyzer: str) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
        """(query id -> units, doc id -> units) under a ranker's analyzer ("index" | "words"), cached."""
        if analyzer == "index":
            return self.query_tokens, self.doc_tokens
        cache = self.__dict__.setdefault("_units", {})
        if analyzer not in cache:
            cache[analyzer] = ({q: analyze(analyzer, t) for q, t in self.queries.items()},
                               {d: analyze(analyzer, t) for d, t in self.docs.items()})
        return cache[analyzer]

    def split(self, name: str) -> list[str]:
        """Query ids of a split, in query-file order."""
        if name not in SPLITS:
            raise unknown_name("split", name, SPLITS)
        qids = list(self.queries)
        if name == "all":
            return qids
        if self.fixed_splits is not None:
            return list(self.fixed_splits.get(name, []))
        want = {"test": 0, "dev": 1}.get(name)
        return [q for i, q in enumerate(qids, 1) if (i % 5 == want if want is not None else i % 5 > 1)]

    @cached_property
    def _candidates(self) -> dict[str, list[str]]:
        return {q: [d for d, _ in self.index.retrieve(self.query_tokens[q], self.n_candidates)]
                for q in self.queries}

    def candidates(self, qid: str) -> list[str]:
        """The document ids every ranker re-ranks for a query: the run file's list where one was
        given (`with_run`), else the BM25 top-`n_candidates`."""
        if qid not in self.queries:
            raise BadInput(f"unknown query id {qid!r} in collection {self.name!r}")
        return self.run.get(qid) or self._candidates[qid]

    def bm25_candidates(self, qid: str) -> list[str]:
        """The BM25 top-`n_candidates` (training always samples from these, whatever the run file)."""
        return self._candidates[qid]

    def with_run(self, path: str | os.PathLike) -> "Collection":
        """A copy whose candidates come from a TREC run file (`qid Q0 docid rank score tag`; ordered by
        score, ties by rank). Unknown query or document ids are a BadInput naming the line."""
        run = read_run(path, self)
        new = Collection(self.name, self.docs, self.queries, self.qrels, self.rationales, self.n_candidates, run,
                         str(path), self.fixed_splits, self.rel_threshold)
        new.__dict__.update({k: v for k, v in self.__dict__.items()
                             if k in ("doc_tokens", "query_tokens", "vocab", "index", "_candidates", "_units")})
        return new

    def relevant(self, qid: str) -> list[str]:
        return [d for d, r in self.qrels.get(qid, {}).items() if r > 0]


def read_run(path: str | os.PathLike, coll: "Collection") -> dict[str, list[str]]:
    """qid -> docids, best first, from a TREC run file; validated against the collection."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise BadInput(f"run file {path}: cannot read ({getattr(e, 'strerror', None) or type(e).__name__})") from None
    rows: dict[str, list[tuple[float, int, str]]] = {}
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != 6:
            raise BadInput(f"run file {path} line {n}: expected 'qid Q0 docid rank score tag', got {line.strip()!r}")
        q, _, d, rank, score, _ = parts
        try:
            key = (-float(score), int(rank), d)
        except ValueError:
            raise BadInput(f"run file {path} line {n}: rank must be an integer and score a number") from None
        if not np.isfinite(key[0]):
            raise BadInput(f"run file {path} line {n}: score {score!r} is not a finite number")
        if q not in coll.queries:
            raise BadInput(f"run file {path} line {n}: query {q!r} is not in collection {coll.name!r}")
        if d not in coll.docs:
            raise BadInput(f"run file {path} line {n}: document {d!r} is not in collection {coll.name!r}")
        rows.setdefault(q, []).append(key)
    if not rows:
        raise BadInput(f"run file {path} has no rankings")
    out = {}
    for q, r in rows.items():
        docs = [d for _, _, d in sorted(r)]
        if len(set(docs)) != len(docs):
            raise BadInput(f"run file {path}: query {q!r} lists a document twice")
        out[q] = docs
    return out


# --------------------------------------------------------------------------- cranfield
def _records(path: Path) -> list[dict[str, str]]:
    """Parse a SMART-format file ('.I n' records with '.X' fields) into dicts."""
    recs: list[dict[str, str]] = []
    cur, fld = None, None
    for line in path.read_text(encoding="latin-1").splitlines():
        m = re.match(r"^\.([A-Z])\b\s*(.*)$", line)
        if m and m.group(1) == "I":
            cur = {"I": m.group(2).strip()}
            recs.append(cur)
            fld = None
        elif m and cur is not None:
            fld = m.group(1)
            cur.setdefault(fld, "")
            if m.group(2):
                cur[fld] += m.group(2) + "\n"
        elif cur is not None and fld is not None:
            cur[fld] += line + "\n"
    return recs


def relevance_from_code(code: int) -> int:
    """Cleverdon code -> graded relevance: 1..4 -> 4..1 (4 = complete answer); -1 -> 0."""
    return 5 - code if 1 <= code <= 4 else 0


def load_cranfield_dir(root: Path) -> Collection:
    docs = {}
    for r in _records(root / "cran.all.1400"):
        text = r.get("W", "").strip() or r.get("T", "").strip()
        docs[str(int(r["I"]))] = " ".join(text.split())
    queries = {}
    for ordinal, r in enumerate(_records(root / "cran.qry"), 1):
        # cranqrel numbers queries by their order in cran.qry, not by '.I'.
        queries[str(ordinal)] = " ".join(r.get("W", "").split())
    qrels: dict[str, dict[str, int]] = {}
    for line in (root / "cranqrel").read_text().splitlines():
        parts = line.split()
        if len(parts) >= 3:
            q, d, code = parts[0], parts[1], int(parts[2])
            qrels.setdefault(str(int(q)), {})[str(int(d))] = relevance_from_code(code)
    return Collection("cranfield", docs, queries, qrels)


#: the Cranfield copy shipped with rexbench (public, 1.7 MB): the default data directory
SHIPPED_DATA = Path(__file__).resolve().parent  # suites/data/: cranfield/ ships here


def _data_dir(data_dir: str | os.PathLike | None) -> Path:
    """`data_dir`, else `$REXBENCH_DATA`, else the copy shipped inside the package."""
    d = data_dir or os.environ.get("REXBENCH_DATA")
    return Path(d) if d else SHIPPED_DATA


def load_cranfield(data_dir: str | os.PathLike | None = None) -> Collection:
    d = _data_dir(data_dir)
    if (d / "cranfield" / "cran.all.1400").exists():
        return load_cranfield_dir(d / "cranfield")
    try:
        import ir_datasets  # noqa: F401
    except ImportError:
        where = f"{d / 'cranfield'} does not hold cran.all.1400"
        raise BadInput(
            f"Cranfield not found ({where}). Pass --data-dir DIR or set REXBENCH_DATA=DIR, where "
            "DIR/cranfield holds cran.all.1400, cran.qry and cranqrel (from "
            "http://ir.dcs.gla.ac.uk/resources/test_collections/cran/), or `pip install ir_datasets` "
            "to use its 'cranfield' dataset.") from None
    return load_irds("cranfield", name="cranfield")


def load_irds(dataset_id: str, name: str | None = None) -> Collection:
    """Any ir_datasets id (optional extra `rexbench[irds]`); negative grades become 0."""
    try:
        import ir_datasets
    except ImportError:
        raise BadInput("irds:<id> collections need ir_datasets: pip install 'rexbench[irds]'") from None
    try:
        ds = ir_datasets.load(dataset_id)
    except KeyError as e:
        raise BadInput(f"unknown ir_datasets id {dataset_id!r}") from e
    try:
        docs = {d.doc_id: " ".join(getattr(d, "text", "").split()) for d in ds.docs_iter()}
        queries = {q.query_id: q.text for q in ds.queries_iter()}
        qrels: dict[str, dict[str, int]] = {}
        for r in ds.qrels_iter():
            qrels.setdefault(r.query_id, {})[r.doc_id] = max(int(r.relevance), 0)
    except Exception as e:  # ir_datasets raises RuntimeError etc. when its download fails
        raise BadInput(f"ir_datasets could not provide {dataset_id!r} ({type(e).__name__}); download it once "
                       "with network access, or for Cranfield set REXBENCH_DATA to a directory holding "
                       "cranfield/cran.all.1400, cran.qry and cranqrel") from None
    return Collection(name or f"irds:{dataset_id}", docs, queries, qrels)


# --------------------------------------------------------------------------- synthetic
def _pseudo_words(rng: np.random.Generator, n: int, taken: set[str]) -> list[str]:
    cons, vows = list("bdfgklmnprstvz"), list("aeiou")
    out = []
    while len(out) < n:
        k = int(rng.integers(2, 4))
        w = "".join(cons[c] + vows[v] for c, v in zip(rng.integers(0, 14, k), rng.integers(0, 5, k)))
        if w not in taken and tokenize(w) == [w]:
            taken.add(w)
            out.append(w)
    return out


def make_synthetic(seed: int = 0, n_topics: int = 8, queries_per_topic: int = 10,
                   rel_per_query: int = 4, near_miss_per_query: int = 4, n_background: int = 200) -> Collection:
    """A seeded collection with planted rationales; identical output for the same seed.

    Each query is 3 words of one topic. Its relevant documents (grade 2 if all
    three query words are planted, grade 1 if two are) carry the planted query
    words at recorded positions (`rationales`). Near-miss documents share the
    topic vocabulary and contain one query word once (a distractor, judged 0);
    background documents mix other topics and common words.
    """
    rng = np.random.default_rng(seed)
    taken: set[str] = set()
    common = _pseudo_words(rng, 300, taken)
    topics = [_pseudo_words(rng, 40, taken) for _ in range(n_topics)]
    docs: dict[str, str] = {}
    queries: dict[str, str] = {}
    qrels: dict[str, dict[str, int]] = {}
    rationales: dict[tuple[str, str], list[int]] = {}

    def body(topic: list[str], length: int, avoid: set[str]) -> list[str]:
        pool_t = [w for w in topic if w not in avoid]
        use_topic = rng.random(length) < 0.3
        t_idx, c_idx = rng.integers(0, len(pool_t), length), rng.integers(0, len(common), length)
        return [pool_t[i] if u else common[j] for u, i, j in zip(use_topic, t_idx, c_idx)]

    def add_doc(tokens: list[str]) -> str:
        did = f"d{len(docs) + 1:04d}"
        docs[did] = " ".join(tokens)
        return did

    for t, topic in enumerate(topics):
        for _ in range(queries_per_topic):
            qid = f"q{len(queries) + 1:03d}"
            qterms = [str(w) for w in rng.choice(topic, size=3, replace=False)]
            queries[qid] = " ".join(qterms)
            qrels[qid] = {}
            for r in range(rel_per_query):
                planted = qterms if r % 2 == 0 else qterms[:2]
                toks = body(topic, int(rng.integers(30, 60)), set(qterms))
                slots = []
                for w in planted:
                    for _ in range(int(rng.integers(1, 4))):
                        pos = int(rng.integers(0, len(toks) + 1))
                        toks.insert(pos, w)
                        slots = [s + (s >= pos) for s in slots] + [pos]
                did = add_doc(toks)
                qrels[qid][did] = 2 if len(planted) == 3 else 1
                rationales[(qid, did)] = sorted(slots)
            for _ in range(near_miss_per_query):
                toks = body(topic, int(rng.integers(30, 60)), set(qterms))
                toks.insert(int(rng.integers(0, len(toks) + 1)), qterms[int(rng.integers(0, 3))])
                qrels[qid][add_doc(toks)] = 0
    for _ in range(n_background):
        add_doc(body(topics[int(rng.integers(0, n_topics))], int(rng.integers(30, 60)), set()))
    return Collection("synthetic", docs, queries, qrels, rationales)


# --------------------------------------------------------------------------- shipped and user file collections
SHIPPED_TREC_DL = {"trec-dl-2019": "19", "trec-dl-2020": "20"}


def load_trec_dl(name: str) -> Collection:
    """TREC DL 2019 / 2020 passage ranking as shipped (`suites/data/trec-dl/`): the queries of the shipped
    BM25 top-100 lists, which are also the candidates (`run`); the documents are their union (so rexbench's
    own bm25 over this pool takes its idf from the pool); the NIST judgments of those queries."""
    from .formats import read_json_qrels, read_rankllm_run
    yy = SHIPPED_TREC_DL[name]
    root = SHIPPED_DATA / "trec-dl"
    docs, queries, run = read_rankllm_run(root / f"retrieve_results_dl{yy}.json.gz")
    qrels = {q: d for q, d in read_json_qrels(root / f"qrels_dl{yy}.json.gz").items() if q in queries}
    splits = {"test": list(queries), "train": [], "dev": []} if yy == "19" else None
    return Collection(name, docs, queries, qrels, run=run, run_source=f"shipped BM25 top-100 (Pyserini), {name}",
                      fixed_splits=splits, rel_threshold=2)


#: the collection that trains on one year and tests on the other (issue 35)
TREC_DL_TRANSFER = "trec-dl"


def load_trec_dl_transfer() -> Collection:
    """`trec-dl`: TREC DL 2020 trains, DL 2019 tests. Train and dev are the DL 2020 queries (ordinal split:
    ordinal % 5 == 1 -> dev, the rest -> train), test is every DL 2019 query, so no DL 2019 judgment is used for
    training or model selection. Documents: the union of both years' shipped BM25 top-100 lists (the candidates of
    each query: its own year's list; rexbench's bm25 takes its idf from this union pool); judgments: both years'
    NIST qrels, each for its own queries (the query sets are disjoint)."""
    dl19, dl20 = load_trec_dl("trec-dl-2019"), load_trec_dl("trec-dl-2020")
    if set(dl19.queries) & set(dl20.queries):
        raise BadInput("trec-dl: the shipped DL 2019 and DL 2020 query ids overlap")
    q20 = list(dl20.queries)
    splits = {"test": list(dl19.queries), "dev": [q for i, q in enumerate(q20, 1) if i % 5 == 1],
              "train": [q for i, q in enumerate(q20, 1) if i % 5 != 1]}
    return Collection(TREC_DL_TRANSFER, {**dl20.docs, **dl19.docs}, {**dl19.queries, **dl20.queries},
                      {**dl19.qrels, **dl20.qrels}, run={**dl19.run, **dl20.run},
                      run_source="shipped BM25 top-100 (Pyserini), DL 2019 and DL 2020", fixed_splits=splits,
                      rel_threshold=2)


def load_vaswani() -> Collection:
    """The NPL (Vaswani) collection as shipped (`suites/data/vaswani/`, TREC format)."""
    from .formats import read_trec_docs, read_trec_qrels, read_trec_topics
    root = SHIPPED_DATA / "vaswani"
    return Collection("vaswani", read_trec_docs(root / "doc-text.trec.gz"), read_trec_topics(root / "query-text.trec"),
                      read_trec_qrels(root / "qrels"))


def _user_dir(kind: str, spec: str) -> tuple[Path, str]:
    """The directory of a `beir:DIR` / `trec:DIR` collection and its name (kind, folder name and a short hash
    of the absolute path: two folders of one name are two collections, e.g. for the checkpoint cache)."""
    import hashlib
    root = Path(spec).expanduser()
    if not root.is_dir():
        raise BadInput(f"{kind}:{spec}: no such directory")
    return root, f"{kind}:{root.name}-{hashlib.sha1(str(root.resolve()).encode()).hexdigest()[:6]}"


def load_beir(spec: str) -> Collection:
    from .formats import read_beir
    root, name = _user_dir("beir", spec)
    docs, queries, qrels = read_beir(root)
    return Collection(name, docs, queries, qrels)


def load_trec_dir(spec: str) -> Collection:
    """A directory of TREC files: `topics` (TREC <top> records, or `id<TAB>text` lines), `qrels`, a corpus
    (`corpus.trec`, `corpus.jsonl` with `id`/`text` (or `_id`), or `corpus.tsv`; each may be .gz) and an
    optional `run` (a TREC run file: the candidates)."""
    from .formats import read_jsonl, read_text, read_trec_docs, read_trec_qrels, read_trec_topics, read_tsv_pairs
    root, name = _user_dir("trec", spec)

    def find(*names: str) -> Path | None:
        return next((root / n for n in names if (root / n).is_file()), None)
    topics, qrels = find("topics", "topics.txt", "topics.tsv"), find("qrels", "qrels.txt")
    corpus = find("corpus.trec", "corpus.trec.gz", "corpus.jsonl", "corpus.jsonl.gz", "corpus.tsv", "corpus.tsv.gz")
    missing = [n for n, p in (("topics", topics), ("qrels", qrels), ("corpus.trec|jsonl|tsv", corpus)) if p is None]
    if missing:
        raise BadInput(f"trec:{spec}: missing {', '.join(missing)} (a TREC directory holds topics, qrels, a corpus "
                       "and optionally a run file)")
    queries = read_trec_topics(topics) if "<top>" in read_text(topics).lower() else read_tsv_pairs(topics, "query")
    if ".jsonl" in corpus.name:
        docs = {str(o.get("id", o.get("_id"))): " ".join(f"{o.get('title') or ''} {o['text']}".split())
                for o in read_jsonl(corpus, ("text",))}
    elif ".tsv" in corpus.name:
        docs = read_tsv_pairs(corpus, "document")
    else:
        docs = read_trec_docs(corpus)
    judged = read_trec_qrels(qrels)
    for q, ds in judged.items():
        if q not in queries:
            raise BadInput(f"{qrels}: query {q!r} is not in {topics}")
    coll = Collection(name, docs, queries, judged)
    run = find("run", "run.txt", "run.trec")
    return coll.with_run(run) if run is not None else coll


# --------------------------------------------------------------------------- entry point
_CACHE: dict[tuple, Collection] = {}


def _files_state(name: str, data_dir) -> tuple:
    """(size, mtime) of a file collection's files: an edited data directory is read again, never served
    from this process's cache (a long-lived Dask worker or a Python session)."""
    if name.startswith(("beir:", "trec:")):  # a user's directory: every file's size and mtime
        root = Path(name[5:]).expanduser()
        return tuple((str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(root.rglob("*"))
                     if p.is_file()) if root.is_dir() else ()
    if name != "cranfield":
        return ()
    root = _data_dir(data_dir) / "cranfield"
    out = []
    for f in ("cran.all.1400", "cran.qry", "cranqrel"):
        try:
            st = (root / f).stat()
            out.append((st.st_size, st.st_mtime_ns))
        except OSError:
            out.append(None)
    return tuple(out)


def load_collection(name: str, data_dir: str | os.PathLike | None = None, seed: int = 0) -> Collection:
    """Load a collection by name (cached per process, keyed by its files' size and mtime)."""
    key = (name, str(_data_dir(data_dir)), seed, _files_state(name, data_dir))
    if key not in _CACHE:
        if name == "cranfield":
            _CACHE[key] = load_cranfield(data_dir)
        elif name == "synthetic":
            _CACHE[key] = make_synthetic(seed)
        elif name in SHIPPED_TREC_DL:
            _CACHE[key] = load_trec_dl(name)
        elif name == TREC_DL_TRANSFER:
            _CACHE[key] = load_trec_dl_transfer()
        elif name == "vaswani":
            _CACHE[key] = load_vaswani()
        elif name.startswith("beir:") and len(name) > 5:
            _CACHE[key] = load_beir(name[5:])
        elif name.startswith("trec:") and len(name) > 5:
            _CACHE[key] = load_trec_dir(name[5:])
        elif name.startswith("irds:") and len(name) > 5:
            _CACHE[key] = load_irds(name[5:])
        else:
            raise unknown_name("collection", name, COLLECTIONS)
    return _CACHE[key]
