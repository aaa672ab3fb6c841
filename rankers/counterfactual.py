"""Counterfactual (removal-aware) training's pieces (issue 32; Hase et al. 2021, Madsen et al. 2024): the random
removal masks a training batch's documents get and the loss terms on the scores of what they leave. `training.train`
uses them for a ranker trained with `removal_training` > 0."""
from __future__ import annotations

import numpy as np
import torch

#: removal training's margin of a positive over its empty version (KNRM's empty margin)
REMOVAL_EMPTY_MARGIN = 0.1


def removal_loss(sp: torch.Tensor, sn: torch.Tensor, sp_r: torch.Tensor, sn_r: torch.Tensor, se_r: torch.Tensor,
                 shares: list[float], margin: float, anchor: float = 0.0) -> torch.Tensor:
    """Removal training's terms for k pairs (all [k]): s(q, d+), s(q, d-) in full; sp_r, sn_r the same pairs, each
    document with the pair's random share u in [0, 1] of its words removed (`shares`: u per pair); se_r the
    positive's empty version. mean relu(1 - sp_r + sn_r) (pairs that both lost words keep their order) + mean
    relu(margin - sp + se_r) (the positive above its empty version: removing every word is not free) + with
    `anchor` > 0, over the pairs with u <= 0.5 only, the mean of relu(anchor - sp_r + sn) + relu(anchor - sp + sn_r)
    (what is left of a positive after a random removal of at most half its words still outscores the full negative,
    and the full positive what is left of the negative; the full documents' scores held fixed). Both directions:
    with the first alone a partly removed document is always the pair's winner, so reading that words were removed
    pays, and the pad cross-encoder learnt it instead of relevance (results/cranfield/crossencoder_selection.json)."""
    loss = torch.relu(1.0 - sp_r + sn_r).mean() + torch.relu(margin - sp + se_r).mean()
    if anchor > 0:
        half = torch.tensor([u <= 0.5 for u in shares], device=sp_r.device, dtype=sp_r.dtype)
        cross = torch.relu(anchor - sp_r + sn.detach()) + torch.relu(anchor - sp.detach() + sn_r)
        loss = loss + (cross * half).sum() / half.sum().clamp(min=1)
    return loss


def removal_masks(d_ids: torch.Tensor, rng: np.random.Generator, shares: list | None = None,
                  given: list | None = None) -> torch.Tensor:
    """0/1 masks [B, Ld]: each row loses a uniform-random share u ~ U(0, 1) of its words (round(u n) of its n
    non-PAD words, chosen uniformly), the rest kept (counterfactual training). Each row's u is appended to
    `shares` when given; with `given` ([B]) row b loses the share given[b] instead of a drawn one (the negative of a
    training pair loses the share its positive lost: with independent shares a pair's hinge would ask a positive
    that lost most of its words to outscore a negative that lost few, against the empty-document margins)."""
    from .text import PAD_ID
    masks = torch.ones(d_ids.shape, device=d_ids.device)
    for b in range(d_ids.shape[0]):
        words = torch.nonzero(d_ids[b] != PAD_ID).flatten().cpu().numpy()
        u = float(given[b]) if given is not None else rng.uniform()
        if shares is not None:
            shares.append(float(u))
        k = int(round(u * len(words)))
        if k:
            masks[b, torch.as_tensor(rng.choice(words, size=k, replace=False), device=d_ids.device)] = 0.0
    return masks
