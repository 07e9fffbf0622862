"""Sparsity schedules and pruning epochs.

Pure functions of integers and floats, shared by CHITA++ (stages) and gradual pruning
(epochs), in the spirit of torch's LR schedulers.
"""

from __future__ import annotations

from ..errors import UserError, check_int

SPARSITY_SCHEDULES = ("cubic", "polynomial", "exponential", "linear", "constant")


def sparsity_levels(kind: str, base_level: float, target: float, num_stages: int, power: float = 3.0) -> list[float]:
    """Sparsity of each of `num_stages` stages, rising from `base_level` to `target`.

    cubic/polynomial: Zhu & Gupta, s_t = target + (base − target)(1 − t)^power with
    t = i/(num_stages − 1) (cubic: power 3); linear in sparsity; exponential: the density
    1 − s shrinks geometrically; constant: every stage at the target. The first stage
    is at `base_level` and the last at `target`; a single stage goes straight to `target`.
    """
    if kind not in SPARSITY_SCHEDULES:  # the pruners and run kinds validate user input
        raise ValueError(f"kind must be one of {', '.join(SPARSITY_SCHEDULES)}, got {kind!r}")
    check_int("number of stages", num_stages, 1)
    if not 0 <= base_level <= target < 1:
        raise UserError(f"base_level={base_level!r} is not allowed; it must be in [0, sparsity={target}]")
    if num_stages == 1 or kind == "constant":
        return [target] * num_stages
    levels = []
    for i in range(num_stages):
        t = i / (num_stages - 1)
        if kind in ("cubic", "polynomial"):
            exponent = 3.0 if kind == "cubic" else power
            level = target + (base_level - target) * (1 - t) ** exponent
        elif kind == "linear":
            level = base_level + (target - base_level) * t
        else:  # exponential in density
            level = 1 - (1 - base_level) * ((1 - target) / (1 - base_level)) ** t
        levels.append(level)
    levels[-1] = target  # exact, whatever the rounding
    return levels


def pruning_epochs(first_epoch: int, prune_every: int, nprune_epochs: int) -> list[int]:
    """Epochs at which to prune: `first_epoch`, then every `prune_every`, `nprune_epochs` times."""
    check_int("first_epoch", first_epoch, 0)
    check_int("prune_every", prune_every, 1)
    check_int("nprune_epochs", nprune_epochs, 1)
    return [first_epoch + i * prune_every for i in range(nprune_epochs)]
