"""What every solver returns."""

from __future__ import annotations

from dataclasses import dataclass, field

from torch import Tensor


@dataclass
class SolveResult:
    """Pruned weights and how the solver got there."""

    w: Tensor
    objective: float
    iterations: int
    history: list[float] = field(default_factory=list)
    converged: bool = False
    residual: Tensor | None = None  # y − G w when the solver knows it, so callers need not recompute it

    def stats(self) -> dict:
        """JSON-friendly summary (no tensors)."""
        return {
            "objective": self.objective,
            "iterations": self.iterations,
            "converged": self.converged,
            "objective_history": self.history,
        }
