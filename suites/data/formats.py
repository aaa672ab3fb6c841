"""Collection file formats, read offline: TREC (topics, qrels, a TREC/JSONL/TSV corpus, a run file), BEIR
(corpus.jsonl, queries.jsonl, qrels/<split>.tsv) and the rank_llm JSON runs of the shipped TREC DL data.
Every reader names the file and the line of anything it cannot read (a BadInput: exit 2, one line).

Shipped here (`suites/data/`): `trec-dl/` (TREC Deep Learning 2019 and 2020 passage ranking: Pyserini's BM25
top-100 with passage text, and the NIST judgments; MS MARCO passages are "intended for non-commercial
research purposes only", made available without a licence grant (MS MARCO terms); the judgments are NIST's)
and `vaswani/` (NPL: 11,429 abstracts, 93 queries, 2,083 judgments, TREC format, as PyTerrier ships it).
"""
from __future__ import annotations

import gzip
import json
import re
from pathlib import Path

from rankers.errors import BadInput


def read_text(path: Path) -> str:
    """A text file, gzip-compressed where its name ends in .gz (UTF-8)."""
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rt", encoding="utf-8") as f:
                return f.read()
        return path.read_text(encoding="utf-8")
    except (OSError, EOFError, UnicodeDecodeError, gzip.BadGzipFile) as e:
        raise BadInput(f"{path}: cannot read ({getattr(e, 'strerror', None) or type(e).__name__})") from None


def _line_of(text: str, pos: int) -> int:
    return text.count("\n", 0, pos) + 1


# --------------------------------------------------------------------------- TREC
def read_trec_docs(path: Path) -> dict[str, str]:
    """`<DOC><DOCNO>id</DOCNO> text </DOC>` records (other tags inside a record are dropped, their text kept)."""
    text = read_text(path)
    docs: dict[str, str] = {}
    for m in re.finditer(r"<DOC>(.*?)</DOC>", text, re.S):
        no = re.search(r"<DOCNO>\s*(.*?)\s*</DOCNO>", m.group(1), re.S)
        if not no or not no.group(1):
            raise BadInput(f"{path} line {_line_of(text, m.start())}: a <DOC> without <DOCNO>")
        body = re.sub(r"<[^>]+>", " ", m.group(1)[no.end():])
        docs[no.group(1)] = " ".join(body.split())
    if not docs:
        raise BadInput(f"{path}: no <DOC> records")
    return docs


def read_trec_topics(path: Path) -> dict[str, str]:
    """`<top><num>id</num><title>text</title>...</top>` (the title is the query; `Number:` prefixes allowed)."""
    text = read_text(path)
    out: dict[str, str] = {}
    for m in re.finditer(r"<top>(.*?)</top>", text, re.S | re.I):
        num = re.search(r"<num>\s*(?:Number:)?\s*([^<\s]+)", m.group(1), re.I)
        title = re.search(r"<title>\s*(?:Topic:)?(.*?)(?:</title>|<desc>|<narr>|$)", m.group(1), re.S | re.I)
        if not num or not title or not title.group(1).strip():
            raise BadInput(f"{path} line {_line_of(text, m.start())}: a topic without <num> or <title>")
        out[num.group(1)] = " ".join(title.group(1).split())
    if not out:
        raise BadInput(f"{path}: no <top> topics")
    return out


def read_trec_qrels(path: Path) -> dict[str, dict[str, int]]:
    """`qid iteration docid relevance` lines (graded; 0 = judged non-relevant)."""
    qrels: dict[str, dict[str, int]] = {}
    for n, line in enumerate(read_text(path).splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != 4 or not re.fullmatch(r"-?\d+", parts[3]):
            raise BadInput(f"{path} line {n}: expected 'qid 0 docid relevance', got {line.strip()[:80]!r}")
        qrels.setdefault(parts[0], {})[parts[2]] = max(int(parts[3]), 0)
    return qrels


def read_jsonl(path: Path, keys: tuple[str, ...]) -> list[dict]:
    """JSON lines, each an object with at least `keys`."""
    out = []
    for n, line in enumerate(read_text(path).splitlines(), 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise BadInput(f"{path} line {n}: not JSON ({e.msg})") from None
        if not isinstance(obj, dict) or any(k not in obj for k in keys):
            raise BadInput(f"{path} line {n}: expected an object with {', '.join(keys)}")
        out.append(obj)
    return out


def read_tsv_pairs(path: Path, what: str) -> dict[str, str]:
    """`id<TAB>text` lines (a TSV corpus or query file)."""
    out = {}
    for n, line in enumerate(read_text(path).splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split("\t")
        if len(parts) < 2 or not parts[0].strip():
            raise BadInput(f"{path} line {n}: expected '{what} id<TAB>text'")
        out[parts[0].strip()] = " ".join("\t".join(parts[1:]).split())
    return out


# --------------------------------------------------------------------------- BEIR
def read_beir(root: Path, split: str = "test") -> tuple[dict[str, str], dict[str, str], dict[str, dict[str, int]]]:
    """A BEIR directory: corpus.jsonl (`_id`, `title`, `text`), queries.jsonl (`_id`, `text`) and
    qrels/<split>.tsv (a header line, then `query-id corpus-id score`). The document is its title and text;
    only judged queries are kept."""
    for f in ("corpus.jsonl", "queries.jsonl", f"qrels/{split}.tsv"):
        if not (root / f).is_file() and not (root / (f + ".gz")).is_file():
            raise BadInput(f"beir:{root}: missing {f} (a BEIR directory holds corpus.jsonl, queries.jsonl and "
                           f"qrels/{split}.tsv)")

    def path(f: str) -> Path:
        return root / f if (root / f).is_file() else root / (f + ".gz")
    docs = {str(o["_id"]): " ".join(f"{o.get('title') or ''} {o['text']}".split())
            for o in read_jsonl(path("corpus.jsonl"), ("_id", "text"))}
    queries = {str(o["_id"]): " ".join(str(o["text"]).split())
               for o in read_jsonl(path("queries.jsonl"), ("_id", "text"))}
    qrels: dict[str, dict[str, int]] = {}
    qpath = path(f"qrels/{split}.tsv")
    for n, line in enumerate(read_text(qpath).splitlines(), 1):
        if n == 1 or not line.strip():
            continue  # the header
        parts = line.split("\t")
        if len(parts) != 3 or not re.fullmatch(r"-?\d+", parts[2].strip()):
            raise BadInput(f"{qpath} line {n}: expected 'query-id<TAB>corpus-id<TAB>score'")
        q, d = parts[0].strip(), parts[1].strip()
        if q not in queries or d not in docs:
            raise BadInput(f"{qpath} line {n}: {'query' if q not in queries else 'document'} "
                           f"{q if q not in queries else d!r} is not in the {'queries' if q not in queries else 'corpus'}")
        qrels.setdefault(q, {})[d] = max(int(parts[2]), 0)
    return docs, {q: queries[q] for q in queries if q in qrels}, qrels


# --------------------------------------------------------------------------- rank_llm JSON (shipped TREC DL)
def read_rankllm_run(path: Path) -> tuple[dict[str, str], dict[str, str], dict[str, list[str]]]:
    """`[{"query": text, "hits": [{"qid", "docid", "rank", "score", "content"}, ...]}, ...]` -> (documents,
    queries, run: qid -> docids best first). Query ids become strings (they are integers in these files)."""
    try:
        data = json.loads(read_text(path))
    except json.JSONDecodeError as e:
        raise BadInput(f"{path} line {e.lineno}: not JSON ({e.msg})") from None
    docs: dict[str, str] = {}
    queries: dict[str, str] = {}
    run: dict[str, list[str]] = {}
    for i, entry in enumerate(data if isinstance(data, list) else [None]):
        hits = entry.get("hits") if isinstance(entry, dict) else None
        if not isinstance(hits, list) or not hits or "query" not in entry:
            raise BadInput(f"{path}: entry {i} is not {{'query': ..., 'hits': [...]}}")
        qid = str(hits[0]["qid"])
        queries[qid] = " ".join(str(entry["query"]).split())
        ranked = sorted(hits, key=lambda h: (-float(h["score"]), int(h["rank"])))
        run[qid] = [str(h["docid"]) for h in ranked]
        for h in hits:
            docs.setdefault(str(h["docid"]), str(h["content"]).strip())
    return docs, queries, run


def read_json_qrels(path: Path) -> dict[str, dict[str, int]]:
    """`{qid: {docid: "grade"}}`."""
    try:
        data = json.loads(read_text(path))
        return {str(q): {str(d): int(g) for d, g in ds.items()} for q, ds in data.items()}
    except (json.JSONDecodeError, AttributeError, ValueError, TypeError) as e:
        raise BadInput(f"{path}: expected {{qid: {{docid: grade}}}} ({type(e).__name__})") from None
