"""The gradient source: per-sample gradients of the pruned weights (G), their memory plan,
finiteness checks and timing."""

from .gradients import activation_bytes, check_finite_gradients, collect_gradients
from .memory import FisherPlan, memory_budget, plan_fisher
from .source import DTYPES, HALF_DTYPES, FisherGradients, GradientSource

__all__ = [
    "DTYPES",
    "HALF_DTYPES",
    "FisherGradients",
    "FisherPlan",
    "GradientSource",
    "activation_bytes",
    "check_finite_gradients",
    "collect_gradients",
    "memory_budget",
    "plan_fisher",
]
