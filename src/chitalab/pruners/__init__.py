"""Pruners behind one interface: `mp` (magnitude), `woodfisher`, `chita` and `chitapp` (multi-stage)."""

from .base import PruneContext, Pruner, PruneResult
from .chita import ChitaPruner
from .magnitude import MagnitudePruner
from .multistage import MultiStagePruner
from .woodfisher import WoodFisherPruner

__all__ = [
    "ChitaPruner",
    "MagnitudePruner",
    "MultiStagePruner",
    "PruneContext",
    "PruneResult",
    "Pruner",
    "WoodFisherPruner",
]
