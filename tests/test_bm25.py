import math

import pytest
import torch

from rankers.bm25 import BM25, BM25Index
from rankers.evaluate import evaluate
from rankers.text import Vocab
from rankers.training import build_ranker


def reference_bm25(query, doc, docs, k1=1.2, b=0.75):
    """Textbook BM25 written independently with dicts (test oracle)."""
    n = len(docs)
    avgdl = sum(len(d) for d in docs) / n
    s = 0.0
    for t in query:
        df = sum(1 for d in docs if t in d)
        idf = math.log(1 + (n - df + 0.5) / (df + 0.5))
        tf = doc.count(t)
        s += idf * tf * (k1 + 1) / (tf + k1 * (1 - b + b * len(doc) / avgdl))
    return s


DOCS = [["wing", "lift", "wing", "flow"], ["flow", "heat", "slab"], ["wing", "heat"], ["shock", "wave", "flow", "wave"]]


def _tiny():
    vocab = Vocab.build(DOCS)
    index = BM25Index([str(i) for i in range(len(DOCS))], DOCS, vocab)
    return index, BM25.from_index(index)


def test_bm25_matches_reference_by_hand():
    index, model = _tiny()
    q = ["wing", "flow", "unseen"]
    got = model.score_tokens(q, DOCS)
    want = [reference_bm25(q, d, DOCS) for d in DOCS]
    assert got.tolist() == pytest.approx(want, rel=1e-6)
    assert index.score_all(q).tolist() == pytest.approx(want, rel=1e-9)
    # a worked number: doc 0, 'wing' (df=2, tf=2) + 'flow' (df=3, tf=1), avgdl = 13/4
    idf_w, idf_f = math.log(1 + 2.5 / 2.5), math.log(1 + 1.5 / 3.5)
    norm = 1.2 * (0.25 + 0.75 * 4 / 3.25)
    assert got[0].item() == pytest.approx(idf_w * 2 * 2.2 / (2 + norm) + idf_f * 1 * 2.2 / (1 + norm), rel=1e-6)


def test_exact_contributions_shapley_and_loo():
    _, model = _tiny()
    enc = model.encode(["wing", "flow", "wing"], [DOCS[0]])
    shap, loo = model.exact_contributions(enc.q_ids[0], enc.d_ids[0])
    full = model(enc.q_ids, enc.d_ids).item()
    assert shap.sum().item() == pytest.approx(full, rel=1e-6)  # efficiency
    assert shap[0].item() == pytest.approx(shap[2].item())      # symmetric occurrences
    assert shap[1].item() == 0.0                                 # 'lift' not in query
    for j in range(4):
        m = torch.ones(1, 4)
        m[0, j] = 0
        # document length is held fixed under masking, so LOO = score - masked score
        assert loo[j].item() == pytest.approx(full - model(enc.q_ids, enc.d_ids, m).item(), rel=1e-6, abs=1e-9)


def test_bm25_differentiable_in_mask():
    _, model = _tiny()
    enc = model.encode(["wing"], [DOCS[0]])
    m = torch.ones(1, 4, requires_grad=True)
    model(enc.q_ids, enc.d_ids, m).sum().backward()
    assert m.grad[0, 0] > 0 and m.grad[0, 1] == 0


def test_bm25_cranfield_well_above_random_and_equal_to_the_first_stage(cranfield):
    """On Cranfield the candidates are the index's BM25 top-100: the bm25 ranker re-ranking them scores what that
    first stage scores, the report's reference row where a collection has no first stage of its own."""
    from rankers.evaluate import evaluate_run
    bm25 = evaluate(build_ranker("bm25", cranfield), cranfield, "test")
    rnd = evaluate(build_ranker("random", cranfield), cranfield, "test")
    assert bm25["queries"] == 45
    assert bm25["ndcg@10"] > 0.25 and bm25["ndcg@10"] > 3 * rnd["ndcg@10"]
    first = {q: dict(cranfield.index.retrieve(cranfield.query_tokens[q], cranfield.n_candidates))
             for q in cranfield.split("test")}
    assert evaluate_run(cranfield, first) == pytest.approx(bm25, rel=1e-9)


def test_torch_bm25_equals_index_on_cranfield(cranfield):
    model = build_ranker("bm25", cranfield)
    q = cranfield.query_tokens["5"]
    cands = cranfield.candidates("5")[:20]
    got = model.score_tokens(q, [cranfield.doc_tokens[d] for d in cands])
    idx = dict(cranfield.index.retrieve(q, 100))
    assert got.tolist() == pytest.approx([idx[d] for d in cands], rel=1e-5)
