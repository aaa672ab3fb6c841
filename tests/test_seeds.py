"""The training-seed study (suites/report/seeds.py) against values computed by hand."""
import numpy as np
import pandas as pd
import pytest
from scipy.stats import kendalltau

from suites.report.seeds import seed_groups, seed_study


def _rows(values: dict[str, dict[str, list[float]]], metric: str = "rank_deletion") -> pd.DataFrame:
    """{ranker: {explainer: [value per query]}} -> suite rows (one sample per query)."""
    rows = []
    for r, by_e in values.items():
        for e, vs in by_e.items():
            for q, v in enumerate(vs):
                rows.append({"ranker": r, "explainer": e, "metric": metric, "qid": str(q), "docid": "d",
                             "value": v, "status": "ok"})
    return pd.DataFrame(rows)


def test_seed_groups_pair_tables_that_differ_only_in_train_seed():
    tables = {"knrm": {}, "knrm_s1": {"type": "knrm", "train_seed": 1}, "knrm_s2": {"type": "knrm", "train_seed": 2},
              "knrm_big": {"type": "knrm", "n_kernels": 21}, "bm25": {}}
    g = seed_groups(tables, 0, set(tables))
    assert g == {"knrm": {0: "knrm", 1: "knrm_s1", 2: "knrm_s2"}}
    assert seed_groups(tables, 0, {"knrm", "bm25"}) == {}  # a group needs two seeds with results


def test_seed_groups_ignore_what_a_table_explains():
    # the Cranfield suite's seeds 1 and 2 skip the pair- and query-level explainers seed 0 runs: one group still
    skip = ["pair_occlusion", "query_deletion"]
    tables = {"knrm": {"removal_training": 0.75},
              "knrm_seed1": {"type": "knrm", "train_seed": 1, "removal_training": 0.75, "skip": skip, "queries": 10},
              "knrm_seed2": {"type": "knrm", "train_seed": 2, "removal_training": 0.75, "skip": skip},
              "knrm_other": {"type": "knrm", "train_seed": 3, "removal_training": 0.5},
              "knrm_top": {"type": "knrm", "train_seed": 4, "removal_training": 0.75, "relevant": 0}}
    g = seed_groups(tables, 0, set(tables))
    assert g == {"knrm": {0: "knrm", 1: "knrm_seed1", 2: "knrm_seed2"}}


def test_seed_study_by_hand():
    # rank_deletion: lower is better. Seeds 0 and 1 order the explainers alike, seed 2 swaps two of them.
    base = {"gradcam": [0.2, 0.3, 0.25, 0.2], "a": [0.1, 0.1, 0.15, 0.1], "b": [0.5, 0.4, 0.45, 0.5],
            "c": [0.3, 0.35, 0.3, 0.3]}
    swapped = {**base, "a": base["c"], "c": base["a"]}
    df = _rows({"r0": base, "r1": base, "r2": swapped})
    st = seed_study(df, ["r0", "r1", "r2"], "rank_deletion")
    assert st["seeds"] == 3 and st["queries"] == 4 and st["explainers"] == ["a", "b", "c", "gradcam"]
    means = {e: np.mean(v) for e, v in base.items()}
    sw = {e: np.mean(v) for e, v in swapped.items()}
    order = ["a", "b", "c", "gradcam"]
    t_same = 1.0
    t_swap = kendalltau([means[e] for e in order], [sw[e] for e in order]).statistic
    assert st["tau"] == pytest.approx((t_same + 2 * t_swap) / 3)
    assert st["tau_low"] <= st["tau"] + 1e-12 and st["tau_high"] <= 1.0
    # pooled: the mean over seeds of each explainer's query-mean, CI around it
    pooled_a = (2 * means["a"] + sw["a"]) / 3
    assert st["pooled"][0] == pytest.approx(pooled_a)
    assert st["pooled_low"][0] <= pooled_a <= st["pooled_high"][0]
    assert st["verdicts_compared"] == 3


def test_identical_seeds_agree_perfectly():
    base = {"gradcam": [0.2, 0.3, 0.25, 0.2, 0.3], "a": [0.1, 0.1, 0.15, 0.1, 0.12],
            "b": [0.5, 0.4, 0.45, 0.5, 0.42]}
    st = seed_study(_rows({"r0": base, "r1": base, "r2": base}), ["r0", "r1", "r2"], "rank_deletion")
    assert st["tau"] == pytest.approx(1.0) and st["tau_low"] == pytest.approx(1.0)
    assert st["verdicts_same"] == st["verdicts_compared"] == 2


def test_rankers_with_the_same_weights_share_one_effectiveness_ranking(tmp_path):
    """Tables that differ only in a runtime parameter (removal) rank the collection once (suites.run.runner)."""
    from suites.run.config import load_suite
    p = tmp_path / "s.toml"
    p.write_text('[suite]\nname = "s"\ncollection = "synthetic"\n[rankers.crossencoder]\n'
                 '[rankers.ce_delete]\ntype = "crossencoder"\nremoval = "delete"\n'
                 '[rankers.ce_seed1]\ntype = "crossencoder"\ntrain_seed = 1\n'
                 '[rankers.ce_long]\ntype = "crossencoder"\nmax_length = 64\n[rankers.bm25]\n'
                 '[explainers.random]\n[metrics.rank_deletion]\n')
    cfg = load_suite(p)
    keys = {r: p.weights_key() for r, p in cfg.plan.rankers.items()}
    assert keys["crossencoder"] == keys["ce_delete"]
    assert len({keys["crossencoder"], keys["ce_seed1"], keys["ce_long"], keys["bm25"]}) == 4
    # trained with removal, the operator is part of the weights (two checkpoints): ranked apart (the trec-dl run
    # once gave the delete-trained cross-encoder the pad-trained one's effectiveness)
    p.write_text(p.read_text().replace('[rankers.crossencoder]\n', '[rankers.crossencoder]\nremoval_training = 0.5\n')
                 .replace('removal = "delete"\n', 'removal = "delete"\nremoval_training = 0.5\n'))
    keys = {r: p.weights_key() for r, p in load_suite(p).plan.rankers.items()}
    assert keys["crossencoder"] != keys["ce_delete"]


def test_a_seed_table_never_loads_another_seeds_cached_model(tmp_path):
    """`train_seed` decides which cached model a suite table loads (the run's probe once took the suite seed's
    cached KNRM for knrm_seed1, so every seed had seed 0's weights and effectiveness)."""
    import torch
    from rankers.training import build_ranker, cached_checkpoint, save_ranker
    from suites.run.config import load_suite
    from suites.data.collections import load_collection
    from suites.run.runner import check_inputs
    p = tmp_path / "s.toml"
    p.write_text('[suite]\nname = "s"\ncollection = "synthetic"\nseed = 0\n[samples]\nqueries = 1\n'
                 '[rankers.knrm]\nn_kernels = 5\n[rankers.knrm_seed1]\ntype = "knrm"\nn_kernels = 5\ntrain_seed = 1\n'
                 '[explainers.random]\n[metrics.rank_deletion]\n')
    cfg = load_suite(p)
    coll = load_collection("synthetic", seed=0)
    models = {seed: build_ranker("knrm", coll, seed, n_kernels=5) for seed in (0, 1)}
    with torch.no_grad():  # distinct weights per seed whatever the initialisation
        for w in models[1].parameters():
            w.add_(torch.randn_like(w))
    save_ranker(models[0], cached_checkpoint("knrm", coll, 0, {"n_kernels": 5}), coll.name)
    _, _, probed = check_inputs(cfg, "cpu", None)
    assert "knrm" in probed and "knrm_seed1" not in probed  # seed 1 is not cached: trained by the run
    save_ranker(models[1], cached_checkpoint("knrm", coll, 1, {"n_kernels": 5}), coll.name)
    _, _, probed = check_inputs(cfg, "cpu", None)
    for rname, seed in (("knrm", 0), ("knrm_seed1", 1)):
        got, want = probed[rname].state_dict(), models[seed].state_dict()
        assert all(torch.equal(got[k], want[k]) for k in want)
    a, b = probed["knrm"].state_dict(), probed["knrm_seed1"].state_dict()
    assert not all(torch.equal(a[k], b[k]) for k in a)


def test_the_probe_never_trains_and_probes_only_the_selected_rankers(tmp_path, monkeypatch):
    """`check_inputs` loads what the run will use, but a cached model the run will train again (here: other training
    code) counts as not cached instead of being trained inside the probe (a `--rankers` share once began a 2-hour
    cross-encoder training that way, for a ranker it was not asked to run), and with `only` (`--rankers`) the other
    rankers are not probed at all."""
    import rankers.training as training
    from rankers.identity import training_code
    from rankers.training import build_ranker, cached_checkpoint, save_ranker, training_hyperparameters
    from suites.data.collections import load_collection
    from suites.run.config import load_suite
    from suites.run.runner import check_inputs
    p = tmp_path / "s.toml"
    p.write_text('[suite]\nname = "s"\ncollection = "synthetic"\nseed = 0\n[samples]\nqueries = 1\n'
                 '[rankers.bm25]\n[rankers.knrm]\nn_kernels = 5\n[explainers.random]\n[metrics.rank_deletion]\n')
    cfg = load_suite(p)
    coll = load_collection("synthetic", seed=0)
    model = build_ranker("knrm", coll, 0, n_kernels=5)
    hp = training_hyperparameters(type(model))

    def no_training(*a, **k):
        raise AssertionError("the probe trained a ranker")
    monkeypatch.setattr(training, "train", no_training)
    path = cached_checkpoint("knrm", coll, 0, {"n_kernels": 5})
    save_ranker(model, path, coll.name, {"hyperparameters": hp, "epochs": [], "code": "0123456789abcdef"})
    _, _, probed = check_inputs(cfg, "cpu", None)
    assert set(probed) == {"bm25"}                                    # stale: left to the run, which retrains it
    save_ranker(model, path, coll.name, {"hyperparameters": hp, "epochs": [], "code": training_code()})
    assert set(check_inputs(cfg, "cpu", None)[2]) == {"bm25", "knrm"}  # current: loaded once, reused by the run
    assert set(check_inputs(cfg, "cpu", None, only={"bm25"})[2]) == {"bm25"}
