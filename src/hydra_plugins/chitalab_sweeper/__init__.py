"""Hydra plugin: the `grids` sweeper (see grid_sweeper.py)."""
