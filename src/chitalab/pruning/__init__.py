"""Pruners composed of a gradient source, a solver and the run's sparsity constraint:
`mp`, `woodfisher`, `chita`, `chita_block` and `chitapp` (multi-stage); named sample streams;
sparsity schedules."""

from .base import Evaluate, LossFn, PruneContext, Pruner, PruneResult
from .chita import ChitaPruner
from .chita_block import ChitaBlockPruner
from .magnitude import MagnitudePruner
from .multistage import MultiStagePruner
from .ridge_choice import RidgeChoice
from .step_search import StepSearch
from .streams import DrawKey, SampleStream
from .woodfisher import WoodFisherPruner

__all__ = [
    "ChitaBlockPruner",
    "ChitaPruner",
    "DrawKey",
    "Evaluate",
    "LossFn",
    "MagnitudePruner",
    "MultiStagePruner",
    "PruneContext",
    "PruneResult",
    "Pruner",
    "RidgeChoice",
    "SampleStream",
    "StepSearch",
    "WoodFisherPruner",
]
