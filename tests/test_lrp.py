"""AttnLRP written natively (`explainers.lrp`), checked by hand: on a 1-layer attention toy the relevances equal
the explicit LRP computation (epsilon-rule on linear maps, the identity rule on GELU, the uniform rule on the two
attention products, AttnLRP's softmax rule); on a tiny BERT cross-encoder without biases the relevance is conserved
from the score to the input embeddings up to what the softmax rule absorbs (its bias term), as the rules promise;
the explainer's word scores are the sums of its pieces' relevances on a cross-encoder, a bi-encoder and a decoder."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from hf_tiny import DOC, QUERY, build, word_pieces

transformers = pytest.importorskip("transformers")


def _toy(seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(3, 4, generator=g, dtype=torch.float64)
    wq, wk, wv = (torch.randn(4, 4, generator=g, dtype=torch.float64) for _ in range(3))
    w = torch.randn(4, generator=g, dtype=torch.float64)
    return x, wq, wk, wv, w


def _toy_forward(x, wq, wk, wv, w):
    q, k, v = x @ wq, x @ wk, x @ wv
    a = torch.softmax(q @ k.T, -1)
    return (F.gelu(a @ v).sum(0) * w).sum()


def _explicit_lrp(x, wq, wk, wv, w):
    """The same toy's LRP written out rule by rule (numpy, no autograd)."""
    from scipy.special import erf
    x, wq, wk, wv, w = (t.numpy() for t in (x, wq, wk, wv, w))
    q, k, v = x @ wq, x @ wk, x @ wv
    s = q @ k.T
    a = np.exp(s - s.max(1, keepdims=True))
    a /= a.sum(1, keepdims=True)
    h = a @ v
    gelu = 0.5 * h * (1 + erf(h / np.sqrt(2)))
    r_h = gelu * w                                    # f = sum_ik gelu(h_ik) w_k; identity rule through GELU
    z = a[:, :, None] * v[None, :, :]                 # h_ik = sum_j a_ij v_jk
    share = z / h[:, None, :] * r_h[:, None, :]       # epsilon-rule (epsilon -> 0) onto each product a_ij v_jk
    r_a, r_v = 0.5 * share.sum(2), 0.5 * share.sum(0)  # uniform rule: half to each factor
    r_s = s * (r_a - a * r_a.sum(1, keepdims=True))   # AttnLRP's softmax rule, x (R - s sum R)
    zs = q[:, None, :] * k[None, :, :]                # s_ij = sum_c q_ic k_jc
    shs = zs / s[:, :, None] * r_s[:, :, None]
    r_q, r_k = 0.5 * shs.sum(1), 0.5 * shs.sum(0)

    def linear(r_out, wm):                            # y = x @ wm: R_x[j, m] = sum_c x_jm wm_mc / y_jc R_y[j, c]
        y = x @ wm
        return (x[:, :, None] * wm[None, :, :] / y[:, None, :] * r_out[:, None, :]).sum(2)

    return (linear(r_q, wq) + linear(r_k, wk) + linear(r_v, wv)).sum(1)


def test_attnlrp_equals_explicit_lrp_on_a_one_layer_toy():
    from explainers.lrp import attnlrp_relevance
    x, wq, wk, wv, w = _toy()
    xin = x.clone().requires_grad_()
    score, (rel,) = attnlrp_relevance(lambda: (_toy_forward(xin, wq, wk, wv, w), [xin]))
    assert float(score) == pytest.approx(float(_toy_forward(x, wq, wk, wv, w)))
    np.testing.assert_allclose(rel.detach().numpy(), _explicit_lrp(x, wq, wk, wv, w), rtol=1e-9, atol=1e-12)
    # and it is not plain gradient x input
    xg = x.clone().requires_grad_()
    _toy_forward(xg, wq, wk, wv, w).backward()
    assert not np.allclose((xg * xg.grad).sum(1).detach().numpy(), rel.detach().numpy())


def _bias_free_bert(path):
    m = transformers.AutoModelForSequenceClassification.from_pretrained(path).eval()
    with torch.no_grad():
        for mod in m.modules():
            if getattr(mod, "bias", None) is not None:
                mod.bias.zero_()
        m.bert.embeddings.position_embeddings.weight.zero_()
        m.bert.embeddings.token_type_embeddings.weight.zero_()
    return m


@pytest.mark.parametrize("attn", ["eager", "sdpa"])
def test_relevance_is_conserved_up_to_the_softmax_bias_term(tmp_path, attn):
    """Without biases every rule but softmax's conserves relevance, so: score = relevance at the input embeddings
    + what the softmax calls absorb (the relevance they receive minus what they pass on). The same under eager
    and SDPA attention (the SDPA call is computed explicitly)."""
    from explainers.lrp import attnlrp_relevance, frozen
    path = build("bert", tmp_path / "bert")
    m = _bias_free_bert(path)
    m.set_attn_implementation(attn)
    tok = transformers.AutoTokenizer.from_pretrained(path)
    ids = torch.tensor([tok(QUERY, DOC)["input_ids"]])
    record: list = []
    with frozen(m):
        e = m.get_input_embeddings()(ids).detach().requires_grad_()
        score, (rel,) = attnlrp_relevance(lambda: (m(inputs_embeds=e).logits[0, 0], [e]), record)
    absorbed = sum(received - passed for received, passed in record)
    assert len(record) == 2                                       # one softmax per layer
    assert float(rel.sum()) + absorbed == pytest.approx(float(score), rel=1e-4, abs=1e-5)


def test_attnlrp_words_sum_their_pieces_on_a_cross_encoder(tmp_path):
    from explainers import build_explainer
    from explainers.lrp import attnlrp_relevance, frozen
    from rankers.crossencoder import CrossEncoder
    path = build("bert", tmp_path / "bert")
    r = CrossEncoder(model=str(path)).eval()
    ex = build_explainer("attnlrp", r).attribute(QUERY, DOC)
    m = transformers.AutoModelForSequenceClassification.from_pretrained(path).eval()
    tok = transformers.AutoTokenizer.from_pretrained(path)
    enc, pieces = word_pieces(tok, QUERY, DOC)
    x = {k: torch.tensor([enc[k]]) for k in ("attention_mask", "token_type_ids")}
    with frozen(m):
        e = m.get_input_embeddings()(torch.tensor([enc["input_ids"]])).detach().requires_grad_()
        score, (rel,) = attnlrp_relevance(lambda: (m(inputs_embeds=e, **x).logits[0, 0], [e]))
    want = np.array([float(rel[0, p].sum()) for p in pieces])
    assert ex.score == pytest.approx(float(score), abs=1e-5)
    np.testing.assert_allclose(ex.doc_scores, want, rtol=1e-4, atol=1e-6)
    assert ex.query_scores is not None and len(ex.query_scores) == len(ex.query_tokens)
    assert all(p.requires_grad for p in r.parameters())          # the parameters are given back


@pytest.mark.parametrize("kind", ["biencoder", "decoder"])
def test_attnlrp_runs_on_a_bi_encoder_and_a_decoder(tmp_path, kind):
    from explainers import build_explainer
    if kind == "biencoder":
        from rankers.biencoder import BiEncoder
        r = BiEncoder(model=build("bert", tmp_path / "bert")).eval()
    else:
        from rankers.generative import CausalLMRanker
        r = CausalLMRanker(model=build("qwen2", tmp_path / "qwen2")).eval()
    ex = build_explainer("attnlrp", r).attribute(QUERY, DOC)
    assert ex.doc_scores.shape == (len(ex.doc_tokens),) and np.isfinite(ex.doc_scores).all()
    assert np.ptp(ex.doc_scores) > 0 and ex.forward_passes >= 1


def test_attnlrp_on_late_interaction_conserves_relevance_through_maxsim(tmp_path):
    """Late interaction: both texts' encoder passes, the cosine (identity rule on the norm), the product of the
    query's and the document's word vectors (uniform rule) and MaxSim (the maximum passes all to its argmax).
    Bias-free, score = relevance at every piece of both passes + what the softmax calls absorb; the explainer's
    word scores are their pieces' relevance (special tokens, which the word vectors do not pool, left out)."""
    from explainers import build_explainer
    from explainers.lrp import attnlrp_relevance, frozen
    from rankers.late_interaction import LateInteraction
    path = build("bert", tmp_path / "bert")
    r = LateInteraction(model=str(path)).eval()
    with torch.no_grad():
        for mod in r.encoder_model.modules():
            if getattr(mod, "bias", None) is not None:
                mod.bias.zero_()
        r.encoder_model.embeddings.position_embeddings.weight.zero_()
        r.encoder_model.embeddings.token_type_embeddings.weight.zero_()
    enc = r.encode(QUERY.split(), [DOC.split()])
    seen, record, orig = [], [], r._run

    def run(side, embeds, b):
        e = embeds.detach().requires_grad_()
        seen.append((side, e, b))
        return orig(side, e, b)
    r._run = run
    try:
        with frozen(r):
            score, rels = attnlrp_relevance(lambda: (r(enc.q_ids, enc.d_ids)[0], [e for _, e, _ in seen]), record)
    finally:
        del r._run
    assert [s for s, _, _ in seen] == ["query", "doc"] and len(record) == 4   # two passes of two layers
    absorbed = sum(received - passed for received, passed in record)
    assert float(sum(x.sum() for x in rels)) + absorbed == pytest.approx(float(score), rel=1e-4, abs=1e-5)
    ex = build_explainer("attnlrp", r).attribute(QUERY.split(), DOC.split())
    assert ex.score == pytest.approx(float(score), abs=1e-5)
    for (_, _, b), rel, words in zip(seen, rels, (ex.query_scores, ex.doc_scores)):
        w = b.widx[0].numpy()
        want = [float(rel[0, w == i].sum()) for i in range(len(words))]
        np.testing.assert_allclose(words, want, rtol=1e-4, atol=1e-6)


def test_attnlrp_is_skipped_with_a_reason_where_the_score_reads_no_encoder_inputs(synthetic):
    from explainers import EXPLAINERS
    from rankers.training import build_ranker
    ok, why = EXPLAINERS["attnlrp"].compatible(build_ranker("knrm", synthetic))
    assert not ok and "encoder_inputs" in why
