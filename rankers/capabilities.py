"""The ranker protocol's capabilities: what a ranker offers explainers, declared once per class.

Every ranker scores document-token masks (the removal operator), so perturbation explainers
and curve metrics apply to all of them. The rest is optional and declared in the class's
`capabilities`; explainers declare what they `requires` (a tuple of capability names; a tuple
inside it means "any of these"). `rexbench list`, `Explainer.compatible` and the runner all
decide compatibility with `missing` below, so they cannot disagree.
"""
from __future__ import annotations

from typing import Iterable

#: name -> what it means (shown by `rexbench list --json`)
CAPABILITIES: dict[str, str] = {
    "mask_gradient": "differentiable in the document token mask (gradient explainers)",
    "embedding": "token embedding input: `embedding` layer and `score_embedded`",
    "interaction_layer": "a layer whose output [B, Lq, Ld] is the query x document matrix",
    "feature_layer": "feature maps [B, C, Lq, Ld] aligned with (query token, document token): Grad-CAM",
    "token_states": "encoder token states captured per side (`capture(layer=...)`): Grad-CAM on transformers",
    "attention": "attention weights captured per side (`capture(attentions=True)`)",
    "encoder_inputs": "the score is computed by torch operations from word-piece input embeddings passed through "
                      "`_run(side, embeds, batch)` (relevance at the inputs: AttnLRP)",
    "pooled_states": "score = cosine of mean-pooled token states (bi-encoder decomposition)",
    "single_use_modules": "every nonlinearity is an nn.Module called once per forward (Captum DeepLift)",
    "randomisable": "parameters that cascading randomisation can re-initialise",
    "exact_contributions": "exact per-token Shapley shares (`exact_contributions`): ground truth",
    "pair_removal": "forward(..., pair_mask [B, Lq, Ld]) removes single query x document cells at the interaction "
                    "layer (pair-level metrics)",
    "exact_pairs": "an exact query x document decomposition of the score (`exact_pairs`): pair-level ground truth",
}

Requirement = str | tuple[str, ...]


def missing(capabilities: Iterable[str], requires: Iterable[Requirement]) -> list[str]:
    """The requirements a ranker with `capabilities` does not meet ("a or b" for an any-of tuple)."""
    have = set(capabilities)
    out = []
    for req in requires:
        alternatives = (req,) if isinstance(req, str) else tuple(req)
        if not have & set(alternatives):
            out.append(" or ".join(alternatives))
    return out


def check_declared(names: Iterable[Requirement], where: str) -> None:
    """Raise ValueError for a capability name nobody defined (a typo in a class declaration)."""
    for req in names:
        for name in (req,) if isinstance(req, str) else req:
            if name not in CAPABILITIES:
                raise ValueError(f"{where}: unknown capability {name!r}; defined: {', '.join(CAPABILITIES)}")
