"""Explainers for rankers, registered by name (see `explainers.base.Explainer`)."""
from .base import (EXPLAINERS, Explainer, Explanation, Incompatible, Pair, build_explainer, check_explainer_params,
                   explainer_class, make_pair)
from . import baselines, captum_methods, corrupted, gradcam, listwise, search, surrogate, transformer_maps  # noqa: F401  (register)
from .baselines import collection_idf

__all__ = ["EXPLAINERS", "Explainer", "Explanation", "Incompatible", "Pair", "build_explainer", "check_explainer_params", "collection_idf",
           "explainer_class", "make_pair"]
