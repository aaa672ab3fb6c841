"""A neural reference with known contributions (issue 32): KNRM with the exact-match kernel alone
(`kernels = "exact"`), score = w sum_i log(1 + tf_i) + b, w = softplus(raw) >= 0. Its `exact_contributions` equal Shapley values computed by
enumerating every subset of a short document, and leave-one-out marginals computed by re-scoring; the corruption
ladder of `exact_shapley` then validates the curve metrics on a KNRM, not only on bm25."""
import itertools
import math

import numpy as np
import pytest
import torch

from explainers import build_explainer, make_pair


@pytest.fixture(scope="module")
def knrm_exact(synthetic):
    from rankers.training import build_ranker
    r = build_ranker("knrm", synthetic, kernels="exact")
    with torch.no_grad():
        r.out.weight.fill_(0.7)
        r.out.bias.fill_(-0.2)
    return r.eval()


def _score(r, pair, mask):
    with torch.no_grad():
        return float(r(pair.q_ids[None], pair.d_ids[None], torch.tensor([mask], dtype=torch.float32))[0])


def test_exact_contributions_are_shapley_values_by_enumeration(knrm_exact, synthetic):
    r = knrm_exact
    assert "exact_contributions" in r.capabilities and r.config()["kernels"] == "exact"
    qid = next(iter(synthetic.queries))
    query = synthetic.query_tokens[qid]
    doc = (query[:2] + ["zzfiller"] + query[:1] + query[2:3])[:8]   # repeated matches and a non-match
    pair = make_pair(r, query, doc)
    n = len(pair.d_ids)
    v = {s: _score(r, pair, [1.0 if j in s else 0.0 for j in range(n)])
         for k in range(n + 1) for s in itertools.combinations(range(n), k)}
    phi = np.zeros(n)
    for j in range(n):
        for s, val in v.items():
            if j in s:
                continue
            with_j = tuple(sorted(s + (j,)))
            phi[j] += math.factorial(len(s)) * math.factorial(n - len(s) - 1) / math.factorial(n) * (v[with_j] - val)
    share, loo = (t.detach().numpy() for t in r.exact_contributions(pair.q_ids, pair.d_ids))
    np.testing.assert_allclose(share, phi, atol=1e-5)
    full = tuple(range(n))
    np.testing.assert_allclose(loo, [v[full] - v[tuple(i for i in full if i != j)] for j in range(n)], atol=1e-5)
    assert share.sum() == pytest.approx(v[full] - v[()], abs=1e-5) and share.max() > 0
    ex = build_explainer("exact_shapley", r).attribute(query, doc)
    np.testing.assert_allclose(ex.doc_scores, share, atol=1e-6)


def test_exact_kernel_from_ids_equals_the_exact_match_rbf(knrm_exact, synthetic):
    """Explainers that feed embeddings (no ids) get the exact-match RBF on cosines, the same scores."""
    r = knrm_exact
    qid = next(iter(synthetic.queries))
    pair = make_pair(r, synthetic.query_tokens[qid], synthetic.doc_tokens[next(iter(synthetic.qrels[qid]))])
    with torch.no_grad():
        by_ids = r(pair.q_ids[None], pair.d_ids[None])
        by_emb = r.score_embedded(pair.q_ids[None], r.embedding(pair.d_ids[None]))
    assert float(by_ids) == pytest.approx(float(by_emb), abs=1e-4)


def test_the_exact_kernel_model_reloads_from_its_checkpoint(knrm_exact, synthetic, tmp_path):
    """What the cache keeps loads again (its config says n_kernels = 1) and scores alike."""
    from rankers.training import load_checkpoint, save_ranker
    save_ranker(knrm_exact, tmp_path / "m", synthetic.name, {})
    m = load_checkpoint(tmp_path / "m", {"ranker": "knrm", "collection": synthetic.name})
    pair = make_pair(knrm_exact, synthetic.query_tokens[synthetic.split("test")[0]], synthetic.doc_tokens["d0001"])
    mask = [1.0] * len(pair.d_ids)
    assert m.kernels == "exact" and "exact_contributions" in m.capabilities
    assert _score(m, pair, mask) == _score(knrm_exact, pair, mask)


def test_gradcam_on_the_exact_kernel_by_hand(knrm_exact, synthetic):
    """Its one feature map is the match matrix K [n_query, n_doc] (read from word identity, no parameter): the
    score's gradient there is w / (1 + sum_j K_ij) on each query row, alpha its mean over the cells, and the map
    ReLU(alpha K). (The trec-dl run recorded Grad-CAM failing here: the map required no grad.)"""
    r = knrm_exact
    q = synthetic.query_tokens[synthetic.split("test")[0]]
    pair = make_pair(r, q, synthetic.doc_tokens["d0001"] + [q[0], q[0]])
    ex = build_explainer("gradcam", r).attribute_pair(pair)
    k = r._match(pair.q_ids[None], pair.d_ids[None])[0].double().numpy()
    w = float(np.log1p(np.exp(0.7)))  # softplus of the raw weight
    g = w / (1.0 + k.sum(1, keepdims=True)) * np.ones_like(k)
    np.testing.assert_allclose(ex.pair_map, np.maximum(g.mean() * k, 0.0), rtol=1e-5, atol=1e-8)
    assert ex.pair_map.sum() > 0


def test_a_match_never_lowers_the_score_and_a_free_sign_checkpoint_does_not_load(synthetic, tmp_path):
    """w = softplus(raw weight) >= 0 whatever the raw weight (on TREC DL a free sign went negative: the empty document
    above the full one); a checkpoint without the parametrisation's marker (the free-sign version) is refused."""
    from rankers.errors import BadInput
    from rankers.training import build_ranker, load_checkpoint, save_ranker
    r = build_ranker("knrm", synthetic, kernels="exact").eval()
    with torch.no_grad():
        r.out.weight.fill_(-3.0)
    q = synthetic.query_tokens[synthetic.split("test")[0]]
    pair = make_pair(r, q, q[:2] + ["zzfiller"])
    n = len(pair.d_ids)
    assert float(r._weight()) == pytest.approx(np.log1p(np.exp(-3.0)))
    assert _score(r, pair, [1.0] * n) > _score(r, pair, [0.0] * n)
    save_ranker(r, tmp_path / "m", synthetic.name, {})
    state = torch.load(tmp_path / "m" / "model.pt")
    del state["nonnegative_weight"]
    torch.save(state, tmp_path / "m" / "model.pt")
    with pytest.raises(BadInput, match="another model definition"):
        load_checkpoint(tmp_path / "m", {"ranker": "knrm", "collection": synthetic.name})


def test_pair_level_integrated_gradients_on_the_exact_kernel_by_hand(knrm_exact, synthetic):
    """Its score reads word identity, not the cosine matrix (no interaction layer: the trec-dl run recorded
    pair-level IG failing on it), so pair-level IG reads the kernel values K [n_query, n_doc] along the mask path:
    k(a) = a K, dF/dk_ij = w / (1 + a s_i) with s_i = sum_j K_ij, so cell (i, j) gets K_ij w log(1 + s_i) / s_i,
    and the map sums to w sum_i log(1 + s_i) = the full score less the empty one."""
    r = knrm_exact
    assert r.interaction_layer is None and "interaction_layer" not in r.capabilities
    q = synthetic.query_tokens[synthetic.split("test")[0]]
    pair = make_pair(r, q, synthetic.doc_tokens["d0001"] + [q[0], q[0]])
    ex = build_explainer("integrated_gradients", r, n_steps=50, pair_map=True).attribute_pair(pair)
    k = r._match(pair.q_ids[None], pair.d_ids[None])[0].double().numpy()
    s = k.sum(1, keepdims=True)
    w = float(np.log1p(np.exp(0.7)))
    want = k * w * np.where(s > 0, np.log1p(s) / np.maximum(s, 1e-12), 0.0)
    np.testing.assert_allclose(ex.pair_map, want, rtol=1e-4, atol=1e-7)
    n = len(pair.d_ids)
    assert ex.pair_map.sum() == pytest.approx(_score(r, pair, [1.0] * n) - _score(r, pair, [0.0] * n), rel=1e-4)
    assert want.sum() > 0
