"""Captum attribution methods behind the rexbench explainer interface.

Input spaces (see `rankers.scorer.PairScorer`):
- gradient methods (integrated_gradients, saliency, input_x_gradient, deeplift,
  gradient_shap) attribute, by default, the document's token-presence mask
  [Ld] (`input="mask"`, baseline: the empty document). This is the same unit on
  every ranker (bm25 included) and the same removal operator the metrics use.
  `input="embedding"` attributes the token embeddings [Ld, E] instead (summed
  over E) from the all-zero (PAD) embedding. Caution: KNRM and MatchPyramid see
  embeddings only through cosines, which are invariant to scaling, so along the
  straight path from the zero baseline the score is constant and
  embedding-space IG / InputXGradient sum to ~0 there (Captum's delta shows it);
  that is why the mask is the default.
- perturbation methods (occlusion, feature_ablation, shapley_sampling,
  kernel_shap, lime) perturb the token mask, one feature per document token;
  baseline 0 = token removed, the same removal operator the metrics use.
  `perturbations_per_eval` batches perturbed inputs into few model calls.
"""
from __future__ import annotations

import math

import torch
from captum.attr import (DeepLift, FeatureAblation, GradientShap, InputXGradient, IntegratedGradients, KernelShap,
                         LayerIntegratedGradients, Lime, Occlusion, Saliency, ShapleyValueSampling)

from rankers.errors import BadInput
from rankers.params import Bool, Choice, Float, Int

from .aggregate import embedding_to_tokens
from .base import Explainer, Incompatible, Pair, register_explainer


def _np(t: torch.Tensor):
    return t.detach().float().cpu().numpy()


class _Gradient(Explainer):
    """Shared plumbing: scorer in the gradient input space, attributions summed to tokens."""

    requires = ("mask_gradient",)
    params = {**Explainer.params, "input": Choice("mask", ("mask", "embedding"), "gradient input space")}

    def __init__(self, ranker, input: str = "mask", seed: int = 0, batch_size: int = 256):
        super().__init__(ranker, seed=seed, batch_size=batch_size)
        if input not in ("mask", "embedding"):
            raise BadInput(f"{self.name}: input must be 'mask' or 'embedding', not {input!r}")
        if input == "embedding" and ranker.embedding is None:
            raise Incompatible(f"{self.name}: input='embedding' needs a ranker with embeddings ({ranker.name} has none)")
        self.input = input

    def _inputs(self, pair: Pair):
        sc = self.tracked(self.scorer(pair, self.input))
        x = sc.full_input()
        return sc, x, torch.zeros_like(x)

    def _attribute(self, pair: Pair) -> dict:
        sc, x, base = self._inputs(pair)
        attr, info = self._run(sc, x, base)
        return {"doc_scores": embedding_to_tokens(_np(attr[0])), "info": {"input": sc.mode, **info}}

    def _run(self, sc, x, base):
        raise NotImplementedError


@register_explainer("integrated_gradients")
class IntegratedGradientsExplainer(_Gradient):
    """IG from the zero baseline; `info['delta']` is Captum's completeness gap
    sum(attributions) - (f(x) - f(baseline)). With pair_map=True on an
    interaction ranker, also layer IG giving a term-pair map [n_query, n_doc]:
    on the interaction layer (the cosine matrix) from zero embeddings, where
    the matrix is 0 (KNRM, MatchPyramid); where removal acts on the cells
    after the matrix (`pair_removal` without embeddings: late interaction) on
    the cells as the score reads them (`feature_layer`) along the document
    mask's path from the empty document, so the map sums to f(x) - f(empty)."""

    params = {**_Gradient.params, "n_steps": Int(50, lo=1, hi=10000, doc="Riemann steps"),
              "internal_batch_size": Int(64, lo=1, hi=65536), "pair_map": Bool(False, "also layer IG on the interaction matrix (the kernel values where the score reads "
                                                               "word identity)")}

    def __init__(self, ranker, n_steps: int = 50, internal_batch_size: int = 64, pair_map: bool = False,
                 input: str = "mask", seed: int = 0, batch_size: int = 256):
        super().__init__(ranker, input=input, seed=seed, batch_size=batch_size)
        self.n_steps, self.internal_batch_size, self.pair_map = int(n_steps), int(internal_batch_size), pair_map

    def _run(self, sc, x, base):
        attr, delta = IntegratedGradients(sc).attribute(x, baselines=base, n_steps=self.n_steps,
                                                        internal_batch_size=self.internal_batch_size,
                                                        return_convergence_delta=True)
        return attr, {"delta": float(delta.abs().max())}

    def _attribute(self, pair: Pair) -> dict:
        out = super()._attribute(pair)
        r = self.ranker
        if not self.pair_map:
            return out
        if r.embedding is not None and r.interaction_layer is not None:
            sc, layer = self.tracked(self.scorer(pair, "embedding")), r.interaction_layer
        elif "pair_removal" in r.capabilities and r.feature_layer is not None:
            sc, layer = self.tracked(self.scorer(pair, "mask")), r.feature_layer
        else:
            return out
        x = sc.full_input()
        pm = LayerIntegratedGradients(sc, layer).attribute(x, baselines=torch.zeros_like(x), n_steps=self.n_steps,
                                                           internal_batch_size=self.internal_batch_size)
        out["pair_map"] = _np(pm[0].reshape(pm.shape[-2:]))
        return out


@register_explainer("saliency")
class SaliencyExplainer(_Gradient):
    """Absolute gradient, summed over embedding dimensions (non-negative)."""

    def _run(self, sc, x, base):
        return Saliency(sc).attribute(x, abs=True), {}


@register_explainer("input_x_gradient")
class InputXGradientExplainer(_Gradient):
    def _run(self, sc, x, base):
        return InputXGradient(sc).attribute(x), {}


@register_explainer("deeplift")
class DeepLiftExplainer(_Gradient):
    """Captum DeepLift (rescale rule on the ranker's nn.Module nonlinearities;
    functional ops fall back to gradients), zero baseline. Not for HF
    transformers, whose pooler/activation modules are reused (Captum refuses)."""

    requires = ("mask_gradient", "single_use_modules")

    def _run(self, sc, x, base):
        attr, delta = DeepLift(sc).attribute(x, baselines=base, return_convergence_delta=True)
        return attr, {"delta": float(delta.abs().max())}


@register_explainer("gradient_shap")
class GradientShapExplainer(_Gradient):
    """GradientSHAP with baselines {zero, the input scaled by 0.5} and Gaussian noise `stdevs`."""

    stochastic = True
    params = {**_Gradient.params, "n_samples": Int(32, lo=1, hi=100000), "stdevs": Float(0.0, lo=0.0)}

    def __init__(self, ranker, n_samples: int = 32, stdevs: float = 0.0, input: str = "mask", seed: int = 0,
                 batch_size: int = 256):
        super().__init__(ranker, input=input, seed=seed, batch_size=batch_size)
        self.n_samples, self.stdevs = int(n_samples), float(stdevs)

    def _run(self, sc, x, base):
        baselines = torch.cat([base, 0.5 * x])
        return GradientShap(sc).attribute(x, baselines=baselines, n_samples=self.n_samples, stdevs=self.stdevs), {}


class _Perturbation(Explainer):
    params = {**Explainer.params, "perturbations_per_eval": Int(64, lo=1, hi=65536, doc="perturbed rows per model call")}

    def __init__(self, ranker, perturbations_per_eval: int = 64, seed: int = 0, batch_size: int = 256):
        super().__init__(ranker, seed=seed, batch_size=batch_size)
        self.ppe = max(1, int(perturbations_per_eval))

    def feature_mask(self, pair: Pair) -> torch.Tensor:
        """One feature per document token: [1, Ld]."""
        return torch.arange(len(pair.d_ids), device=pair.d_ids.device)[None]

    def _attribute(self, pair: Pair) -> dict:
        sc = self.tracked(self.scorer(pair, "mask"))
        x = sc.full_input()
        attr = self._run(sc, x, self.feature_mask(pair))
        return {"doc_scores": _np(attr[0]), "info": {"input": "mask"}}


@register_explainer("feature_ablation")
class FeatureAblationExplainer(_Perturbation):
    """score(d) - score(d without token j): leave-one-out."""

    def _run(self, sc, x, fm):
        return FeatureAblation(sc).attribute(x, baselines=0.0, feature_mask=fm, perturbations_per_eval=self.ppe)


@register_explainer("occlusion")
class OcclusionExplainer(_Perturbation):
    """Sliding windows of `window` tokens (stride 1) set to 0; each token gets
    the mean drop of the windows covering it. window=1 is leave-one-out."""

    params = {**_Perturbation.params, "window": Int(3, lo=1, hi=10000, doc="tokens per occluded window")}

    def __init__(self, ranker, window: int = 3, perturbations_per_eval: int = 64, seed: int = 0,
                 batch_size: int = 256):
        super().__init__(ranker, perturbations_per_eval, seed=seed, batch_size=batch_size)
        self.window = max(1, int(window))

    def _run(self, sc, x, fm):
        w = min(self.window, x.shape[1])
        return Occlusion(sc).attribute(x, sliding_window_shapes=(w,), strides=1, baselines=0.0,
                                       perturbations_per_eval=self.ppe)


class _Sampling(_Perturbation):
    stochastic = True
    params = {**_Perturbation.params, "n_samples": Int(200, lo=1, hi=100000, doc="sampled coalitions")}

    def __init__(self, ranker, n_samples: int = 200, perturbations_per_eval: int = 64, seed: int = 0,
                 batch_size: int = 256):
        super().__init__(ranker, perturbations_per_eval, seed=seed, batch_size=batch_size)
        self.n_samples = int(n_samples)


@register_explainer("shapley_sampling")
class ShapleySamplingExplainer(_Sampling):
    """Shapley value sampling over `n_samples` random token permutations."""

    params = {**_Sampling.params, "n_samples": Int(25, lo=1, hi=100000, doc="sampled permutations")}

    def __init__(self, ranker, n_samples: int = 25, perturbations_per_eval: int = 64, seed: int = 0,
                 batch_size: int = 256):
        super().__init__(ranker, n_samples, perturbations_per_eval, seed=seed, batch_size=batch_size)

    def _run(self, sc, x, fm):
        return ShapleyValueSampling(sc).attribute(x, baselines=0.0, feature_mask=fm, n_samples=self.n_samples,
                                                  perturbations_per_eval=self.ppe)


@register_explainer("kernel_shap")
class KernelShapExplainer(_Sampling):
    def _run(self, sc, x, fm):
        return KernelShap(sc).attribute(x, baselines=0.0, feature_mask=fm, n_samples=self.n_samples,
                                        perturbations_per_eval=self.ppe)


@register_explainer("lime")
class LimeExplainer(_Sampling):
    """Captum LIME (default Lasso surrogate, alpha 0.01, exponential cosine kernel) on token presence,
    scale-free: the surrogate fits standardised scores (s - s_full) / sigma, sigma = the standard deviation
    of the scores of the full input, the empty input and 8 random half-masks (seeded), and its
    coefficients are multiplied back by sigma. A fixed Lasso penalty on raw scores shrinks every
    coefficient to 0 on a ranker whose scores vary by less than ~0.01 (KNRM's did: constant
    explanations on most pairs), so without this LIME's output depended on the ranker's score scale."""

    n_pilot = 8

    def _run(self, sc, x, fm):
        gen = torch.Generator().manual_seed(self.seed)
        pilot = torch.cat([x, torch.zeros_like(x), (torch.rand((self.n_pilot, x.shape[1]), generator=gen) < 0.5)
                           .to(x.dtype).to(x.device)])
        with torch.no_grad():
            ys = sc(pilot).double()
        full, sigma = float(ys[0]), float(ys.std())
        if not math.isfinite(sigma) or sigma <= 1e-12:
            sigma = 1.0
        self._scale = sigma

        def standardised(inp):
            return (sc(inp) - full) / sigma

        attr = Lime(standardised).attribute(x, baselines=0.0, feature_mask=fm, n_samples=self.n_samples,
                                            perturbations_per_eval=self.ppe)
        return attr * sigma
