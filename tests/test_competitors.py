"""The competitors of issue 33 by hand. Attention rollout (Abnar & Zuidema 2020): on a 1-layer toy the relevance
of a word read from [CLS] is half the [CLS] row of the head-averaged attention over its pieces (the other half is
the residual, on [CLS] itself); on 2 layers the product of the two residual-aware matrices; from the last token
for decoders. Pair occlusion: on a toy whose score is a sum of cell weights, the pair map is the weights."""
import json

import numpy as np
import pytest
import torch

from hf_tiny import DOC, QUERY, build, word_pieces

transformers = pytest.importorskip("transformers")


def _attentions(path, enc):
    m = transformers.AutoModelForSequenceClassification.from_pretrained(path, attn_implementation="eager").eval()
    x = {k: torch.tensor([v]) for k, v in enc.items() if k in ("input_ids", "attention_mask", "token_type_ids")}
    with torch.no_grad():
        return [a[0].mean(0).numpy().astype(np.float64) for a in m(**x, output_attentions=True).attentions]


@pytest.mark.parametrize("layers", [1, 2])
def test_rollout_by_hand_on_bert(layers, tmp_path):
    from explainers import build_explainer
    from rankers.crossencoder import CrossEncoder
    path = tmp_path / "bert"
    build("bert", path)
    cfg = json.loads((path / "config.json").read_text())
    (path / "config.json").write_text(json.dumps({**cfg, "num_hidden_layers": layers}))
    tok = transformers.AutoTokenizer.from_pretrained(path)
    enc, pieces = word_pieces(tok, QUERY, DOC)
    mats = [0.5 * a + 0.5 * np.eye(len(a)) for a in _attentions(str(path), enc)]   # rows already sum to 1
    r = mats[0] if layers == 1 else mats[1] @ mats[0]
    if layers == 1:  # the toy's closed form: half the [CLS] attention row
        np.testing.assert_allclose(r[0, 1:], 0.5 * _attentions(str(path), enc)[0][0, 1:], atol=1e-12)
    want = np.array([r[0, p].sum() for p in pieces])
    ex = build_explainer("attention_rollout", CrossEncoder(model=str(path)).eval()).attribute(QUERY, DOC)
    np.testing.assert_allclose(ex.doc_scores, want, atol=1e-5)
    assert np.all(ex.doc_scores > 0)


def test_rollout_reads_the_last_token_of_a_decoder(tmp_path):
    from explainers import build_explainer
    from explainers.transformer_maps import rollout
    from rankers.generative import CausalLMRanker
    r = CausalLMRanker(model=build("qwen2", tmp_path / "qwen2")).eval()
    ex = build_explainer("attention_rollout", r).attribute(QUERY, DOC)
    assert np.isfinite(ex.doc_scores).all() and ex.doc_scores.sum() > 0
    a = torch.softmax(torch.randn(1, 2, 4, 4), -1)
    reads = torch.tensor([[0.0, 0.0, 0.0, 1.0]])
    want = (0.5 * a.mean(1)[0] + 0.5 * torch.eye(4))[3]
    np.testing.assert_allclose(rollout([a], reads)[0], want.numpy(), atol=1e-6)


def test_rollout_on_late_interaction_reads_every_piece_of_the_document_pass(tmp_path):
    """Late interaction's MaxSim reads every word of the document pass, so rollout starts from the uniform row over
    its attended pieces: reads @ A'_2 A'_1 of the encoder's own attentions (computed here by the HF model)."""
    from explainers import build_explainer
    from rankers.late_interaction import LateInteraction
    path = build("bert", tmp_path / "bert")
    r = LateInteraction(model=str(path)).eval()
    ex = build_explainer("attention_rollout", r).attribute(QUERY, DOC)
    enc = r.encode(QUERY.split(), [DOC.split()])
    b, _ = r._rows(enc.d_ids, enc.d_ids)
    m = transformers.AutoModel.from_pretrained(path, attn_implementation="eager").eval()
    with torch.no_grad():
        att = m(input_ids=b.ids, attention_mask=b.attn, output_attentions=True).attentions
    a1, a2 = (0.5 * a[0].mean(0).double().numpy() + 0.5 * np.eye(b.ids.shape[1]) for a in att)
    reads = b.attn[0].double().numpy() / float(b.attn.sum())
    rel = reads @ (a2 @ a1)
    w = b.widx[0].numpy()
    np.testing.assert_allclose(ex.doc_scores, [rel[w == i].sum() for i in range(len(DOC.split()))], atol=1e-5)


def test_rollout_is_listed_and_skipped_where_there_is_no_attention(synthetic):
    from explainers import EXPLAINERS
    from rankers.training import build_ranker
    ok, why = EXPLAINERS["attention_rollout"].compatible(build_ranker("knrm", synthetic))
    assert not ok and "attention" in why


def test_pair_occlusion_by_hand_on_a_pair_additive_toy():
    """score = sum of the cells' weights: removing a cell alone drops the score by exactly its weight, so the
    pair map is the weight matrix; its column and row sums are the words' totals. One batched set of rows."""
    from explainers import build_explainer
    from toys import PairAdditiveRanker
    w = {("q1", "a"): 2.0, ("q1", "b"): -1.0, ("q2", "a"): 0.5, ("q2", "c"): 3.0}
    r = PairAdditiveRanker(["q1", "q2", "a", "b", "c"], w)
    ex = build_explainer("pair_occlusion", r, batch_size=4).attribute(["q1", "q2"], ["a", "b", "c", "a"])
    want = np.array([[2.0, -1.0, 0.0, 2.0], [0.5, 0.0, 3.0, 0.5]])
    np.testing.assert_allclose(ex.pair_map, want)
    np.testing.assert_allclose(ex.doc_scores, want.sum(0))
    np.testing.assert_allclose(ex.query_scores, want.sum(1))
    assert ex.score == pytest.approx(want.sum()) and ex.forward_rows == 9 and ex.forward_passes == 3


def test_pair_occlusion_on_knrm_matches_cell_removal(synthetic):
    from explainers import build_explainer, make_pair
    from rankers.scorer import score_chunks
    from rankers.training import build_ranker
    r = build_ranker("knrm", synthetic, 0).eval()
    q_units, d_units = synthetic.units("index")
    qid = synthetic.split("test")[0]
    pair = make_pair(r, q_units[qid], d_units[synthetic.candidates(qid)[0]])
    ex = build_explainer("pair_occlusion", r).attribute_pair(pair)
    nq, nd = ex.pair_map.shape
    i, j = nq - 1, nd // 2
    m = torch.ones(1, nq, nd)
    m[0, i, j] = 0
    full = score_chunks(r, pair.q_ids[None], pair.d_ids[None])[0]
    alone = score_chunks(r, pair.q_ids[None], pair.d_ids[None], pair_mask=m)[0]
    assert ex.pair_map[i, j] == pytest.approx(full - alone, abs=1e-6)
    assert not build_explainer("pair_occlusion", r).compatible(build_ranker("bm25", synthetic))[0]


def test_query_occlusion_by_hand_on_bm25(synthetic):
    """BM25 is a sum over query words: leaving word i out drops the score by exactly word i's term score, which
    is the score of the one-word query [word i]."""
    from explainers import build_explainer, make_pair
    from rankers.scorer import score_chunks
    from rankers.training import build_ranker
    r = build_ranker("bm25", synthetic)
    qid = next(iter(synthetic.queries))
    query = synthetic.queries[qid]
    doc = synthetic.docs[next(iter(synthetic.qrels[qid]))]
    ex = build_explainer("query_occlusion", r, batch_size=2).attribute(query, doc)
    pair = make_pair(r, query, doc)
    words = pair.q_ids.tolist()
    assert len(set(words)) == len(words)
    single = torch.zeros(len(words), len(words), dtype=pair.q_ids.dtype)
    single[:, 0] = pair.q_ids
    want = score_chunks(r, single, pair.d_ids[None].expand(len(words), -1))
    np.testing.assert_allclose(ex.query_scores, want, rtol=1e-5, atol=1e-6)
    assert ex.query_only and not ex.doc_scores.any() and ex.forward_rows == len(words) + 1


def test_query_only_explanations_skip_document_metrics(tmp_path):
    from suites.cli import main
    from suites.run.store import Store
    p = tmp_path / "s.toml"
    p.write_text('[suite]\nname = "q"\ncollection = "synthetic"\n[samples]\nqueries = 2\ntop_k = 1\nrelevant = 0\n'
                 '[rankers.bm25]\n[explainers.query_occlusion]\n[explainers.exact_shapley]\n'
                 '[metrics.rank_deletion]\nmax_steps = 4\n[metrics.query_deletion]\n')
    assert main(["run", str(p), "--out", str(tmp_path / "run"), "--quiet"]) == 0
    df = Store(tmp_path / "run" / "results.sqlite", readonly=True).results()
    qo = df[df.explainer == "query_occlusion"].set_index("metric")
    assert (qo.loc["query_deletion", "status"] == "ok").all()
    rd = qo.loc[["rank_deletion"]]
    assert (rd.status == "skipped").all() and rd.message.str.contains("explains query words only").all()
    assert (df[(df.explainer == "exact_shapley") & (df.metric == "rank_deletion")].status == "ok").all()


def test_pair_shapley_by_hand():
    """Additive toy: every marginal of a cell is its weight, so the values are the weights. A two-cell toy scoring
    the larger of its two cells: phi_a = (a + max(a, b) - b) / 2, exact with one antithetic pair. With cells grouped
    (more cells than steps) the values still sum to s(full) - s(empty)."""
    from explainers import build_explainer
    from toys import PairAdditiveRanker
    w = {("q1", "a"): 2.0, ("q1", "b"): -1.0, ("q2", "a"): 0.5, ("q2", "c"): 3.0}
    r = PairAdditiveRanker(["q1", "q2", "a", "b", "c"], w)
    ex = build_explainer("pair_shapley", r, n_samples=2, batch_size=5).attribute(["q1", "q2"], ["a", "b", "c", "a"])
    np.testing.assert_allclose(ex.pair_map, [[2.0, -1.0, 0.0, 2.0], [0.5, 0.0, 3.0, 0.5]], atol=1e-6)
    assert ex.forward_rows == 2 * 9 and ex.forward_passes == 4

    class MaxOfCells(PairAdditiveRanker):
        def forward(self, q_ids, d_ids, d_mask=None, pair_mask=None):
            cells = self.w[q_ids[:, :, None], d_ids[:, None, :]] * (pair_mask if pair_mask is not None else 1.0)
            return cells.flatten(1).max(1).values

    m = MaxOfCells(["q", "a", "b"], {("q", "a"): 3.0, ("q", "b"): 1.0})
    ex = build_explainer("pair_shapley", m, n_samples=2).attribute(["q"], ["a", "b"])
    np.testing.assert_allclose(ex.pair_map, [[(3 + 3 - 1) / 2, (1 + 3 - 3) / 2]], atol=1e-6)
    big = build_explainer("pair_shapley", r, n_samples=4, max_steps=3, seed=1).attribute(["q1", "q2"],
                                                                                        ["a", "b", "c", "a"])
    assert big.pair_map.sum() == pytest.approx(sum([2.0, -1.0, 2.0, 0.5, 3.0, 0.5]))
    assert big.forward_rows == 4 * 4 and big.info["steps"] == 3


def test_query_integrated_gradients_equals_captum_on_the_models_own_embeddings(tmp_path):
    """Query-side IG on a cross-encoder against Captum's IntegratedGradients (midpoint rule, the same steps) on the
    HF model's own forward: input embeddings of tokenizer(query, doc), baseline = the same with the query's pieces
    at zero; each query word = its pieces' attributions. Completeness: the words sum to f(x) - f(baseline) up to
    the reported delta, which shrinks with the steps."""
    from captum.attr import IntegratedGradients

    from explainers import build_explainer
    from rankers.crossencoder import CrossEncoder
    path = build("bert", tmp_path / "bert")
    ex = build_explainer("query_integrated_gradients", CrossEncoder(model=str(path)).eval(),
                         n_steps=16).attribute(QUERY, DOC)
    m = transformers.AutoModelForSequenceClassification.from_pretrained(path).eval()
    tok = transformers.AutoTokenizer.from_pretrained(path)
    enc, pieces = word_pieces(tok, QUERY, DOC, side=0)
    x = {k: torch.tensor([enc[k]]) for k in ("attention_mask", "token_type_ids")}
    with torch.no_grad():
        emb = m.get_input_embeddings()(torch.tensor([enc["input_ids"]]))
    base = emb.clone()
    base[0, [p for ps in pieces for p in ps]] = 0.0
    attr = IntegratedGradients(lambda e: m(inputs_embeds=e, **x).logits[:, 0]).attribute(
        emb, baselines=base, n_steps=16, method="riemann_middle", internal_batch_size=1)[0].sum(-1)
    want = [float(attr[ps].sum()) for ps in pieces]
    np.testing.assert_allclose(ex.query_scores, want, rtol=1e-4, atol=1e-5)
    with torch.no_grad():
        full, empty = (float(m(inputs_embeds=e, **x).logits[0, 0]) for e in (emb, base))
    assert ex.score == pytest.approx(full, abs=1e-5) and ex.info["baseline_score"] == pytest.approx(empty, abs=1e-5)
    assert ex.info["delta"] == pytest.approx(ex.query_scores.sum() - (full - empty), abs=1e-6)
    assert ex.query_only and not ex.doc_scores.any() and ex.backward_passes == 16


@pytest.mark.parametrize("kind", ["biencoder", "late_interaction"])
def test_query_integrated_gradients_is_complete_on_the_query_pass(tmp_path, kind):
    """Bi-encoder and late interaction: the query's own encoder pass; the words sum to f(x) - f(baseline) within a
    delta that shrinks with the steps."""
    from explainers import build_explainer
    from rankers.registry import ranker_spec
    r = ranker_spec(kind).cls(model=build("bert", tmp_path / "bert")).eval()
    deltas = [abs(build_explainer("query_integrated_gradients", r, n_steps=n).attribute(QUERY, DOC).info["delta"])
              for n in (2, 64)]
    assert deltas[1] < deltas[0] / 10


def test_query_integrated_gradients_is_skipped_with_a_reason_on_cosine_rankers(synthetic):
    from explainers import EXPLAINERS
    from rankers.training import build_ranker
    ok, why = EXPLAINERS["query_integrated_gradients"].compatible(build_ranker("knrm", synthetic))
    assert not ok and "encoder_inputs" in why
