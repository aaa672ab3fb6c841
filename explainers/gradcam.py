"""Grad-CAM for rankers (Choi, Choi & Rhee 2020, after Selvaraju et al. 2017).

On a feature-map layer A with output [B, C, Lq, Ld] aligned with (query token,
document token):

    alpha_k  = mean_{i,j} d score / d A^k_{ij}
    pair_map = ReLU(sum_k alpha_k A^k)        (signed=True drops the ReLU)

With `weights = "position"` the channel mean is dropped: pair_map[i, j] = ReLU(sum_k
d score / d A^k_{ij} * A^k_{ij}), gradient x activation per cell (what the channel mean
discards is the position-dependent gradient; on KNRM this is input x gradient at Grad-CAM's
own layer). Transformers: the same per piece, sum_h grad[p, h] * A[p, h].

computed from one forward (a hook keeps A) and one `torch.autograd.grad` (the
same formula as `captum.attr.LayerGradCam`, but the forward's score is reused
for the explanation, saving a pass). For MatchPyramid A is the conv
feature map; for KNRM it is the kernel map (one channel per RBF kernel). The
pair map [n_query, n_doc] is summed into query and document term scores by
`explainers.aggregate.pair_to_terms`. One forward and one backward pass.

On transformer rankers the feature maps are a chosen encoder layer's token
states A [P, H] (layer index `layer`, default the ranker's, -1 = last):
w_h = mean_p d score / d A[p, h], piece map = ReLU(sum_h w_h A[p, h]); pieces
are summed into words (`pieces_to_words`). The cross-encoder's single
sequence gives query and document word scores; the bi-encoder's document
pass gives document scores and its query pass query scores. No pair map.
"""
from __future__ import annotations

import torch
from torch import nn

from rankers.errors import BadInput
from rankers.params import Bool, Choice, Param

from .base import Explainer, Incompatible, Pair, register_explainer


def resolve_layer(ranker: nn.Module, name: str) -> nn.Module:
    """A submodule by attribute path ('feature_layer', 'conv', 'encoder.layer.5')."""
    mod = ranker
    for part in name.split("."):
        mod = getattr(mod, part, None)
        if mod is None:
            raise BadInput(f"ranker {getattr(ranker, 'name', '?')!r} has no layer {name!r}")
    return mod


@register_explainer("gradcam")
class GradCAM(Explainer):
    requires = (("feature_layer", "token_states"),)
    params = {**Explainer.params,
              "layer": Param((str, int), None, nullable=True, doc="submodule name, or encoder layer index"),
              "signed": Bool(False, "keep negative evidence (no ReLU)"),
              "weights": Choice("mean", ("mean", "position"), doc="mean = the channel mean of the gradient "
                                "(Grad-CAM, the seed's); position = gradient x activation per cell")}

    def __init__(self, ranker, layer: str | int | None = None, signed: bool = False, weights: str = "mean",
                 seed: int = 0, batch_size: int = 256):
        super().__init__(ranker, seed=seed, batch_size=batch_size)
        self.signed = bool(signed)
        if weights not in ("mean", "position"):
            raise BadInput(f"gradcam: weights must be 'mean' or 'position', not {weights!r}")
        self.weights = weights
        self.tokens = "token_states" in ranker.capabilities
        if self.tokens:
            self.layer_name = int(ranker.layer if layer is None else layer)
            n = ranker.n_layers
            if weights == "position" and ranker.reads_one_position() and n and self.layer_name % n == n - 1:
                raise Incompatible(f"gradcam with weights = \"position\" at the last layer of {ranker.name}: its "
                                   "score reads one position there ([CLS] or the last token), so every word's "
                                   "gradient is zero and the map is constant; set `layer` to an earlier one")
        else:
            if isinstance(layer, int):
                raise Incompatible(f"gradcam layer {layer}: an integer indexes a transformer's encoder layers; "
                                   f"{ranker.name} names its feature layer (e.g. \"feature_layer\")")
            self.layer_name = layer or "feature_layer"
            self.layer = resolve_layer(ranker, self.layer_name)

    def _attribute(self, pair: Pair) -> dict:
        if self.tokens:
            return self._attribute_tokens(pair)
        sc = self.tracked(self.scorer(pair, "mask"))
        store = {}
        handle = self.layer.register_forward_hook(lambda _m, _i, out: store.update(a=out))
        try:
            s = sc(sc.full_input())
        finally:
            handle.remove()
        a = store["a"]
        if a.dim() != 4 or a.shape[-2:] != (len(pair.q_ids), len(pair.d_ids)):
            raise BadInput(f"layer {self.layer_name!r} output {tuple(a.shape)} is not a [B, C, n_query, n_doc] "
                           "grid aligned with the pair")
        (g,) = torch.autograd.grad(s.sum(), a)           # one backward; no parameter gradients
        alpha = g.mean(dim=(2, 3), keepdim=True) if self.weights == "mean" else g  # [1, C, 1, 1] or per cell
        cam = (alpha * a).sum(1)[0]                       # [n_query, n_doc]
        cam = cam if self.signed else torch.relu(cam)
        return {"pair_map": cam.detach().float().cpu().numpy(), "score": float(s[0]), "info": {"layer": self.layer_name, "weights": self.weights}}

    def _attribute_tokens(self, pair: Pair) -> dict:
        from .aggregate import pieces_to_words
        sc = self.tracked(self.scorer(pair, "mask"))
        with self.ranker.capture(layer=self.layer_name) as cap:
            s = sc(sc.full_input())
        sides = list(cap)
        grads = torch.autograd.grad(s.sum(), [cap[k][0] for k in sides])
        out = {"score": float(s[0]), "info": {"layer": self.layer_name, "weights": self.weights}}
        nq, nd = len(pair.query_tokens), len(pair.doc_tokens)
        for side, g in zip(sides, grads):
            h, widx, qidx, _ = cap[side]
            w = g[0].mean(0) if self.weights == "mean" else g[0]  # [H] or [P, H]
            m = (h[0] * w).sum(-1)                            # [P]
            m = (m if self.signed else torch.relu(m)).detach().float().cpu().numpy()
            if side in ("doc", "pair"):
                out["doc_scores"] = pieces_to_words(m, widx[0].tolist(), nd)
            if side == "query":
                out["query_scores"] = pieces_to_words(m, widx[0].tolist(), nq)
            if side == "pair":
                out["query_scores"] = pieces_to_words(m, qidx[0].tolist(), nq)
        return out
