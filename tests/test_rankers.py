import pytest
import torch

from rankers import RANKERS
from rankers.errors import BadInput
from rankers.training import build_ranker, get_ranker, load_checkpoint, save_ranker, train


@pytest.mark.parametrize("name", ["knrm", "matchpyramid", "random", "bm25"])
def test_forward_shapes_and_mask(name, synthetic):
    m = build_ranker(name, synthetic)
    docs = [synthetic.doc_tokens[d] for d in synthetic.candidates("q001")[:5]]
    enc = m.encode(synthetic.query_tokens["q001"], docs)
    s = m(enc.q_ids, enc.d_ids)
    assert s.shape == (5,) and torch.isfinite(s).all()
    ones = torch.ones(enc.d_ids.shape)
    assert torch.allclose(m(enc.q_ids, enc.d_ids, ones), s, atol=1e-6)
    # padding a document with extra PAD columns does not change its score
    pad = torch.nn.functional.pad(enc.d_ids, (0, 7))
    assert torch.allclose(m(enc.q_ids, pad), s, atol=1e-5)


@pytest.mark.parametrize("name", ["knrm", "matchpyramid"])
def test_feature_layer_is_aligned(name, synthetic):
    m = build_ranker(name, synthetic)
    enc = m.encode(["wing", "flow"], [["a1", "b2", "c3", "d4", "e5"]])
    seen = {}
    m.feature_layer.register_forward_hook(lambda mod, i, o: seen.setdefault("a", o))
    m.interaction_layer.register_forward_hook(lambda mod, i, o: seen.setdefault("s", o))
    m(enc.q_ids, enc.d_ids)
    assert seen["a"].shape[0] == 1 and seen["a"].shape[2:] == (2, 5)
    assert seen["s"].shape == (1, 2, 5)


def test_checkpoint_round_trip_exact(tmp_path, small_knrm, synthetic):
    save_ranker(small_knrm, tmp_path / "ck", "synthetic")
    again = load_checkpoint(tmp_path / "ck")
    docs = [synthetic.doc_tokens[d] for d in synthetic.candidates("q002")[:10]]
    q = synthetic.query_tokens["q002"]
    assert torch.equal(small_knrm.score_tokens(q, docs), again.score_tokens(q, docs))


def test_same_seed_same_weights(synthetic):
    a, b = (build_ranker("matchpyramid", synthetic, seed=1) for _ in range(2))
    for m in (a, b):
        train(m, synthetic, seed=1, epochs=1, n_per_query=5, progress=False)
    for (ka, va), (_, vb) in zip(a.state_dict().items(), b.state_dict().items()):
        assert torch.equal(va, vb), ka


def test_get_ranker_trains_once_then_loads(synthetic):
    first = get_ranker("knrm", synthetic, seed=3, progress=False)  # trains and caches
    again = get_ranker("knrm", synthetic, seed=3, progress=False)  # loads the checkpoint
    assert first.train_log == again.train_log and first.train_log["epochs"]
    q, docs = synthetic.query_tokens["q003"], [synthetic.doc_tokens[d] for d in synthetic.candidates("q003")[:8]]
    assert torch.equal(first.score_tokens(q, docs), again.score_tokens(q, docs))
    assert {"bm25", "knrm", "matchpyramid", "random"} <= set(RANKERS)
    with pytest.raises(BadInput, match="valid: biencoder, bm25"):
        get_ranker("bert", synthetic)


def test_a_cached_checkpoint_of_another_training_recipe_is_not_reused(synthetic, small_knrm, capsys, monkeypatch):
    """Changing a ranker's training defaults (a new rexbench) retrains the cached model instead of silently
    reusing one trained with the old recipe; without training allowed it is a one-line error."""
    from rankers.identity import training_code
    from rankers.training import cached_checkpoint, training_hyperparameters
    monkeypatch.setattr(type(small_knrm), "train_defaults", {"epochs": 1, "n_per_query": 2}, raising=False)
    path = cached_checkpoint("knrm", synthetic, 7)
    now = training_hyperparameters(type(small_knrm))
    save_ranker(small_knrm, path, "synthetic", {"hyperparameters": now, "epochs": [], "code": training_code()})
    same = get_ranker("knrm", synthetic, seed=7, train_if_missing=False)       # same recipe: loaded
    assert same.train_log["hyperparameters"] == now
    save_ranker(small_knrm, path, "synthetic", {"hyperparameters": {**now, "epochs": now["epochs"] + 1},
                                                "epochs": [], "code": training_code()})
    with pytest.raises(BadInput, match=r"other hyper-parameters \(epochs = "):
        get_ranker("knrm", synthetic, seed=7, train_if_missing=False)
    fresh = get_ranker("knrm", synthetic, seed=7, progress=False)               # retrained, replaced
    assert "retraining knrm" in capsys.readouterr().err
    assert fresh.train_log["hyperparameters"] == now and fresh.train_log["epochs"]
    assert load_checkpoint(path).train_log["hyperparameters"] == now
    # a cache entry of an older model definition (its weights no longer load): the same, retrained and replaced
    state = torch.load(path / "model.pt")
    state["stray"] = torch.zeros(1)
    torch.save(state, path / "model.pt")
    with pytest.raises(BadInput, match="another model definition.*rexbench train"):
        get_ranker("knrm", synthetic, seed=7, train_if_missing=False)
    capsys.readouterr()
    again = get_ranker("knrm", synthetic, seed=7, progress=False)
    err = capsys.readouterr().err
    assert "cannot be loaded" in err and err.count(str(path)) == 1 and again.train_log["epochs"]  # one line, one path
    assert "stray" not in torch.load(path / "model.pt")


def test_a_cached_model_of_other_training_code_is_retrained(synthetic, small_knrm, capsys, monkeypatch):
    """The training code's digest (`identity.training_code`: the rankers package without docstrings and comments)
    is in a cached model's log; a model trained by other code (or before the digest was recorded) is retrained,
    named in one line, and without training allowed it is a one-line error."""
    from rankers.identity import code_text, training_code
    from rankers.training import cached_checkpoint, training_hyperparameters
    assert code_text('def f(x):\n    """doc"""\n    # a comment\n    return x  # why\n') == code_text(
        "def f(x):\n    return x\n") != code_text("def f(x):\n    return -x\n")
    monkeypatch.setattr(type(small_knrm), "train_defaults", {"epochs": 1, "n_per_query": 2}, raising=False)
    path = cached_checkpoint("knrm", synthetic, 8)
    hp = training_hyperparameters(type(small_knrm))
    save_ranker(small_knrm, path, "synthetic", {"hyperparameters": hp, "epochs": [], "code": training_code()})
    assert get_ranker("knrm", synthetic, seed=8, train_if_missing=False).train_log["code"] == training_code()
    for old in ("0123456789abcdef", None):
        save_ranker(small_knrm, path, "synthetic", {"hyperparameters": hp, "epochs": [],
                                                    **({"code": old} if old else {})})
        with pytest.raises(BadInput, match=f"other training code .{old or 'not recorded'}; now {training_code()}"):
            get_ranker("knrm", synthetic, seed=8, train_if_missing=False)
    capsys.readouterr()
    fresh = get_ranker("knrm", synthetic, seed=8, progress=False)                # retrained and replaced
    err = capsys.readouterr().err
    assert "retraining knrm" in err and "other training code" in err and len(err.strip().splitlines()) == 1
    assert fresh.train_log["code"] == load_checkpoint(path).train_log["code"] == training_code()


def test_bad_input(synthetic):
    m = build_ranker("bm25", synthetic)
    with pytest.raises(BadInput, match="empty query"):
        m.encode([], [["x"]])
    with pytest.raises(BadInput, match="empty document"):
        m.encode(["x"], [[]])


def test_long_documents_truncated_and_recorded(synthetic):
    m = build_ranker("knrm", synthetic)
    enc = m.encode(["a1"], [["w"] * (m.max_doc_len + 50), ["w"] * 3])
    assert enc.truncated == [True, False] and enc.n_doc == [m.max_doc_len, 3]


def test_trained_knrm_beats_random_on_synthetic(small_knrm, synthetic):
    from rankers.evaluate import evaluate
    assert evaluate(small_knrm, synthetic, "test")["ndcg@10"] > 2 * evaluate(build_ranker("random", synthetic),
                                                                            synthetic, "test")["ndcg@10"]


@pytest.mark.slow
@pytest.mark.parametrize("name", ["knrm", "matchpyramid"])
def test_neural_rankers_on_cranfield(name, cranfield):
    from rankers.evaluate import evaluate
    m = build_ranker(name, cranfield)
    log = train(m, cranfield, progress=False)
    assert log["seconds"] < 180
    res = evaluate(m, cranfield, "test")
    rnd = evaluate(build_ranker("random", cranfield), cranfield, "test")
    assert res["ndcg@10"] > 3 * rnd["ndcg@10"]


@pytest.mark.parametrize("name", ["knrm", "matchpyramid", "bm25", "random"])
def test_shared_row_fast_path_equals_plain_batch(name, synthetic):
    m = build_ranker(name, synthetic)
    enc = m.encode(synthetic.query_tokens["q004"], [synthetic.doc_tokens[synthetic.candidates("q004")[0]]])
    masks = (torch.rand(6, enc.d_ids.shape[1], generator=torch.Generator().manual_seed(0)) > 0.4).float()
    q, d = enc.q_ids.expand(6, -1), enc.d_ids.expand(6, -1)  # stride-0 rows: the fast path
    fast = m(q, d, masks)
    plain = m(q.contiguous(), d.contiguous(), masks)
    assert torch.allclose(fast, plain, atol=1e-5)


@pytest.mark.slow
def test_knrm_ranks_the_empty_document_last_on_cranfield(cranfield, capsys):
    """Removing every token lowers KNRM's score: the empty document ranks below >= 95% of the
    candidates in >= 95% of the Cranfield test queries (trains KNRM, minutes)."""
    from rankers.evaluate import evaluate
    res = evaluate(get_ranker("knrm", cranfield, seed=0, progress=False), cranfield, "test", empty=True)
    with capsys.disabled():
        print(f"\nknrm on cranfield/test: nDCG@10 {res['ndcg@10']:.4f}; empty document below 95% of the candidates "
              f"in {res['empty_below_95']:.0%} of queries (mean share of candidates above it {res['empty_below_mean']:.3f})")
    assert res["empty_below_95"] >= 0.95


def test_pseudo_queries_from_the_documents_themselves():
    """Inverse-cloze triples: a document's first sentence is the query, the rest of it the positive, the rest
    of a lower BM25 hit the negative; no document keeps its first sentence, so its presence tells nothing."""
    import numpy as np

    from rankers.text import analyze
    from rankers.training import PseudoQueries
    from suites.data.collections import Collection
    topics = ["wing flutter", "boundary layer", "shock wave", "heat transfer", "jet noise", "panel buckling",
              "cone drag", "slip flow", "nozzle thrust", "rotor blade", "plate vibration", "gas mixture",
              "vortex sheet", "cylinder wake"]
    filler = "the results are compared with measurements made in a wind tunnel at several speeds"
    docs = {str(i + 1): f"On {t} of a Model . The {t} was studied;\nits {t} shows {filler}."
            for i, t in enumerate(topics)}
    docs["15"] = "no sentence break in this document at all " + filler   # no first sentence: left out
    docs["16"] = "Short . " + filler                                       # a one-word lead: left out
    coll = Collection("toy", docs, {"1": "wing flutter"}, {"1": {"1": 1}})
    pq = PseudoQueries(coll, "words")
    assert set(pq.items) == {str(i + 1) for i in range(len(topics))}
    lead, rest = pq.items["1"]
    assert lead == analyze("words", "On wing flutter of a Model")
    assert rest == analyze("words", f"The wing flutter was studied;\nits wing flutter shows {filler}.")
    rng = np.random.default_rng(0)
    trip = pq.triples(rng, 5)
    assert len(trip) == 5
    by_lead = {tuple(v[0]): d for d, v in pq.items.items()}
    for q, pos, neg in trip:
        d = by_lead[tuple(q)]
        assert pos == pq.items[d][1] and neg != pos
        assert any(neg == pq.items[x][1] for x in pq.negatives(d)) and d not in pq.negatives(d)
    again = PseudoQueries(coll, "words").triples(np.random.default_rng(0), 5)
    assert again == trip


@pytest.mark.slow
def test_shipped_crossencoder_beats_bm25_and_ranks_the_empty_document_last(cranfield, capsys):
    """#20's bar for the cross-encoder rexbench trains (its defaults, seed 0; about 35 minutes on 2 CPU
    cores): nDCG@10 on Cranfield test at least BM25's on the same candidates, and its empty document
    below >= 95% of the candidates in >= 95% of the test queries."""
    from rankers.evaluate import evaluate
    ce = evaluate(get_ranker("crossencoder", cranfield, seed=0, progress=False), cranfield, "test", empty=True)
    bm25 = evaluate(build_ranker("bm25", cranfield), cranfield, "test")
    with capsys.disabled():
        print(f"\ncrossencoder on cranfield/test: nDCG@10 {ce['ndcg@10']:.4f} (bm25 {bm25['ndcg@10']:.4f}); empty "
              f"document below 95% of the candidates in {ce['empty_below_95']:.0%} of queries")
    assert ce["ndcg@10"] >= bm25["ndcg@10"]
    assert ce["empty_below_95"] >= 0.95


def test_knrm_training_starts_its_head_near_zero_seeded_and_an_older_recipe_is_stale(synthetic):
    """`head_init` a: the scoring head is drawn from U(-a, a) with bias 0 when training starts (a learning rate of
    0 keeps the start: |w| <= a, b = 0), from the training seed (the same seed, the same head); a checkpoint
    trained before the option existed (nn.Linear's own init) is stale and retrained, named in one line."""
    import torch

    from rankers.identity import training_code
    from rankers.neural import HEAD_INIT
    from rankers.training import build_ranker, stale_training, train, training_hyperparameters
    heads = []
    for _ in range(2):
        m = build_ranker("knrm", synthetic, seed=3)
        assert m.out.weight.abs().max() > HEAD_INIT          # nn.Linear's init (1/sqrt(11)) before training
        train(m, synthetic, seed=3, epochs=1, n_per_query=2, lr=0.0, emb_lr=0.0, head_lr=0.0, progress=False)
        assert float(m.out.weight.abs().max()) <= HEAD_INIT and float(m.out.bias.abs().max()) == 0.0
        heads.append(m.out.weight.detach().clone())
    assert torch.equal(heads[0], heads[1])
    old = {k: v for k, v in training_hyperparameters(type(m)).items() if k != "head_init"}
    m.train_log = {"hyperparameters": old, "code": training_code()}
    assert stale_training(m, type(m)) == f"other hyper-parameters (head_init = None, now {HEAD_INIT!r})"
