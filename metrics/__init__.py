"""Metrics for ranking explanations, registered by name (see `metrics.base`)."""
from .base import METRICS, MetricContext, MetricResult, Skip, compute_metrics, metric_spec, register_metric
from . import faithfulness, groundtruth, robustness  # noqa: F401  (register)
from .faithfulness import listwise_tau

__all__ = ["METRICS", "MetricContext", "MetricResult", "Skip", "compute_metrics", "listwise_tau", "metric_spec",
           "register_metric"]
