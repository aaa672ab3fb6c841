"""Sanity, agreement and Captum's robustness metrics.

- sanity_randomization (Adebayo et al. 2018): cascading model-parameter
  randomisation from the output layer down; at each stage the explainer is
  rerun on the randomised ranker and compared with the original explanation by
  |Spearman rho| in [0, 1]. Value: |rho| after the full cascade (lower is better:
  independence from the trained weights is the ideal, and anti-correlation is as much
  dependence as correlation); a constant explanation on either side is an error
  (undefined), never a perfect 0. The per-stage curve is kept. Rankers without learned
  parameters (bm25) are skipped.
- explainer_agreement: Kendall tau (scipy.stats) between this explanation and
  a reference explainer's on the same pair (default: feature_ablation, i.e.
  leave-one-out); top-k Jaccard in info. Higher = agrees more.
- infidelity (captum.metrics): expected squared error between attributions .
  perturbation and the score drop for random token removals (Bernoulli 0.2),
  with Captum's optimal scaling of the attributions (normalize=True). Lower is better.
- sensitivity_max (captum.metrics): the largest relative change of the
  explanation when the token mask is perturbed by uniform noise of radius 0.02.
  Lower is better.
"""
from __future__ import annotations

import copy
import math

import numpy as np
import torch
from scipy.stats import kendalltau, spearmanr

from rankers.params import Float, Int, Str

from .base import MetricResult, register_metric, require
from .curves import attribution_order


def randomisation_stages(ranker, max_stages: int | None = None) -> list[list[str]]:
    """Groups of module names to randomise, output side first: the ranker's
    `randomisation_blocks()` where defined (transformers: head, layers,
    embeddings), else every module with parameters of its own. With
    `max_stages`, the last stage randomises all remaining groups at once."""
    if hasattr(ranker, "randomisation_blocks"):
        names = ranker.randomisation_blocks()
    else:
        names = list(reversed([n for n, m in ranker.named_modules()
                               if n and any(True for _ in m.parameters(recurse=False))]))
    stages = [[n] for n in names]
    if max_stages and len(stages) > max_stages:
        stages = stages[: max_stages - 1] + [[n for s in stages[max_stages - 1:] for n in s]]
    return stages


def _randomise(module: torch.nn.Module, gen: torch.Generator) -> None:
    with torch.no_grad():
        for p in module.parameters():
            std = float(p.std()) if p.numel() > 1 and float(p.std()) > 0 else 0.1
            p.copy_(torch.randn(p.shape, generator=gen) * std)


@register_metric("sanity_randomization", "lower", "|Spearman rho|, explanation of trained vs fully randomised ranker",
                 range=(0, 1), params={"max_stages": Int(None, lo=1, hi=1000, nullable=True, doc="null: every stage")})
def sanity_randomization(ctx, max_stages=None):
    """Cascading model randomisation (Adebayo et al. 2018): |Spearman rho| between the explanation of the
    trained ranker and that of the ranker with its blocks re-initialised, output side first; the value is
    the last stage (everything randomised). The randomised explanations use another explainer seed
    (seed + 1) than the trained one, so a stochastic explainer's shared coalitions cannot make them
    look alike; `info["ceiling"]` is the self-consistency ceiling, |rho| between the trained ranker's
    explanations under the two seeds (1 for deterministic explainers). The check is pass/fail: the
    report passes an explainer whose mean |rho| is at most half its mean ceiling (`SANITY_PASS`)."""
    require(ctx.explainer is not None, "needs the explainer to rerun")
    stages = randomisation_stages(ctx.ranker, max_stages)
    require(bool(stages), f"ranker {ctx.ranker.name!r} has no learned parameters to randomise")
    rand = copy.deepcopy(ctx.ranker).cpu()
    gen = torch.Generator().manual_seed(ctx.seed)
    base = np.asarray(ctx.explanation.doc_scores)
    explainer = copy.copy(ctx.explainer)
    explainer.seed = int(getattr(ctx.explainer, "seed", 0)) + 1
    ceiling = 1.0
    if getattr(ctx.explainer, "stochastic", False):
        again = np.asarray(explainer.attribute_pair(ctx.pair).doc_scores)
        ceiling = _abs_rho(base, again)
    sims = []
    for group in stages:
        for name in group:
            _randomise(rand.get_submodule(name), gen)
        explainer.ranker = rand.to(ctx.ranker.device)
        if hasattr(explainer, "layer"):  # gradcam on a feature map: hook the copy's layer
            from explainers.gradcam import resolve_layer
            explainer.layer = resolve_layer(rand, explainer.layer_name)
        ex = explainer.attribute_pair(ctx.pair)
        sims.append(_abs_rho(base, np.asarray(ex.doc_scores)))
    final = sims[-1]
    info = {"stages": [",".join(g) for g in stages], "ceiling": None if not math.isfinite(ceiling) else ceiling,
            "seeds": [int(getattr(ctx.explainer, "seed", 0)), explainer.seed]}
    curve = {"x": list(range(1, len(stages) + 1)), "y": [None if not math.isfinite(v) else v for v in sims]}
    if not math.isfinite(final):
        which = "the trained ranker's" if np.ptp(base) == 0 else "the randomised ranker's"
        return MetricResult(math.nan, "error", f"{which} explanation is constant: Spearman undefined", curve=curve,
                            info=info)
    return MetricResult(final, curve=curve, info=info)


#: sanity_randomization passes when the mean |rho| after randomisation is at most this share of the mean
#: self-consistency ceiling (randomising the model removes at least half of the structure that survives a
#: change of explainer seed)
SANITY_PASS = 0.5


def sanity_passes(mean_rho: float, mean_ceiling: float) -> bool:
    """The pass/fail verdict of sanity_randomization for a cell: mean |rho| <= SANITY_PASS * mean ceiling."""
    return bool(math.isfinite(mean_rho) and math.isfinite(mean_ceiling) and mean_rho <= SANITY_PASS * mean_ceiling)


def _abs_rho(a: np.ndarray, b: np.ndarray) -> float:
    """|Spearman rho|: independence (0) is the ideal; strong anti-correlation is as dependent on the weights
    as strong correlation. A constant explanation has no ranking at all: NaN (undefined, not "perfect")."""
    return abs(float(spearmanr(a, b).statistic)) if np.ptp(a) > 0 and np.ptp(b) > 0 else math.nan


@register_metric("explainer_agreement", "higher", "Kendall tau vs the reference explainer", range=(-1, 1),
                 params={"reference": Str("feature_ablation", doc="reference explainer (runs first)"),
                         "k": Int(5, lo=1, hi=10000, doc="top-k for the Jaccard overlap in info")})
def explainer_agreement(ctx, reference="feature_ablation", k=5):
    require(reference in ctx.peers, f"reference explainer {reference!r} not run on this pair")
    a = np.asarray(ctx.explanation.doc_scores)
    b = np.asarray(ctx.peers[reference].doc_scores)
    top_a, top_b = set(attribution_order(a)[:k]), set(attribution_order(b)[:k])
    jac = len(top_a & top_b) / len(top_a | top_b)
    tau = kendalltau(a, b).statistic
    if not math.isfinite(tau):
        return MetricResult(math.nan, "error", "constant attributions: tau undefined", info={"jaccard@k": jac})
    return MetricResult(float(tau), info={"jaccard@k": jac, "reference": reference})


@register_metric("infidelity", "lower", "Captum infidelity (normalised), random token removal", range=(0, None),
                 params={"n_perturb_samples": Int(32, lo=1, hi=10000), "p_remove": Float(0.2, lo=0.01, hi=1.0)})
def infidelity_metric(ctx, n_perturb_samples=32, p_remove=0.2):
    from captum.metrics import infidelity
    sc = ctx.scorer()
    x = torch.ones(1, len(ctx.pair.d_ids), device=ctx.pair.d_ids.device)
    attr = torch.as_tensor(np.asarray(ctx.explanation.doc_scores), dtype=torch.float32, device=x.device)[None]
    gen = torch.Generator(device="cpu").manual_seed(ctx.seed)

    def perturb(inputs):
        drop = (torch.rand(inputs.shape, generator=gen) < p_remove).float().to(inputs.device)
        return drop * inputs, inputs - drop * inputs

    with torch.no_grad():
        val = infidelity(sc, perturb, x, attr, n_perturb_samples=n_perturb_samples, normalize=True,
                         max_examples_per_batch=min(ctx.batch_size, n_perturb_samples))
    # normalised infidelity is E[b^2] - E[ab]^2 / E[a^2] >= 0; float32 cancellation can leave -1e-5 where the
    # attribution explains the perturbations exactly: that is 0
    return MetricResult(max(0.0, float(val[0])))


@register_metric("sensitivity_max", "lower", "Captum sensitivity_max, mask noise radius 0.02", range=(0, None),
                 params={"n_perturb_samples": Int(5, lo=1, hi=10000), "radius": Float(0.02, lo=0.0, hi=1.0)})
def sensitivity_max_metric(ctx, n_perturb_samples=5, radius=0.02):
    from captum.metrics import sensitivity_max
    require(ctx.explainer is not None, "needs the explainer to rerun")
    x = torch.ones(1, len(ctx.pair.d_ids), device=ctx.pair.d_ids.device)

    def explain(inputs):
        inputs = inputs[0] if isinstance(inputs, tuple) else inputs  # [B, n_doc]
        outs = []
        for row in inputs:
            ex = ctx.explainer.attribute_pair(ctx.pair, base_mask=row)
            outs.append(torch.as_tensor(np.asarray(ex.doc_scores), dtype=torch.float32))
        return (torch.stack(outs).to(inputs.device),)

    gen = torch.Generator(device="cpu").manual_seed(ctx.seed)

    def perturb(inputs, radius=radius):
        return inputs + (torch.rand(inputs.shape, generator=gen) * 2 - 1).to(inputs.device) * radius

    val = sensitivity_max(explain, x, perturb_func=perturb, n_perturb_samples=n_perturb_samples,
                          max_examples_per_batch=n_perturb_samples)
    return MetricResult(float(val[0]))
