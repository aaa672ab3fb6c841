"""Grad-CAM for rankers (Choi, Choi & Rhee 2020, after Selvaraju et al. 2017).

On a feature-map layer A with output [B, C, Lq, Ld] aligned with (query token,
document token):

    alpha_k  = mean_{i,j} d score / d A^k_{ij}
    pair_map = ReLU(sum_k alpha_k A^k)        (signed=True drops the ReLU)

computed with `captum.attr.LayerGradCam`. For MatchPyramid A is the conv
feature map; for KNRM it is the kernel map (one channel per RBF kernel). The
pair map [n_query, n_doc] is summed into query and document term scores by
`explainers.aggregate.pair_to_terms`. One forward and one backward pass.
"""
from __future__ import annotations

from captum.attr import LayerGradCam
from torch import nn

from rankers.errors import BadInput

from .base import Explainer, Pair, register_explainer


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
    requires = ("feature_layer",)

    def __init__(self, ranker, layer: str = "feature_layer", signed: bool = False, seed: int = 0,
                 batch_size: int = 256):
        super().__init__(ranker, seed=seed, batch_size=batch_size)
        self.layer_name, self.signed = layer, bool(signed)
        self.layer = resolve_layer(ranker, layer)

    def _attribute(self, pair: Pair) -> dict:
        sc = self.tracked(self.scorer(pair, "mask"))
        cam = LayerGradCam(sc, self.layer).attribute(sc.full_input(), relu_attributions=not self.signed)
        if cam.dim() != 4 or cam.shape[-2:] != (len(pair.q_ids), len(pair.d_ids)):
            raise BadInput(f"layer {self.layer_name!r} output {tuple(cam.shape)} is not a [B, C, n_query, n_doc] "
                           "grid aligned with the pair")
        return {"pair_map": cam[0, 0].detach().cpu().numpy(), "info": {"layer": self.layer_name}}
