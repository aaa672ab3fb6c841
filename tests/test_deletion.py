"""Removal is deletion wherever a ranker has positions (issue 32): a word removed by the mask scores as the
document without it, for a prefix, a middle word and scattered words, on every ranker that `rexbench list` says
deletes (MatchPyramid's dynamic pooling is recomputed on the shorter matrix; KNRM and the random ranker have no
positions to keep; the transformers under delete: tests/test_silent.py). Rankers that do not delete (bm25 keeps
|d|, late interaction's floor, pad and mask) say so in `rexbench list`."""
import pytest
import torch

DROPS = ([0], [0, 1, 2], [3], [1, 4, 6])


@pytest.mark.parametrize("name", ["knrm", "matchpyramid", "random"])
def test_a_removed_word_scores_as_the_text_without_it(name, synthetic):
    from rankers.training import build_ranker
    m = build_ranker(name, synthetic, 0).eval()
    q_units, d_units = synthetic.units(m.analyzer)
    qid = synthetic.split("test")[0]
    docs = [d_units[d] for d in synthetic.candidates(qid)[:3]]
    q = q_units[qid]
    enc = m.encode(q, docs)
    masks, want = [], []
    for b, d in enumerate(docs):
        for drop in DROPS:
            if max(drop) >= len(d) - 1:
                continue
            mask = torch.ones(enc.d_ids.shape[1])
            mask[drop] = 0
            masks.append((b, mask))
            want.append(float(m.score_tokens(q, [[w for i, w in enumerate(d) if i not in drop]])[0]))
    rows = torch.tensor([b for b, _ in masks])
    with torch.no_grad():  # every mask in one batch, mixed documents: the batching is part of what is checked
        got = m(enc.q_ids[rows], enc.d_ids[rows], torch.stack([mk for _, mk in masks]))
    assert got.tolist() == pytest.approx(want, abs=1e-5)


def test_matchpyramid_soft_masks_keep_the_differentiable_path(synthetic):
    """A soft mask (gradient explainers) zeroes columns in place: a gradient flows to every word."""
    from rankers.training import build_ranker
    m = build_ranker("matchpyramid", synthetic, 0).eval()
    q_units, d_units = synthetic.units(m.analyzer)
    qid = synthetic.split("test")[0]
    enc = m.encode(q_units[qid], [d_units[synthetic.candidates(qid)[0]]])
    mask = torch.full(enc.d_ids.shape, 0.5, requires_grad=True)
    m(enc.q_ids, enc.d_ids, mask).sum().backward()
    assert mask.grad is not None and torch.isfinite(mask.grad).all()


def test_listing_says_what_removal_does_for_every_type():
    from suites.listing import listing
    rows = {r["name"]: r["removal"] for r in listing()["rankers"]}
    assert all(rows.values())
    for name in ("knrm", "matchpyramid", "random", "callable"):
        assert rows[name].startswith("deletion")
    assert "not deletion" in rows["late_interaction"] and "length |d| stays fixed" in rows["bm25"]
    assert "replaced, not deleted" in rows["crossencoder"] and "delete\": deletion" in rows["crossencoder"]
