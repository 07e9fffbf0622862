"""Pure tensor solvers for the CHITA problem (no nn.Module, no Lightning)."""

from .active_set import active_set_iht
from .backsolve import backsolve, fit_on_support, ridge_on_support
from .block import (
    BlockSolveResult,
    ColumnSource,
    block_backsolve,
    block_backsolve_path,
    block_workspace_bytes,
    gram_bytes_per_column,
    layer_blocks,
)
from .block_swap import BlockSwap, block_swap_search
from .constraint import GLOBAL_TOP_K, GlobalTopK, LayerLoss, SparsityConstraint
from .dead import LiveRestriction, dead_columns, restrict_to_live, solve_live
from .flops import FlopBudget
from .iht import INITS, iht
from .nm import NM, nm_groups
from .per_layer import PerLayer, allocate
from .polish import POLISH_METHODS, Polish
from .problem import Problem, hard_threshold, top_k_support
from .proxy import layer_loss, nested_fit_losses
from .result import SolveResult
from .ridge import fit_path, ridge_path, with_l2
from .solvers import IHT, ActiveSet, Backsolve, Solver, Swap
from .swap import swap_path, swap_search
from .woodfisher import UPDATES as WOODFISHER_UPDATES
from .woodfisher import BlockInverseFisher, obs_update, woodfisher

__all__ = [
    "GLOBAL_TOP_K",
    "IHT",
    "INITS",
    "NM",
    "POLISH_METHODS",
    "WOODFISHER_UPDATES",
    "ActiveSet",
    "Backsolve",
    "BlockInverseFisher",
    "BlockSolveResult",
    "BlockSwap",
    "ColumnSource",
    "FlopBudget",
    "GlobalTopK",
    "LayerLoss",
    "LiveRestriction",
    "PerLayer",
    "Polish",
    "Problem",
    "SolveResult",
    "Solver",
    "SparsityConstraint",
    "Swap",
    "active_set_iht",
    "allocate",
    "backsolve",
    "block_backsolve",
    "block_backsolve_path",
    "block_swap_search",
    "block_workspace_bytes",
    "dead_columns",
    "fit_on_support",
    "fit_path",
    "gram_bytes_per_column",
    "hard_threshold",
    "iht",
    "layer_blocks",
    "layer_loss",
    "nested_fit_losses",
    "nm_groups",
    "obs_update",
    "restrict_to_live",
    "ridge_on_support",
    "ridge_path",
    "solve_live",
    "swap_path",
    "swap_search",
    "top_k_support",
    "with_l2",
    "woodfisher",
]
