"""Collections rerankers are judged by (issue 35): TREC DL 2019/2020 and Vaswani shipped and loaded offline, the
shipped first stage evaluated as given (the published BM25 figures), and a user's own BEIR or TREC files, with
one line naming the file and the line for anything unreadable."""
import gzip
import json

import pytest

from rankers.errors import BadInput
from suites.cli import main


def test_shipped_trec_dl_and_vaswani():
    from rankers.evaluate import evaluate_run
    from suites.data.collections import load_collection
    dl19, dl20, npl = (load_collection(n) for n in ("trec-dl-2019", "trec-dl-2020", "vaswani"))
    assert (len(dl19.queries), len(dl19.docs), sum(map(len, dl19.qrels.values()))) == (43, 4297, 9260)
    assert (len(dl20.queries), len(dl20.docs), sum(map(len, dl20.qrels.values()))) == (54, 5396, 11386)
    assert (len(npl.docs), len(npl.queries), sum(map(len, npl.qrels.values()))) == (11429, 93, 2083)
    assert dl19.split("test") == list(dl19.queries) and dl19.split("train") == [] and dl19.split("dev") == []
    assert len(dl20.split("train")) + len(dl20.split("dev")) + len(dl20.split("test")) == 54
    q = dl19.split("test")[0]
    assert len(dl19.candidates(q)) == 100 and all(d in dl19.docs for d in dl19.candidates(q))
    # the shipped first stage as given: Pyserini's and rank_llm's published BM25 figures
    e19, e20 = evaluate_run(dl19, dl19.first_stage()), evaluate_run(dl20, dl20.first_stage())
    assert round(e19["ndcg@10"], 4) == 0.5058 and round(e20["ndcg@10"], 4) == 0.4796
    assert round(e19["mrr@10"], 4) == 0.7024 and round(e20["mrr@10"], 4) == 0.6533  # relevant from grade 2
    assert load_collection("cranfield").first_stage() is None


def _beir(root, corpus=None, queries=None, qrels=None):
    (root / "qrels").mkdir(parents=True)
    (root / "corpus.jsonl").write_text(corpus or "\n".join(json.dumps(o) for o in [
        {"_id": "d1", "title": "Drag", "text": "drag of a cone at supersonic speed"},
        {"_id": "d2", "title": "", "text": "heat transfer in a boundary layer"},
        {"_id": "d3", "title": "Wings", "text": "the flow over a swept wing"}]) + "\n")
    (root / "queries.jsonl").write_text(queries or "\n".join(json.dumps(o) for o in [
        {"_id": "q1", "text": "cone drag"}, {"_id": "q2", "text": "swept wing flow"},
        {"_id": "q9", "text": "never judged"}]) + "\n")
    (root / "qrels" / "test.tsv").write_text(qrels or "query-id\tcorpus-id\tscore\nq1\td1\t2\nq1\td2\t0\nq2\td3\t1\n")
    return root


def test_beir_directory(tmp_path, capsys):
    from suites.data.collections import load_collection
    c = load_collection(f"beir:{_beir(tmp_path / 'mini')}")
    assert c.name.startswith("beir:mini-") and set(c.queries) == {"q1", "q2"}   # only judged queries
    assert c.docs["d1"] == "Drag drag of a cone at supersonic speed" and c.qrels["q1"] == {"d1": 2, "d2": 0}
    assert c.candidates("q1")[0] == "d1"                                          # BM25 over the corpus
    assert main(["rank", "bm25", "--collection", f"beir:{tmp_path / 'mini'}", "--split", "all", "--json"]) == 0


@pytest.mark.parametrize("part, text, msg", [
    ("corpus", '{"_id": "d1", "text": "ok"}\n{not json\n', "corpus.jsonl line 2: not JSON"),
    ("corpus", '{"_id": "d1"}\n', "corpus.jsonl line 1: expected an object with _id, text"),
    ("qrels", "query-id\tcorpus-id\tscore\nq1\td1\n", "test.tsv line 2: expected"),
    ("qrels", "query-id\tcorpus-id\tscore\nq1\tnope\t1\n", "test.tsv line 2: document 'nope' is not in the corpus"),
])
def test_bad_beir_files_are_one_line(part, text, msg, tmp_path, capsys):
    root = _beir(tmp_path / "bad", **{part: text})
    assert main(["rank", "bm25", "--collection", f"beir:{root}", "--split", "all"]) == 2
    err = capsys.readouterr().err
    assert msg in err and err.count("\n") == 1
    assert main(["rank", "bm25", "--collection", f"beir:{tmp_path / 'nothing'}"]) == 2
    assert "no such directory" in capsys.readouterr().err


def test_trec_directory_with_a_run_file(tmp_path, capsys):
    from suites.data.collections import load_collection
    root = tmp_path / "t"
    root.mkdir()
    with gzip.open(root / "corpus.trec.gz", "wt") as f:
        f.write("<DOC>\n<DOCNO>a</DOCNO>\ndrag of a cone\n</DOC>\n<DOC><DOCNO>b</DOCNO><TEXT>swept wing</TEXT></DOC>\n"
                "<DOC><DOCNO>c</DOCNO>heat transfer</DOC>\n")
    (root / "topics").write_text("<top>\n<num> Number: 7\n<title> cone drag\n<desc> about cones\n</top>\n"
                                 "<top><num>8</num><title>wing</title></top>\n")
    (root / "qrels").write_text("7 0 a 1\n7 0 c 0\n8 0 b 2\n")
    (root / "run").write_text("7 Q0 c 1 9.0 mine\n7 Q0 a 2 8.0 mine\n8 Q0 b 1 3.0 mine\n")
    c = load_collection(f"trec:{root}")
    assert c.queries == {"7": "cone drag", "8": "wing"} and c.docs["b"] == "swept wing"
    assert c.candidates("7") == ["c", "a"]                        # the run file's ranking, not BM25's
    assert c.first_stage() == {"7": {"c": 2.0, "a": 1.0}, "8": {"b": 1.0}}
    (root / "qrels").write_text("7 0 a one\n")
    assert main(["rank", "bm25", "--collection", f"trec:{root}", "--split", "all"]) == 2
    assert "qrels line 1: expected 'qid 0 docid relevance'" in capsys.readouterr().err
    (root / "qrels").unlink()
    with pytest.raises(BadInput, match="missing qrels"):
        load_collection(f"trec:{root}")


def test_a_suite_on_a_run_file_records_the_first_stage(tmp_path, capsys):
    import sqlite3
    root = tmp_path / "t"
    root.mkdir()
    (root / "corpus.tsv").write_text("a\tdrag of a cone\nb\tswept wing\nc\theat transfer of a cone\n")
    (root / "topics").write_text("1\tcone drag\n2\twing\n3\tcone\n4\theat\n5\tdrag\n")
    (root / "qrels").write_text("1 0 a 1\n2 0 b 1\n3 0 c 1\n4 0 c 1\n5 0 a 1\n")
    (root / "run").write_text("".join(f"{q} Q0 {d} {i + 1} {3 - i} fs\n" for q in "12345"
                                      for i, d in enumerate("abc")))
    p = tmp_path / "s.toml"
    p.write_text(f'[suite]\nname = "fs"\ncollection = "trec:{root}"\n[samples]\nsplit = "all"\nqueries = 1\n'
                 'top_k = 1\nrelevant = 0\n[rankers.bm25]\n[explainers.random]\n[metrics.deletion]\nmax_steps = 2\n')
    assert main(["run", str(p), "--out", str(tmp_path / "run"), "--quiet"]) == 0
    con = sqlite3.connect(tmp_path / "run" / "results.sqlite")
    rows = dict(con.execute("SELECT ranker, data FROM rankers").fetchall())
    con.close()
    first = json.loads(rows["first stage (as given)"])
    assert first["queries"] == 1 and "ndcg@10" in first   # the test split of an ordinal split: query 5


def test_effectiveness_on_a_further_collection(tmp_path):
    """[effectiveness] evaluates the named rankers on another collection (here the shipped Vaswani), with their
    table's settings and without the table's checkpoint, which belongs to the suite's collection."""
    import sqlite3
    p = tmp_path / "s.toml"
    p.write_text('[suite]\nname = "eff"\ncollection = "synthetic"\n[samples]\nqueries = 1\ntop_k = 1\nrelevant = 0\n'
                 '[rankers.bm25]\nk1 = 0.9\n[explainers.random]\n[metrics.deletion]\nmax_steps = 2\n'
                 '[effectiveness]\ncollections = ["vaswani"]\nrankers = ["bm25", "random"]\n')
    assert main(["run", str(p), "--out", str(tmp_path / "run"), "--quiet"]) == 0
    con = sqlite3.connect(tmp_path / "run" / "results.sqlite")
    rows = {(r, c): json.loads(d) for r, c, d in con.execute("SELECT ranker, collection, data FROM rankers")}
    con.close()
    assert set(rows) == {("bm25", "synthetic"), ("bm25", "vaswani"), ("random", "vaswani")}
    assert rows[("bm25", "vaswani")]["queries"] == 18 and rows[("bm25", "vaswani")]["ndcg@10"] > \
        rows[("random", "vaswani")]["ndcg@10"]


def test_trec_dl_trains_on_2020_and_tests_on_2019():
    """`trec-dl`: train and dev are DL 2020 queries, test every DL 2019 query; no DL 2019 judgment reaches training
    or selection; each query keeps its own year's shipped candidates, so the test split's first stage as given is
    DL 2019's published BM25 (nDCG@10 0.5058)."""
    from rankers.evaluate import evaluate_run
    from suites.data.collections import load_collection
    c, dl19, dl20 = (load_collection(n) for n in ("trec-dl", "trec-dl-2019", "trec-dl-2020"))
    test, train, dev = c.split("test"), c.split("train"), c.split("dev")
    assert test == list(dl19.queries) and sorted(train + dev) == sorted(dl20.queries) and not set(train) & set(dev)
    assert len(dev) == 11 and len(train) == 43
    assert all(q not in dl19.qrels for q in train + dev)
    assert len(c.docs) == len(set(dl19.docs) | set(dl20.docs)) and c.rel_threshold == 2
    assert c.candidates(test[0]) == dl19.candidates(test[0]) and c.candidates(dev[0]) == dl20.candidates(dev[0])
    first = c.first_stage()
    e = evaluate_run(c, {q: first[q] for q in test})
    assert round(e["ndcg@10"], 4) == 0.5058 and e["queries"] == 43


def test_effectiveness_tests_each_ranker_against_the_first_stage_by_hand():
    import numpy as np
    import pandas as pd
    from scipy.stats import wilcoxon

    from suites.report.effectiveness import effectiveness_section, versus_reference
    first = {"a": 0.5, "b": 0.4, "c": 0.6, "d": 0.2, "e": 0.3}
    mine = {"a": 0.6, "b": 0.55, "c": 0.58, "d": 0.4, "e": 0.45, "extra": 1.0}
    rk = pd.DataFrame([{"collection": "trec-dl", "ranker": "first stage (as given)", "queries": 5, "ndcg@10": 0.4,
                        "mrr@10": 0.5, "map": 0.3, "ndcg@10 per query": first},
                       {"collection": "trec-dl", "ranker": "ce", "queries": 6, "ndcg@10": 0.5, "mrr@10": 0.6,
                        "map": 0.4, "train_seconds": 3.0, "ndcg@10 per query": mine}])
    got = versus_reference(rk)[("trec-dl", "ce")]
    q = sorted(first)
    d = np.array([mine[x] - first[x] for x in q])
    p = wilcoxon([mine[x] for x in q], [first[x] for x in q], zero_method="zsplit").pvalue
    assert got.startswith(f"{d.mean():+.3f} [") and got.endswith(f"p={p:.2g}, n=5")
    md = "\n".join(effectiveness_section(rk))
    assert "nDCG@10 vs first stage" in md and got in md


def test_rankers_below_the_first_stage_are_named_in_the_box(monkeypatch):
    """A ranker whose every query is below the first stage (paired CI below 0, Wilcoxon p < 0.05) is named with its
    nDCG@10 in 'What this evidence does not support'; one above it and one that ties on some queries are not."""
    from types import SimpleNamespace

    import pandas as pd

    from suites.report.effectiveness import below_reference
    qs = [f"q{i}" for i in range(12)]
    first = {q: 0.5 + 0.02 * i for i, q in enumerate(qs)}
    weak = {q: v - 0.2 for q, v in first.items()}               # below on every query: Wilcoxon p = 2 / 2**12
    good = {q: v + 0.1 for q, v in first.items()}
    mixed = {q: v + (0.1 if i % 2 else -0.1) for i, (q, v) in enumerate(first.items())}  # mean 0: not below
    rk = pd.DataFrame([{"collection": "c", "ranker": r, "ndcg@10": sum(pq.values()) / 12, "ndcg@10 per query": pq}
                       for r, pq in (("first stage (as given)", first), ("weak", weak), ("good", good),
                                     ("mixed", mixed))])
    got = below_reference(rk)
    assert list(got) == ["weak"]
    mean_first = sum(first.values()) / 12
    assert abs(got["weak"][0] - (mean_first - 0.2)) < 1e-12 and got["weak"][1] == mean_first
    assert got["weak"][2] == "first stage (as given)"
    import suites.report.answer as answer
    monkeypatch.setattr(answer, "validity_status", lambda validity, r, m: "validated (exact_shapley)")
    ev = SimpleNamespace(comparisons=SimpleNamespace(primary=pd.DataFrame(columns=["verdict"])), flags={},
                         matrix_metric="rank_deletion", df=pd.DataFrame({"docid": ["d"], "qid": ["q0"]}),
                         suite={"collection": "c"}, explained=["weak", "good", "mixed"], rankers=rk, validity=None)
    box = "\n".join(answer.not_supported(ev))
    line = next(x for x in box.splitlines() if "first stage" in x)
    assert "from weak: they rank below" in line and f"weak {got['weak'][0]:.3f} against {got['weak'][1]:.3f}" in line
    assert "good," not in line and "good:" not in line and "mixed" not in line
    assert "below the candidates' own first stage" in line
    # no random ranker row: the quality floor cannot be computed, and the box says it was not checked
    assert "quality floor (the nDCG@10 midpoint of random and the candidates' ranking) was not checked" in box
    ev.rankers = pd.concat([rk, pd.DataFrame([{"collection": "c", "ranker": "random", "ndcg@10": 0.05}])])
    assert "quality floor" not in "\n".join(answer.not_supported(ev))


def test_without_a_first_stage_row_rankers_are_tested_against_the_bm25_row(monkeypatch):
    """Cranfield's candidates are BM25's own top-100 (no first stage row): the effectiveness column and the box
    compare every ranker with the run's bm25 row, by hand; bm25 is not compared with itself."""
    from types import SimpleNamespace

    import numpy as np
    import pandas as pd
    from scipy.stats import wilcoxon

    from suites.report.effectiveness import below_reference, effectiveness_section, versus_reference
    qs = [f"q{i}" for i in range(12)]
    bm25 = {q: 0.3 + 0.03 * i for i, q in enumerate(qs)}
    knrm = {q: v - 0.05 - 0.01 * (i % 3) for i, (q, v) in enumerate(bm25.items())}   # below on every query
    rk = pd.DataFrame([{"collection": "cranfield", "ranker": r, "queries": 12,
                        "ndcg@10": float(np.mean(list(pq.values()))),
                        "mrr@10": 0.5, "map": 0.3, "train_seconds": None, "ndcg@10 per query": pq}
                       for r, pq in (("bm25", bm25), ("knrm", knrm))])
    vs = versus_reference(rk)
    assert list(vs) == [("cranfield", "knrm")]
    d = np.array([knrm[q] - bm25[q] for q in qs])
    p = wilcoxon([knrm[q] for q in qs], [bm25[q] for q in qs], zero_method="zsplit").pvalue
    assert vs[("cranfield", "knrm")].startswith(f"{d.mean():+.3f} [") and vs[("cranfield", "knrm")].endswith(
        f"p={p:.2g}, n=12")
    md = "\n".join(effectiveness_section(rk))
    assert "nDCG@10 vs bm25 [95% CI], Wilcoxon" in md and "first stage" not in md and "against the bm25 row" in md
    got = below_reference(rk)
    assert list(got) == ["knrm"] and got["knrm"][1:] == (float(np.mean(list(bm25.values()))), "bm25")
    import suites.report.answer as answer
    monkeypatch.setattr(answer, "validity_status", lambda validity, r, m: "validated (exact_shapley)")
    ev = SimpleNamespace(comparisons=SimpleNamespace(primary=pd.DataFrame(columns=["verdict"])), flags={},
                         matrix_metric="rank_deletion", df=pd.DataFrame({"docid": ["d"], "qid": ["q0"]}),
                         suite={"collection": "cranfield"}, explained=["knrm"], rankers=rk, validity=None)
    line = next(x for x in answer.not_supported(ev) if "worth deploying" in x)
    assert f"from knrm: they rank below bm25 re-ranking the same candidates (nDCG@10 knrm {got['knrm'][0]:.3f} " \
           f"against {got['knrm'][1]:.3f}" in line


def test_training_triples_on_trec_dl_use_documents_of_the_pool():
    """TREC DL judges passages outside the shipped pool: training pairs use only the pool's documents, and only
    DL 2020 (train split) queries."""
    import numpy as np

    from rankers.training import _triples
    from suites.data.collections import load_collection
    c = load_collection("trec-dl")
    t = _triples(c, np.random.default_rng(0), 2)
    train = set(c.split("train"))
    assert t and all(q in train and p in c.docs and n in c.docs and c.qrels[q][p] > 0 for q, p, n in t)
