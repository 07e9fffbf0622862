"""What every solver returns."""

from __future__ import annotations

from dataclasses import dataclass, field

from torch import Tensor

STOP_CONVERGED = "converged"  # no move lowers the objective
STOP_WORK = "work budget"  # the solver's count of swaps, passes or iterations ran out
STOP_TIME = "time budget"  # an opt-in time budget ran out: the result depends on the machine's speed


def stop_reason(converged: bool) -> str:
    """What stopped a search with a work budget only."""
    return STOP_CONVERGED if converged else STOP_WORK


@dataclass
class SolveResult:
    """Pruned weights and how the solver got there."""

    w: Tensor
    objective: float
    iterations: int
    history: list[float] = field(default_factory=list)
    converged: bool = False
    residual: Tensor | None = None  # y − G w when the solver knows it, so callers need not recompute it
    stopped_by: str | None = None  # STOP_CONVERGED, STOP_WORK or STOP_TIME, for solvers that search

    def stats(self) -> dict:
        """JSON-friendly summary (no tensors)."""
        stats = {
            "objective": self.objective,
            "iterations": self.iterations,
            "converged": self.converged,
            "objective_history": self.history,
        }
        return stats if self.stopped_by is None else {**stats, "stopped_by": self.stopped_by}
