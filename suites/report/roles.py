"""What each suite explainer is in a comparison: the seed's method, a real competitor, or something shown apart.

Only competitors enter the seed's-claim tally and the answer; the others are context: Grad-CAM's own variants
(other layers, signed, position weights), baselines (random, lexical matching, lead), the search oracle that
anchors the gains, corrupted copies of a reference (the validity ladder) and a ranker's exact decomposition
(ground truth where the ranker has one)."""
from __future__ import annotations

#: the seed's method, against which every competitor is compared
REFERENCE = "gradcam"

ROLES = ("reference", "competitor", "exact", "oracle", "gradcam variant", "baseline", "corrupted")

#: explainers that are a ranker's own exact decomposition (ground truth on the rankers that have it)
EXACT_TYPES = ("exact_shapley", "exact_pairs")


def explainer_type(name: str, suite_explainers: dict) -> str:
    """The registry type of a suite explainer (its table's `type`, else its name)."""
    return (suite_explainers.get(name) or {}).get("type") or name


def role(name: str, suite_explainers: dict) -> str:
    """One of ROLES for a suite explainer."""
    from explainers import EXPLAINERS
    t = explainer_type(name, suite_explainers)
    if name == REFERENCE:
        return "reference"
    if t == "gradcam":
        return "gradcam variant"
    if t == "corrupted":
        return "corrupted"
    if t == "greedy":
        return "oracle"
    if t in EXACT_TYPES:
        return "exact"
    if getattr(EXPLAINERS.get(t), "baseline", False):
        return "baseline"
    return "competitor"


def is_competitor(name: str, suite_explainers: dict) -> bool:
    return role(name, suite_explainers) == "competitor"
