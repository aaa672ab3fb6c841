"""Tiny rankers whose explanations and curves can be computed by hand."""
import torch
from torch import nn

from rankers.base import Ranker
from rankers.text import PAD_ID, Vocab


class AdditiveRanker(Ranker):
    """score = sum_j w[d_j] * mask_j: every token's exact contribution is its weight."""

    name, kind = "additive", "toy"

    def __init__(self, weights: dict[str, float]):
        vocab = Vocab.build([list(weights)])
        super().__init__(vocab, max_doc_len=1000)
        w = torch.zeros(len(vocab))
        for t, v in weights.items():
            w[vocab.stoi[t]] = v
        self.register_buffer("w", w)

    def forward(self, q_ids, d_ids, d_mask=None):
        m = (d_ids != PAD_ID).float() if d_mask is None else d_mask * (d_ids != PAD_ID).float()
        return (self.w[d_ids] * m).sum(-1)


class TinyConvRanker(Ranker):
    """Exact-match matrix S -> 1x1 conv (2 channels, hand-set) + ReLU -> feature_layer
    -> score = 0.1 * (sum A^1)^2 - sum A^2."""

    name, kind = "tinyconv", "toy"
    capabilities = ("mask_gradient", "feature_layer", "single_use_modules")

    def __init__(self, words):
        super().__init__(Vocab.build([list(words)]))
        self.conv = nn.Conv2d(1, 2, kernel_size=1)
        with torch.no_grad():
            self.conv.weight.copy_(torch.tensor([2.0, -1.0]).view(2, 1, 1, 1))
            self.conv.bias.copy_(torch.tensor([-0.5, 0.5]))
        self.feature_layer = nn.Identity()

    def forward(self, q_ids, d_ids, d_mask=None):
        m = (d_ids != PAD_ID).float() if d_mask is None else d_mask
        s = (q_ids[:, :, None] == d_ids[:, None, :]).float() * m[:, None, :]
        a = self.feature_layer(torch.relu(self.conv(s[:, None])))
        return 0.1 * a[:, 0].sum((1, 2)) ** 2 - a[:, 1].sum((1, 2))


class PairAdditiveRanker(Ranker):
    """score = sum_ij W[q_i, d_j] * pair_mask_ij * d_mask_j: every (query token, document token) cell adds
    its weight, so pair-level curves can be computed by hand."""

    name, kind = "pairadditive", "toy"
    capabilities = ("mask_gradient", "pair_removal")

    def __init__(self, words, weights: dict[tuple[str, str], float]):
        super().__init__(Vocab.build([list(words)]))
        w = torch.zeros(len(self.vocab), len(self.vocab))
        for (a, b), v in weights.items():
            w[self.vocab.stoi[a], self.vocab.stoi[b]] = v
        self.register_buffer("w", w)

    def forward(self, q_ids, d_ids, d_mask=None, pair_mask=None):
        cells = self.w[q_ids[:, :, None], d_ids[:, None, :]]                  # [B, Lq, Ld]
        cells = cells * ((q_ids != PAD_ID)[:, :, None] & (d_ids != PAD_ID)[:, None, :]).float()
        if d_mask is not None:
            cells = cells * d_mask[:, None, :]
        if pair_mask is not None:
            cells = cells * pair_mask
        return cells.sum((1, 2))


def explain_with_candidates(expl, r, q, d):
    """expl.attribute(q, d); a listwise explainer (`needs_candidates`) also gets a candidate list (d and two
    parts of it), as the runner gives it the query's ranking."""
    if not getattr(expl, "needs_candidates", False):
        return expl.attribute(q, d)
    from explainers import make_pair
    pair = make_pair(r, q, d)
    pair.candidates = [list(d), list(d[: len(d) // 2]), list(d[len(d) // 2:])]
    return expl.attribute_pair(pair)


def run_suite_text(tmp_path, text: str, name: str = "s"):
    """Write suite `text` to tmp_path/NAME.toml, run it serially and return its results.csv as a DataFrame."""
    import pandas as pd

    from suites.run.config import load_suite
    from suites.run.runner import run_suite
    p = tmp_path / f"{name}.toml"
    p.write_text(text)
    d = run_suite(load_suite(p), tmp_path / f"run_{name}", progress=False)
    return pd.read_csv(d / "results.csv", dtype={"qid": str, "docid": str})
