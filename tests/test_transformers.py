"""Transformer rankers: the bundled MiniLM (offline) and tiny random BERTs built here."""
import math

import numpy as np
import pytest
import torch

from explainers import EXPLAINERS, build_explainer, collection_idf, make_pair
from metrics import MetricContext, compute_metrics
from metrics.curves import step_counts
from toys import explain_with_candidates

transformers = pytest.importorskip("transformers")


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    """A 2-layer random BERT with a one-logit head and MiniLM's tokenizer, saved locally."""
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    from rankers.transformer import default_model_path
    d = tmp_path_factory.mktemp("tiny_bert")
    tok = AutoTokenizer.from_pretrained(default_model_path(), local_files_only=True)
    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=tok.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=64, max_position_embeddings=512, num_labels=1)
    BertForSequenceClassification(cfg).save_pretrained(d)
    tok.save_pretrained(d)
    return str(d)


@pytest.fixture(scope="module")
def tiny_rankers(tiny_dir):
    from rankers.biencoder import BiEncoder
    from rankers.crossencoder import CrossEncoder
    return {"crossencoder": CrossEncoder(model=tiny_dir).eval(), "biencoder": BiEncoder(model=tiny_dir).eval()}


def _pair(cranfield):
    d = sorted(cranfield.relevant("1"), key=int)[0]
    return cranfield.query_tokens["1"], cranfield.doc_tokens[d]


def test_biencoder_matches_sentence_transformers(cranfield):
    st = pytest.importorskip("sentence_transformers")
    from rankers.biencoder import BiEncoder
    from rankers.transformer import default_model_path
    r = BiEncoder().eval()
    q, d = _pair(cranfield)
    ours = float(r.score_tokens(q, [d])[0])
    model = st.SentenceTransformer(default_model_path(), device="cpu")
    e = model.encode([" ".join(q), " ".join(d)], normalize_embeddings=True, convert_to_numpy=True)
    assert ours == pytest.approx(float(e[0] @ e[1]), abs=1e-5)


def test_gradcam_on_token_states_by_hand(tiny_rankers, cranfield):
    r = tiny_rankers["crossencoder"]
    q, d = _pair(cranfield)
    ex = build_explainer("gradcam", r).attribute(q, d[:30])
    # independent computation: the HF model on the tokenizer's own encoding, hook on the last layer
    enc = r.tok(" ".join(q), " ".join(d[:30]), return_tensors="pt", return_offsets_mapping=True)
    seq = enc.sequence_ids()
    n_q = seq.index(1)
    doc_text = " ".join(d[:30])
    word_of = [doc_text[:a].count(" ") for (a, _), s_ in zip(enc["offset_mapping"][0].tolist(), seq) if s_ == 1]
    ids, types = enc["input_ids"][0].tolist(), enc["token_type_ids"][0].tolist()
    store = {}
    h = r.model.bert.encoder.layer[-1].register_forward_hook(lambda m, i, o: store.update(a=o))
    logit = r.model(input_ids=torch.tensor([ids]), token_type_ids=torch.tensor([types])).logits[0, 0]
    h.remove()
    (g,) = torch.autograd.grad(logit, store["a"])
    a, g = store["a"][0], g[0]                         # [P, H]
    cam = torch.relu(a @ g.mean(0)).detach().numpy()   # ReLU(sum_h mean_p(grad) * A)
    want = np.zeros(30)
    for p, j in enumerate(word_of):
        want[j] += cam[n_q + p]
    np.testing.assert_allclose(ex.doc_scores, want, rtol=1e-4, atol=1e-6)
    assert ex.score == pytest.approx(float(logit.detach()), abs=1e-5)


@pytest.mark.parametrize("ranker_name", ["crossencoder", "biencoder"])
@pytest.mark.parametrize("expl_name", sorted(EXPLAINERS))
def test_every_explainer_on_transformers(expl_name, ranker_name, tiny_rankers, cranfield):
    r = tiny_rankers[ranker_name]
    ok, why = EXPLAINERS[expl_name].compatible(r)
    if not ok:
        assert why
        return
    q, d = _pair(cranfield)
    params = {"idf": collection_idf(cranfield)} if expl_name == "idf_match" else {}
    params.update({"n_samples": 20} if expl_name in ("kernel_shap", "lime") else {})
    params.update({"n_samples": 2} if expl_name == "shapley_sampling" else {})
    params.update({"n_steps": 16} if expl_name == "integrated_gradients" else {})
    a, b = (explain_with_candidates(build_explainer(expl_name, r, seed=3, **params), r, q, d) for _ in range(2))
    n = len(a.doc_tokens)
    assert a.doc_tokens == d[:n] and a.doc_scores.shape == (n,)  # word-level units
    assert np.isfinite(a.doc_scores).all()
    assert a.query_scores is None or a.query_scores.shape == (len(q),)
    assert a.pair_map is None or a.pair_map.shape == (len(q), n)
    np.testing.assert_allclose(a.doc_scores, b.doc_scores, rtol=1e-5, atol=1e-7)


def test_integrated_gradients_completeness_on_transformers(tiny_rankers, cranfield):
    q, d = _pair(cranfield)
    for r in tiny_rankers.values():
        ex = build_explainer("integrated_gradients", r, n_steps=64).attribute(q, d)
        print(f"\n{r.name}: IG completeness delta {ex.info['delta']:.2e} (score {ex.score:.4f})")
        assert ex.info["delta"] < 1e-2 * max(1e-3, abs(ex.score)) + 1e-4


def test_pooled_interaction_is_exact(tiny_rankers, cranfield):
    r = tiny_rankers["biencoder"]
    q, d = _pair(cranfield)
    ex = build_explainer("pooled_interaction", r).attribute(q, d)
    assert ex.pair_map.sum() + ex.info["special_token_share"] == pytest.approx(ex.score, rel=1e-4)


def test_crossencoder_curves_are_batched(tiny_rankers, cranfield):
    r = tiny_rankers["crossencoder"]
    q, d = _pair(cranfield)
    pair = make_pair(r, q, d)
    ex = build_explainer("saliency", r).attribute_pair(pair)
    for bs in (4, 64):
        # rank_deletion: the same K + 2 rows as deletion, and defined for any score scale
        ctx = MetricContext(r, pair, ex, batch_size=bs, other_scores=np.linspace(-1, 1, 9))
        res = compute_metrics(ctx, ["rank_deletion"], {"rank_deletion": {"max_steps": 20}})
        k = len(step_counts(len(pair.doc_tokens), 20))
        assert res["rank_deletion"].status == "ok"
        assert ctx.last_cost.forward_passes == math.ceil((k + 2) / bs)


def test_long_documents_truncated_to_model_limit(tiny_rankers):
    r = tiny_rankers["crossencoder"]
    long_doc = ["aerodynamic", "heating"] * 300
    enc = r.encode(["heating"], [long_doc, ["heating"]])
    assert enc.truncated == [True, False]
    kept = enc.n_doc[0]
    fits = len(r.tok("heating", " ".join(long_doc[:kept]))["input_ids"])
    assert fits <= r.max_length < len(r.tok("heating", " ".join(long_doc[:kept + 1]))["input_ids"])
    ex = build_explainer("saliency", r).attribute(["heating"], long_doc)
    assert ex.truncated and len(ex.doc_scores) == enc.n_doc[0]


def test_tiny_crossencoder_trains(tiny_dir, synthetic):
    from rankers.training import train
    from rankers.crossencoder import CrossEncoder
    r = CrossEncoder(model=tiny_dir)
    before = {k: v.clone() for k, v in r.state_dict().items()}
    log = train(r, synthetic, seed=0, epochs=1, n_per_query=2, batch_size=16, progress=False)
    assert log["epochs"] and np.isfinite(log["epochs"][0]["loss"])
    assert any(not torch.equal(before[k], v) for k, v in r.state_dict().items())


@pytest.mark.slow
def test_finetuned_crossencoder_beats_random(cranfield):
    from rankers.evaluate import evaluate
    from rankers.training import build_ranker, get_ranker
    ce = get_ranker("crossencoder", cranfield, seed=0, progress=False)
    res = evaluate(ce, cranfield, "test")
    rnd = evaluate(build_ranker("random", cranfield), cranfield, "test")
    assert res["ndcg@10"] > 2 * rnd["ndcg@10"]


@pytest.mark.parametrize("name", ["crossencoder", "biencoder"])
def test_delete_operator_equals_removing_the_words(tiny_dir, name):
    """removal='delete': a word with mask 0 leaves the sequence, so the score equals the score of the
    document written without it (later pieces move up); removal='pad' differs (the piece stays, as PAD)."""
    from rankers.biencoder import BiEncoder
    from rankers.crossencoder import CrossEncoder
    cls = {"crossencoder": CrossEncoder, "biencoder": BiEncoder}[name]
    dele, pad = (cls(model=tiny_dir, removal=r).eval() for r in ("delete", "pad"))
    q, d = ["pressure", "wing"], ["supersonic", "pressure", "distribution", "over", "swept", "wing"]
    drop = [1, 4]
    with torch.no_grad():
        enc = dele.encode(q, [d])
        mask = torch.ones(enc.d_ids.shape)
        mask[0, drop] = 0
        masked = float(dele(enc.q_ids, enc.d_ids, mask)[0])
        shorter = [t for i, t in enumerate(d) if i not in drop]
        e2 = dele.encode(q, [shorter])
        written = float(dele(e2.q_ids, e2.d_ids)[0])
        e3 = pad.encode(q, [d])
        padded = float(pad(e3.q_ids, e3.d_ids, mask)[0])
    assert masked == pytest.approx(written, abs=1e-5)
    assert abs(padded - written) > 1e-6
