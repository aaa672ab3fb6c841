"""lirme and exs against closed forms: on an additive ranker the score is linear in word presence, so a
weighted least-squares surrogate recovers the word weights exactly."""
import numpy as np
import pytest

from explainers import build_explainer, make_pair
from explainers.surrogate import cosine_kernel, presence_samples, weighted_ridge
from tests.toys import AdditiveRanker

W = {"a": 2.0, "b": -1.0, "c": 0.5, "d": 0.0, "e": 3.0}


def test_weighted_ridge_recovers_a_linear_function_and_ignores_the_intercept():
    rng = np.random.default_rng(0)
    z = presence_samples(6, 200, rng)
    c_true = np.array([1.0, -2.0, 0.0, 0.5, 4.0, -1.0])
    y = 7.0 + z @ c_true
    w = cosine_kernel(z, 0.5)
    assert np.allclose(weighted_ridge(z, y, w, 0.0), c_true, atol=1e-8)
    # the penalty shrinks the coefficient vector's norm below the unpenalised fit's
    assert np.linalg.norm(weighted_ridge(z, y, w, 10.0)) < np.linalg.norm(c_true)


def test_cosine_kernel_by_hand():
    z = np.array([[1, 1, 1, 1], [1, 1, 0, 0], [0, 0, 0, 0]], dtype=float)
    # cos(ones, ones) = 1; cos([1,1,0,0], ones) = 2 / (sqrt 2 * 2) = 1/sqrt 2; empty: D = 1
    d = np.array([0.0, 1 - 1 / np.sqrt(2), 1.0])
    assert np.allclose(cosine_kernel(z, 0.5), np.exp(-d ** 2 / 0.25))


def test_presence_samples_start_with_the_full_document_and_vary_the_rate():
    z = presence_samples(50, 300, np.random.default_rng(1))
    assert z.shape == (300, 50) and z[0].all()
    kept = z[1:].mean(1)
    assert kept.min() < 0.2 and kept.max() > 0.8  # dense and sparse perturbations both sampled


def test_lirme_recovers_additive_weights():
    r = AdditiveRanker(W)
    doc = ["a", "b", "c", "d", "e", "a"]
    e = build_explainer("lirme", r, n_samples=120, alpha=0.0).attribute(["a"], doc)
    assert np.allclose(e.doc_scores, [W[t] for t in doc], atol=1e-6)
    assert e.score == pytest.approx(sum(W[t] for t in doc))
    assert e.forward_rows == 120


def _exs(target, cands):
    r = AdditiveRanker(W)
    doc = ["a", "b", "c", "e"]
    pair = make_pair(r, ["a"], doc)
    pair.candidates = [list(doc)] + cands  # the explained document itself is not a competitor
    return doc, build_explainer("exs", r, n_samples=150, alpha=0.0, target=target).attribute_pair(pair)


def test_exs_score_target_is_the_scaled_score_when_no_sample_leaves_the_candidates_range():
    # candidate scores -1 (["b"]) and 5.5 (["a", "c", "e"]): every perturbed score of doc lies in [-1, 5.5],
    # so y = (s + 1) / 6.5 exactly and the coefficients are the weights / 6.5
    doc, e = _exs("score", [["b"], ["a", "c", "e"]])
    assert np.allclose(e.doc_scores, [W[t] / 6.5 for t in doc], atol=1e-6)
    assert e.info["k"] == 2


def test_exs_rank_target_by_hand_on_one_competitor():
    # one competitor scoring 2.5: y = 1 if the perturbed score > 2.5. "e" (3.0) alone decides most of it,
    # and the surrogate of a step function is not exact, but "e" must carry the largest coefficient
    doc, e = _exs("rank", [["c", "a"]])
    assert int(np.argmax(e.doc_scores)) == doc.index("e")
    assert e.forward_rows == 150 + 1


def test_exs_without_candidates_is_incompatible():
    from explainers import Incompatible
    r = AdditiveRanker(W)
    with pytest.raises(Incompatible):
        build_explainer("exs", r).attribute(["a"], ["a", "b"])


def test_lirme_and_exs_in_a_suite_are_scored(tmp_path):
    """The runner gives exs the query's ranking; both are scored by the term-level curves."""
    from tests.toys import run_suite_text
    df = run_suite_text(tmp_path, '[suite]\nname = "s"\ncollection = "synthetic"\n[samples]\nqueries = 2\ntop_k = 1\n'
                        'relevant = 0\n[rankers.bm25]\n[explainers.lirme]\nn_samples = 64\n[explainers.exs]\n'
                        'n_samples = 64\n[metrics.rank_deletion]\n')
    rd = df[df.metric == "rank_deletion"]
    assert set(rd.explainer) == {"lirme", "exs"} and (rd.status == "ok").all(), rd.message.tolist()
    assert rd.value.between(0, 1).all()


def test_a_ranker_table_can_skip_explainers_and_metrics(tmp_path):
    """`skip` leaves suite explainers/metrics out for one ranker: recorded as skipped rows with the reason."""
    from suites.run.config import load_suite
    from suites.run.execute import SKIPPED_BY_SUITE
    from tests.toys import run_suite_text
    text = ('[suite]\nname = "s"\ncollection = "synthetic"\n[samples]\nqueries = 2\ntop_k = 2\nrelevant = 0\n'
            '[rankers.bm25]\n[rankers.bm25_b]\ntype = "bm25"\nskip = ["lime", "listwise_tau"]\n'
            '[explainers.lime]\nn_samples = 32\n[explainers.random]\n[metrics.rank_deletion]\n'
            '[metrics.listwise_tau]\nk = 2\n')
    df = run_suite_text(tmp_path, text)
    mine = df[df.message == SKIPPED_BY_SUITE]
    assert set(mine.ranker) == {"bm25_b"}
    assert set(zip(mine.explainer, mine.metric)) == {("lime", "rank_deletion"), ("lime", "listwise_tau"),
                                                      ("random", "listwise_tau")}
    ok = df[(df.ranker == "bm25") & (df.status == "ok")]
    assert set(zip(ok.explainer, ok.metric)) >= {("lime", "rank_deletion"), ("lime", "listwise_tau")}
    p = tmp_path / "bad.toml"
    p.write_text(text.replace('skip = ["lime", "listwise_tau"]', 'skip = ["nope"]'))
    from rankers.errors import BadInput
    with pytest.raises(BadInput, match="neither an explainer nor a metric"):
        load_suite(p)
