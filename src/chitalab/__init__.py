"""CHITA pruning suite: combinatorial pruning of pretrained networks (Benbaki et al., ICML 2023)."""

__version__ = "0.1.0"
