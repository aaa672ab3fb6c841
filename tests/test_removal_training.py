"""Counterfactual (removal-aware) training, issue 32: `removal_training` > 0 makes the trainable rankers see part of
every batch with a uniform-random share of the document's words removed by their own operator; the share and the
operator are part of the cached model's identity; off (0), nothing changes."""
import numpy as np
import pytest
import torch

from rankers.counterfactual import removal_masks
from rankers.training import cached_checkpoint


def test_removal_masks_by_hand():
    d = torch.tensor([[5, 6, 7, 8, 0, 0], [9, 9, 9, 9, 9, 9]])
    rng = np.random.default_rng(3)
    u = np.random.default_rng(3)
    want = []
    for n in (4, 6):                       # the same draws: the share, then the words
        k = int(round(u.uniform() * n))
        want.append(k)
        u.choice(n, size=k, replace=False)
    shares: list = []
    m = removal_masks(d, rng, shares)
    assert [int(round(x * n)) for x, n in zip(shares, (4, 6))] == want   # the shares drawn, one per row
    assert (m[0, 4:] == 1).all()          # PAD positions are never "removed"
    assert [int((m[i] == 0).sum()) for i in range(2)] == want
    assert set(m.flatten().tolist()) <= {0.0, 1.0}


def test_a_pair_loses_one_share():
    """`given`: each row loses round(u n) of its n words for the share given to it (its positive's), none drawn."""
    d = torch.tensor([[5, 6, 7, 8, 0, 0], [9, 9, 9, 9, 9, 9], [3, 4, 0, 0, 0, 0]])
    got: list = []
    m = removal_masks(d, np.random.default_rng(0), got, given=[0.5, 1.0, 0.2])
    assert got == [0.5, 1.0, 0.2]
    assert [int((m[i] == 0).sum()) for i in range(3)] == [2, 6, 0]   # round(0.5*4), 6 of 6, round(0.2*2) = 0
    assert (m[0, 4:] == 1).all() and (m[2] == 1).all()


def test_removal_loss_by_hand():
    """k = 3 pairs: sp = (2, 1, 0.5), sn = (0.5, 0.8, 0), sp_r = (1.5, 0.2, 0.1), sn_r = (0, 0.5, 0.3),
    se_r = (1.95, 0, 0), shares (0.2, 0.4, 0.9), margin 0.1, anchor 1:
    pairs that both lost words: relu(1 - sp_r + sn_r) = (0, 1.3, 1.2), mean 2.5 / 3;
    the positive over its empty version: relu(0.1 - sp + se_r) = (0.05, 0, 0), mean 0.05 / 3;
    anchor over u <= 0.5 (the first two): relu(1 - sp_r + sn) = (0, 1.6) and relu(1 - sp + sn_r) = (0, 0.5), mean of
    the sums 1.05. Gradients: sn_r gets 1/3 from each violated pair hinge (pairs 2, 3) and 1/2 from the second anchor
    term (pair 2); sp_r -1/3 (pairs 2, 3) and -1/2 (pair 2); the full scores only from the empty margin (sp: -1/3 on
    pair 1), the anchor holding them fixed."""
    from rankers.counterfactual import removal_loss
    t = lambda *v: torch.tensor(v, dtype=torch.float64, requires_grad=True)  # noqa: E731
    args = (t(2, 1, 0.5), t(0.5, 0.8, 0), t(1.5, 0.2, 0.1), t(0, 0.5, 0.3), t(1.95, 0, 0), [0.2, 0.4, 0.9], 0.1)
    assert float(removal_loss(*args)) == pytest.approx(2.55 / 3)
    loss = removal_loss(*args, anchor=1.0)
    assert float(loss) == pytest.approx(2.55 / 3 + 1.05)
    loss.backward()
    sp, sp_r, sn_r = (a.grad.tolist() for a in (args[0], args[2], args[3]))
    assert sn_r == pytest.approx([0, 1 / 3 + 1 / 2, 1 / 3]) and sp_r == pytest.approx([0, -1 / 3 - 1 / 2, -1 / 3])
    assert sp == pytest.approx([-1 / 3, 0, 0]) and args[1].grad is None   # the full negative: no term moves it
    assert float(removal_loss(*args[:5], [0.6, 0.7, 0.9], 0.1, anchor=1.0)) == pytest.approx(2.55 / 3)  # none <= 0.5


def test_the_trained_operator_is_part_of_the_identity(synthetic):
    key = lambda **c: cached_checkpoint("crossencoder", synthetic, 0, c)   # noqa: E731
    assert key() == key(removal="delete")                       # off: the operator is a runtime choice
    assert key(removal_training=0.5) != key()
    assert key(removal_training=0.5, removal="delete") != key(removal_training=0.5)
    assert key(removal_training=0.5, removal="pad") == key(removal_training=0.5)
    k = lambda **c: cached_checkpoint("knrm", synthetic, 0, c)   # noqa: E731
    assert k(removal_training=0.3) != k() and k(removal_training=0.3) != k(removal_training=0.5)


def test_removal_training_trains_and_says_so(synthetic, tmp_path, monkeypatch):
    monkeypatch.setenv("REXBENCH_HOME", str(tmp_path))
    from rankers.training import build_ranker, load_checkpoint, save_ranker, train
    r = build_ranker("knrm", synthetic, removal_training=0.5)
    log = train(r, synthetic, epochs=1, n_per_query=4, progress=False)
    assert log["removal_training"] == {"share": 0.5, "operator": "the ranker's own"}
    assert r.config()["removal_training"] == 0.5 and "removal_training" not in build_ranker("knrm", synthetic).config()
    plain = build_ranker("knrm", synthetic)
    assert "removal_training" not in train(plain, synthetic, epochs=1, n_per_query=4, progress=False)
    save_ranker(r, tmp_path / "m", synthetic.name, log)                 # what the cache keeps
    m = load_checkpoint(tmp_path / "m", {"ranker": "knrm", "collection": synthetic.name})
    assert m.removal_training == 0.5 and m.train_log["removal_training"]["share"] == 0.5


def test_the_report_says_which_operator_a_model_was_trained_with():
    import pandas as pd

    from suites.report.diagnostics import removal_label
    rk = pd.DataFrame([{"ranker": "ce", "removal_training": {"share": 0.5, "operator": "pad"}},
                       {"ranker": "ce_delete", "removal_training": {"share": 0.5, "operator": "pad"}},
                       {"ranker": "knrm", "removal_training": {"share": 0.3, "operator": "the ranker's own"}},
                       {"ranker": "plain", "removal_training": None}])
    suite = {"ce": {"type": "crossencoder"}, "ce_delete": {"type": "crossencoder", "removal": "delete"},
             "knrm": {}, "plain": {"type": "crossencoder"}}
    assert removal_label(rk, suite, "ce") == "pad (trained with it, 50% of pairs)"
    assert removal_label(rk, suite, "ce_delete") == "delete (trained with pad, 50% of pairs)"
    assert removal_label(rk, suite, "knrm") == "deletion (trained with it, 30% of pairs)"
    assert removal_label(rk, suite, "plain") == "pad"
    # a type with a single operator is named from its removal semantics (`rexbench list`)
    from suites.report.diagnostics import operator_of
    assert operator_of({}, "matchpyramid") == "deletion"
    assert operator_of({}, "bm25") == operator_of({}, "late_interaction") == "own (not deletion)"
    assert operator_of({"mine": {"type": "somebody_elses"}}, "mine") == "own"


def test_the_share_is_selected_on_dev_by_its_rule():
    """benchmarks/removal_selection.py: the most effective share above 0 that is not operator-dominated (median
    standing after half the words removed >= 0.5), ties to the smaller share; share 0 is only the reference."""
    import importlib.util
    from pathlib import Path
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "removal_selection.py"
    spec = importlib.util.spec_from_file_location("removal_selection", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    row = lambda r, s, n, h: {"ranker": r, "share": s, "dev_ndcg@10": n, "median_half_removal_standing": h}  # noqa: E731
    rows = [row("a", 0.0, 0.9, 0.9), row("a", 0.25, 0.5, 0.9), row("a", 0.5, 0.6, 0.4), row("a", 0.75, 0.5, 0.7),
            row("b", 0.25, 0.30001, 0.8), row("b", 0.5, 0.3, 0.8), row("c", 0.5, 0.3, 0.2)]
    assert mod.select(rows) == {"a": 0.25, "b": 0.25}
    seeded = [{**r, "train_seed": 1} for r in rows[:4]] + [{**row("a", 0.5, 0.8, 0.6), "train_seed": 2}]
    assert mod.select(rows + seeded) == {"a": 0.25, "b": 0.25, "a_seed1": 0.25, "a_seed2": 0.5}  # each seed apart
    lr = {"training": {"lr": 2e-05}}
    recipe = [{**row("a", 0.5, 0.2, 0.6), **lr}, {**row("a", 0.25, 0.1, 0.2), **lr}]
    assert mod.select(rows + recipe) == {"a": 0.25, "b": 0.25, 'a {"lr": 2e-05}': 0.5}  # each recipe apart
