import hashlib
import json

import pytest

from rankers.errors import BadInput
from suites.data.collections import load_collection, load_cranfield, make_synthetic, relevance_from_code


def test_cranfield_counts(cranfield):
    assert len(cranfield.docs) == 1400
    assert len(cranfield.queries) == 225
    assert sum(len(v) for v in cranfield.qrels.values()) == 1837
    assert set(cranfield.qrels) == set(cranfield.queries)  # every query judged
    assert set(cranfield.docs) == {str(i) for i in range(1, 1401)}


def test_cranfield_query_ordinals_not_dot_i_numbers(cranfield):
    # cran.qry's third record is '.I 004'; cranqrel calls it query 3 (its ordinal).
    assert cranfield.queries["3"].startswith("what problems of heat conduction in composite slabs")
    assert cranfield.queries["1"].startswith("what similarity laws must be obeyed")
    assert list(cranfield.queries) == [str(i) for i in range(1, 226)]
    # first cranqrel line: '1 184 2' -> graded relevance 5 - 2 = 3
    assert cranfield.qrels["1"]["184"] == 3


def test_relevance_codes(cranfield):
    assert [relevance_from_code(c) for c in (1, 2, 3, 4, -1)] == [4, 3, 2, 1, 0]
    zeros = sum(1 for q in cranfield.qrels.values() for r in q.values() if r == 0)
    assert zeros == 225  # one -1 line per query


def test_splits_deterministic_and_disjoint(cranfield):
    tr, dv, te = (cranfield.split(s) for s in ("train", "dev", "test"))
    assert (len(tr), len(dv), len(te)) == (135, 45, 45)
    assert not (set(tr) & set(dv)) and not (set(tr) & set(te)) and not (set(dv) & set(te))
    assert te[:3] == ["5", "10", "15"] and dv[:3] == ["1", "6", "11"]
    with pytest.raises(BadInput, match="valid"):
        cranfield.split("validation")


def test_candidates_are_bm25_top100(cranfield):
    c = cranfield.candidates("1")
    assert len(c) == 100 and len(set(c)) == 100
    scores = cranfield.index.score_all(cranfield.query_tokens["1"])
    top = sorted(range(1400), key=lambda i: -scores[i])[:100]
    assert set(c) == {str(i + 1) for i in top}


def test_missing_data_dir_says_how_to_get_it(tmp_path, monkeypatch):
    import builtins
    real_import = builtins.__import__

    def no_irds(name, *a, **k):
        if name == "ir_datasets":
            raise ImportError(name)
        return real_import(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", no_irds)
    with pytest.raises(BadInput, match="REXBENCH_DATA"):
        load_cranfield(tmp_path)


def test_unknown_collection_lists_valid():
    with pytest.raises(BadInput, match="cranfield.*synthetic"):
        load_collection("robust04")


def _digest(c):
    return hashlib.sha256(json.dumps([c.docs, c.queries, c.qrels, sorted(map(list, c.rationales.items()))])
                          .encode()).hexdigest()


def test_synthetic_same_seed_same_bytes():
    assert _digest(make_synthetic(3)) == _digest(make_synthetic(3))
    assert _digest(make_synthetic(3)) != _digest(make_synthetic(4))


def test_synthetic_rationales_point_at_query_terms(synthetic):
    assert synthetic.rationales
    for (q, d), pos in synthetic.rationales.items():
        qterms = set(synthetic.query_tokens[q])
        toks = synthetic.doc_tokens[d]
        assert pos and all(toks[p] in qterms for p in pos)
        # every query-term occurrence in a relevant doc is a recorded rationale
        assert sorted(pos) == [i for i, t in enumerate(toks) if t in qterms]
        assert synthetic.qrels[q][d] > 0
    # near-miss documents are judged non-relevant and hold exactly one query term
    q = "q001"
    nonrel = [d for d, r in synthetic.qrels[q].items() if r == 0]
    assert nonrel and all(sum(t in synthetic.query_tokens[q] for t in synthetic.doc_tokens[d]) == 1 for d in nonrel)
