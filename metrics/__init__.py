"""Metrics for ranking explanations, registered by name (see `metrics.base`)."""
from .base import (METRICS, MetricContext, MetricResult, QueryContext, Skip, check_metric_params, compute_metrics,
                   compute_metrics_many, compute_query_metrics, metric_spec, register_metric)
from . import anchored, faithfulness, groundtruth, pairs, robustness  # noqa: F401  (register)
from .faithfulness import listwise_tau

__all__ = ["METRICS", "check_metric_params", "MetricContext", "MetricResult", "QueryContext", "Skip", "compute_metrics",
           "compute_metrics_many", "compute_query_metrics", "listwise_tau", "metric_spec", "register_metric"]
