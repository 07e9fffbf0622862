"""Pure tensor solvers for the CHITA problem (no nn.Module, no Lightning)."""

from .active_set import active_set_iht
from .backsolve import backsolve, fit_on_support, ridge_on_support
from .block import BlockSolveResult, block_backsolve, block_workspace_bytes, layer_blocks
from .iht import INITS, iht
from .polish import POLISH_METHODS, polish
from .problem import Problem, hard_threshold, top_k_support
from .result import SolveResult
from .woodfisher import UPDATES as WOODFISHER_UPDATES
from .woodfisher import BlockInverseFisher, obs_update, woodfisher

__all__ = [
    "INITS",
    "POLISH_METHODS",
    "WOODFISHER_UPDATES",
    "BlockInverseFisher",
    "BlockSolveResult",
    "Problem",
    "SolveResult",
    "active_set_iht",
    "backsolve",
    "block_backsolve",
    "block_workspace_bytes",
    "fit_on_support",
    "hard_threshold",
    "iht",
    "layer_blocks",
    "obs_update",
    "polish",
    "ridge_on_support",
    "top_k_support",
    "woodfisher",
]
