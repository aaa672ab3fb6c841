"""Rows a pair's explainers share are scored once (issue 35's speed item), with results unchanged to the last digit.

The runner explains a pair with every explainer through one Pair object; the metrics memoise, per pair, model calls
whose inputs and batching coincide (`metrics.base.memo_call`): query_deletion's re-scored candidate lists for the
same reduced query, the gains' standing rows for the same orders, and the anchors. The same inputs in the same
call give the same values, so reusing them is exact: checked on a tiny random cross-encoder, whose scores do
depend on a call's batch composition (so only identical calls may be shared)."""
import dataclasses

import numpy as np
import pytest
import torch

from hf_tiny import DOC, QUERY, build, count_encoder_rows

transformers = pytest.importorskip("transformers")

OTHERS = ["Boundary layer heat transfer at HIGH speed!", "The drag of a cone, measured in a wind tunnel.",
          "Simple shear flow past a flat plate; the fluid has small viscosity.", "yes no true false"]
EXPLAINERS = ("random", "attention", "saliency", "gradcam", "query_occlusion", "attnlrp")
METRICS = {"rank_deletion_gain": {"max_steps": 4, "tie_orders": 1, "random_orders": 3},
           "rank_insertion_gain": {"max_steps": 4, "tie_orders": 1, "random_orders": 3},
           "rank_deletion": {"max_steps": 4, "tie_orders": 1}, "query_deletion": {}}


def _values(r, share_pair: bool):
    from explainers import build_explainer, make_pair
    from metrics import MetricContext, compute_metrics
    rows = []
    orig = type(r).forward

    def counting(self, q, d, *a, **k):
        if not torch.is_grad_enabled():
            rows.append(len(d))
        return orig(self, q, d, *a, **k)
    pair = make_pair(r, QUERY, DOC)
    others = [make_pair(r, QUERY, o).doc_tokens for o in OTHERS]
    with torch.no_grad():
        other_scores = np.array([float(r.score_tokens(pair.query_tokens, [o])[0]) for o in others])
    out = {}
    type(r).forward = counting
    try:
        for name in EXPLAINERS:
            p = pair if share_pair else dataclasses.replace(pair)      # a new Pair object: nothing shared
            ex = build_explainer(name, r, batch_size=4).attribute_pair(p)
            ctx = MetricContext(r, p, ex, other_scores=other_scores, other_docs=others, batch_size=4)
            res = compute_metrics(ctx, list(METRICS), METRICS)
            out[name] = {m: (v.value, v.status, repr(v.info)) for m, v in res.items()}
    finally:
        type(r).forward = orig
    return out, sum(rows)


def test_shared_rows_are_scored_once_and_change_nothing(tmp_path):
    from rankers.crossencoder import CrossEncoder
    r = CrossEncoder(model=build("bert", tmp_path / "bert")).eval()
    shared, rows_shared = _values(r, True)
    alone, rows_alone = _values(r, False)
    assert shared == alone                                  # every value and info field, to the last digit
    not_ok = {(e, m) for e, d in shared.items() for m, v in d.items() if v[1] != "ok"}
    assert not_ok == {("saliency", "query_deletion")} | {("query_occlusion", m) for m in METRICS if m != "query_deletion"}
    assert rows_shared < rows_alone


@pytest.mark.parametrize("kind", ["biencoder", "late_interaction"])
def test_query_deletion_encodes_the_candidates_once_and_changes_nothing(tmp_path, kind, monkeypatch):
    """Rankers that encode the document alone re-score the candidate list under every reduced query with the
    documents' encoder pass made once per pair (`reuse_doc_passes`): the same value and curve to the last digit,
    fewer encoder rows."""
    from explainers import build_explainer, make_pair
    from metrics import MetricContext, compute_metrics
    from rankers.biencoder import BiEncoder
    from rankers.late_interaction import LateInteraction
    cls = BiEncoder if kind == "biencoder" else LateInteraction
    r = cls(model=build("bert", tmp_path / "bert")).eval()
    encoded = count_encoder_rows(monkeypatch, r)

    def run():
        encoded.clear()
        pair = make_pair(r, QUERY, DOC)
        others = [make_pair(r, QUERY, o).doc_tokens for o in OTHERS]
        ex = build_explainer("query_occlusion", r, batch_size=4).attribute_pair(pair)
        encoded.clear()
        ctx = MetricContext(r, pair, ex, other_scores=np.zeros(len(others)), other_docs=others, batch_size=2)
        res = compute_metrics(ctx, ["query_deletion"], {})["query_deletion"]
        return (res.value, res.status, res.curve), sum(encoded)
    reused, rows_reused = run()
    monkeypatch.setattr(type(r), "reuse_doc_passes", None, raising=False)
    plain, rows_plain = run()
    assert reused[1] == "ok" and reused == plain
    assert rows_reused < rows_plain
