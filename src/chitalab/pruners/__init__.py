"""Pruners behind one interface: `mp` (magnitude) and `chita`."""

from .base import PruneContext, PruneResult, Pruner
from .chita import ChitaPruner
from .magnitude import MagnitudePruner

__all__ = ["ChitaPruner", "MagnitudePruner", "PruneContext", "PruneResult", "Pruner"]
