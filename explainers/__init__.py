"""Explainers for rankers, registered by name (see `explainers.base.Explainer`)."""
from .base import (EXPLAINERS, Explainer, Explanation, Incompatible, Pair, build_explainer, check_explainer_params,
                   explainer_class, make_pair)
from . import (baselines, captum_methods, corrupted, gradcam, listwise, lrp, occlusion_maps, query_gradients,  # noqa: F401
               search, surrogate, transformer_maps)  # (register)
from .baselines import collection_idf

__all__ = ["EXPLAINERS", "Explainer", "Explanation", "Incompatible", "Pair", "build_explainer", "check_explainer_params", "collection_idf",
           "explainer_class", "make_pair"]
