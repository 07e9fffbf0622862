"""The declared type and range of every config knob, checked on the composed config before torch
is imported (`check_config`), so that a bad value is refused in well under a second with one
line naming its full key.

One declaration per config node, in a small spec table rather than dataclasses (Hydra structured
configs): the nodes are composed from YAML files and group options whose shape depends on the
option chosen (`pruner=mp` has no `gradients`, `pruner=chitapp` nests a whole pruner under
`stage_pruner`), and a class's node may sit anywhere (`pruner.gradients`,
`pruner.stage_pruner.gradients`). So a node that is instantiated is declared once by its
`_target_`, wherever it sits, and its full key comes from where the walk finds it; the plain
nodes (the top level, `cache`, `trainer`, `model`, `dataset`) are declared by their path. A
structured-config schema would have to be repeated for every place and option, and would
refuse user classes plugged in by `_target_` that the table simply does not know (their own
constructors check them). The classes keep their own checks for library users; a test keeps
the choices declared here equal to the library's.

This module imports neither torch nor Lightning: it runs before either is loaded.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf

from .errors import ArgumentError

MISSING = object()


def refuse(key: str, value: object, rule: str) -> ArgumentError:
    """The one-line error for a bad value: `key=value is not allowed; rule`."""
    return ArgumentError(key, f"{key}={shown(value)} is not allowed; {rule}")


def shown(value: object) -> str:
    """A value as the user typed it (strings quoted, booleans and null in YAML's spelling)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    return repr(value)


def is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


@dataclass(frozen=True)
class Knob:
    """A knob's declaration: `check(key, value)` returns the value (normalised: a single pattern
    string becomes a one-element list) or raises the one-line error naming `key`."""

    optional: bool = False  # null allowed

    def check(self, key: str, value: Any) -> Any:
        if value is None:
            if self.optional:
                return None
            raise refuse(key, value, self.rule())
        return self.check_value(key, value)

    def check_value(self, key: str, value: Any) -> Any:
        raise NotImplementedError

    def rule(self) -> str:
        """What is allowed, in words (the second half of the error)."""
        raise NotImplementedError

    def bad_values(self) -> tuple[Any, Any]:
        """One out-of-range value and one of the wrong type, for the tests' walk over every knob."""
        raise NotImplementedError


def with_null(knob: Knob, rule: str) -> str:
    return f"{rule}, or null" if knob.optional else rule


@dataclass(frozen=True)
class Int(Knob):
    low: int = 0
    high: int | None = None

    def check_value(self, key: str, value: Any) -> Any:
        if not is_int(value) or value < self.low or (self.high is not None and value > self.high):
            raise refuse(key, value, self.rule())
        return value

    def rule(self) -> str:
        span = f"in [{self.low}, {self.high}]" if self.high is not None else f">= {self.low}"
        return with_null(self, f"it must be an integer {span}")

    def bad_values(self) -> tuple[Any, Any]:
        return (self.low - 1 if self.high is None else self.high + 1), "abc"


@dataclass(frozen=True)
class Number(Knob):
    low: float = 0.0
    inclusive: bool = True
    high: float | None = None  # inclusive
    wording: str | None = None  # replaces the default wording of the range

    def check_value(self, key: str, value: Any) -> Any:
        ok = is_number(value) and (value >= self.low if self.inclusive else value > self.low)
        if not ok or (self.high is not None and value > self.high):
            raise refuse(key, value, self.rule())
        return value

    def rule(self) -> str:
        if self.wording:
            return with_null(self, f"it must be {self.wording}")
        if self.high is not None:
            return with_null(self, f"it must be in {'[' if self.inclusive else '('}{self.low:g}, {self.high:g}]")
        return with_null(self, f"it must be a finite number {'>=' if self.inclusive else '>'} {self.low:g}")

    def bad_values(self) -> tuple[Any, Any]:
        return (self.low - 1 if self.high is None else self.high + 1), "abc"


@dataclass(frozen=True)
class Fraction(Knob):
    """A number in [0, 1): a sparsity."""

    def check_value(self, key: str, value: Any) -> Any:
        if not is_number(value) or not 0 <= value < 1:
            raise refuse(key, value, self.rule())
        return value

    def rule(self) -> str:
        return with_null(self, "it must be a number in [0, 1)")

    def bad_values(self) -> tuple[Any, Any]:
        return 1.5, "abc"


@dataclass(frozen=True)
class Bool(Knob):
    def check_value(self, key: str, value: Any) -> Any:
        if not isinstance(value, bool):
            raise refuse(key, value, self.rule())
        return value

    def rule(self) -> str:
        return with_null(self, "it must be true or false")

    def bad_values(self) -> tuple[Any, Any]:
        return 2, "maybe"


@dataclass(frozen=True)
class Choice(Knob):
    options: tuple[Any, ...] = ()

    def check_value(self, key: str, value: Any) -> Any:
        if isinstance(value, bool) or value not in self.options:
            raise refuse(key, value, self.rule())
        return value

    def rule(self) -> str:
        return with_null(self, f"choose one of: {', '.join(str(o) for o in self.options)}")

    def bad_values(self) -> tuple[Any, Any]:
        return "no_such_option", 3.5


@dataclass(frozen=True)
class Patterns(Knob):
    """A list of shell patterns; a single string is one pattern (not its characters)."""

    def check_value(self, key: str, value: Any) -> Any:
        if isinstance(value, str):
            return [value]
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            raise refuse(key, value, self.rule())
        return value

    def rule(self) -> str:
        return with_null(self, "give a pattern or a list of patterns (strings), e.g. [fc1.weight,'conv*']")

    def bad_values(self) -> tuple[Any, Any]:
        return [""], [3]


@dataclass(frozen=True)
class Numbers(Knob):
    """A non-empty list of numbers in (low, high]; a single number is a list of one."""

    low: float = 0.0
    high: float = math.inf

    def check_value(self, key: str, value: Any) -> Any:
        values = [value] if is_number(value) else value
        if (
            not isinstance(values, list)
            or not values
            or not all(is_number(v) and self.low < v <= self.high for v in values)
        ):
            raise refuse(key, value, self.rule())
        return values

    def rule(self) -> str:
        span = f"> {self.low:g}" if math.isinf(self.high) else f"in ({self.low:g}, {self.high:g}]"
        return with_null(self, f"give a number or a non-empty list of numbers {span}")

    def bad_values(self) -> tuple[Any, Any]:
        return [self.low - 1], "abc"


@dataclass(frozen=True)
class Ints(Knob):
    """A non-empty list of integers >= low; a single integer is a list of one."""

    low: int = 1

    def check_value(self, key: str, value: Any) -> Any:
        values = [value] if is_int(value) else value
        if not isinstance(values, list) or not values or not all(is_int(v) and v >= self.low for v in values):
            raise refuse(key, value, self.rule())
        return values

    def rule(self) -> str:
        return with_null(self, f"give an integer or a non-empty list of integers >= {self.low}")

    def bad_values(self) -> tuple[Any, Any]:
        return [self.low - 1], "abc"


@dataclass(frozen=True)
class Node(Knob):
    """A part built from its own config node (a mapping with `_target_`), e.g. `pruner.gradients`:
    a string or number in its place is refused here, not by an AttributeError deep in the job."""

    def check_value(self, key: str, value: Any) -> Any:
        if not isinstance(value, dict) or "_target_" not in value:
            raise refuse(key, value, self.rule())
        return value

    def rule(self) -> str:
        return with_null(self, "give a config node with a _target_ (choose a group option, e.g. pruner/solver=iht)")

    def bad_values(self) -> tuple[Any, Any]:
        return {"iterations": 1}, "abc"


AUTO = "auto"


@dataclass(frozen=True)
class Ridge(Knob):
    """A ridge λ: a number >= 0, a non-empty list of them (a grid) or `auto`."""

    def check_value(self, key: str, value: Any) -> Any:
        if value == AUTO or (is_number(value) and value >= 0):
            return value
        if not isinstance(value, list) or not value:
            raise refuse(key, value, self.rule())
        for v in value:  # a grid: the bad element is named, as the pruner names it
            if not (is_number(v) and v >= 0):
                raise refuse(key, v, "every λ of a grid must be a finite number >= 0")
        return value

    def rule(self) -> str:
        return "give a number >= 0, a list of numbers (a grid) or auto"

    def bad_values(self) -> tuple[Any, Any]:
        return -1, "abc"


@dataclass(frozen=True)
class Devices(Knob):
    """Lightning's `devices`: a count >= 1, -1 (all), `auto`, a list of device indices or their
    comma-separated string ("0,1")."""

    def check_value(self, key: str, value: Any) -> Any:
        if value == AUTO or (is_int(value) and (value >= 1 or value == -1)):
            return value
        if isinstance(value, list) and value and all(is_int(v) and v >= 0 for v in value):
            return value
        if isinstance(value, str):
            parts = [p.strip() for p in value.strip().strip(",").split(",")]
            if parts == ["-1"] or (parts and all(p.isdigit() for p in parts)):
                return value
        raise refuse(key, value, self.rule())

    def rule(self) -> str:
        return "give a device count >= 1, -1 (all), auto, or a list of device indices such as [0,1]"

    def bad_values(self) -> tuple[Any, Any]:
        return 0, "abc"


LIGHTNING_PRECISIONS = (
    "transformer-engine",
    "transformer-engine-float16",
    "16-true",
    "16-mixed",
    "bf16-true",
    "bf16-mixed",
    "32-true",
    "64-true",
    "64",
    "32",
    "16",
    "bf16",
)
"""Lightning's `precision` strings (lightning.fabric.connector; a test keeps them equal); the
integers 64, 32 and 16 are accepted too."""

LIGHTNING_STRATEGIES = (
    "auto",
    "ddp",
    "ddp_spawn",
    "ddp_fork",
    "ddp_notebook",
    "ddp_find_unused_parameters_false",
    "ddp_find_unused_parameters_true",
    "ddp_spawn_find_unused_parameters_false",
    "ddp_spawn_find_unused_parameters_true",
    "ddp_fork_find_unused_parameters_false",
    "ddp_fork_find_unused_parameters_true",
    "ddp_notebook_find_unused_parameters_false",
    "ddp_notebook_find_unused_parameters_true",
    "deepspeed",
    "fsdp",
    "fsdp_cpu_offload",
    "single_device",
    "single_xla",
    "xla",
    "xla_debug",
)
"""The strategy names this suite passes to Lightning (a test checks each is in Lightning's registry)."""


@dataclass(frozen=True)
class Precision(Knob):
    def check_value(self, key: str, value: Any) -> Any:
        if (is_int(value) and value in (64, 32, 16)) or (isinstance(value, str) and value in LIGHTNING_PRECISIONS):
            return value
        raise refuse(key, value, self.rule())

    def rule(self) -> str:
        return f"choose one of: {', '.join(LIGHTNING_PRECISIONS[2:8])} (Lightning's precisions)"

    def bad_values(self) -> tuple[Any, Any]:
        return 8, "foo"


SPARSITY_SCHEDULES = ("cubic", "polynomial", "exponential", "linear", "constant")
DEAD_RULES = ("drop", "keep")
GRADIENT_DTYPES = ("float32", "float64", "bfloat16", "float16")
GRADIENT_METHODS = ("auto", "hooks", "vmap")
SOLVER_INITS = ("backsolve", "magnitude")
POLISH_METHODS = ("none", "cd", "backsolve")
WOODFISHER_UPDATES = ("joint", "independent", "none")
PER_LAYER_MODES = ("uniform", "caps", "allocated")
DATA_SOURCES = ("auto", "torchvision", "npz")
CIFAR10_NORMALIZATIONS = ("paper", "checkpoint")
ACCELERATORS = ("auto", "cpu", "gpu", "cuda")
SEED_MAX = 2**32 - 1  # numpy's and Lightning's bound

BATCH = Int(low=1)
SAMPLES = Int(low=1)
DEAD: dict[str, Knob | None] = {"dead_columns": Choice(options=DEAD_RULES), "dead_rtol": Number(low=0)}
TIME_BUDGET = Number(low=0, inclusive=False, optional=True)
IHT_KNOBS: dict[str, Knob | None] = {
    "init": Choice(options=SOLVER_INITS),
    "iterations": Int(low=0),
    "tol": Number(low=0),
    "refit": Bool(),
}
DATA_KNOBS: dict[str, Knob | None] = {"batch_size": BATCH, "num_workers": Int(low=0)}
EVAL_BATCH: dict[str, Knob | None] = {"eval_batch_size": Int(low=1, optional=True)}
IMAGE_FILES: dict[str, Knob | None] = {"source": Choice(options=DATA_SOURCES), "download": Bool(), "npz_file": None}
MULTISTAGE_PRUNER: dict[str, Knob | None] = {
    "num_stages": Int(low=1),
    "schedule": Choice(options=SPARSITY_SCHEDULES),
    "base_level": Fraction(),
    "allow_regrowth": Bool(),
}

NODES: dict[str, dict[str, Knob | None]] = {
    # pruners and their parts
    "chitalab.pruning.ChitaPruner": {
        "l2": Ridge(),
        "first_order_term": Bool(),
        **DEAD,
        "gradients": Node(),
        "solver": Node(),
        "polish": Node(optional=True),
        "ridge_choice": Node(optional=True),
        "step_search": Node(optional=True),
    },
    "chitalab.pruning.ChitaBlockPruner": {
        "l2": Ridge(),
        "block_size": Int(low=1),
        **DEAD,
        "gradients": Node(),
        "ridge_choice": Node(optional=True),
        "search": Node(optional=True),
    },
    "chitalab.pruning.WoodFisherPruner": {
        "gradients": Node(),
        "l2": Number(low=0, inclusive=False, wording="> 0 (WoodFisher inverts F + l2·I)"),
        "block_size": Int(low=1),
        "update": Choice(options=WOODFISHER_UPDATES),
        **DEAD,
    },
    "chitalab.pruning.MultiStagePruner": {**MULTISTAGE_PRUNER, "stage_pruner": Node()},
    "chitalab.pruning.MagnitudePruner": {},
    "chitalab.pruning.RidgeChoice": {"samples": SAMPLES, "batch_size": BATCH},
    "chitalab.pruning.StepSearch": {"sizes": Numbers(low=0), "samples": SAMPLES, "batch_size": BATCH},
    "chitalab.fisher.GradientSource": {
        "n_samples": SAMPLES,
        "mini_bsz": Int(low=1),
        "dtype": Choice(options=GRADIENT_DTYPES),
        "chunk_size": Int(low=1),
        "max_memory_gb": Number(low=0, inclusive=False, optional=True),
        "method": Choice(options=GRADIENT_METHODS),
        "store": Bool(),
        "store_max_gb": Number(low=0, inclusive=False),
    },
    "chitalab.solver.Swap": {"time_budget_s": TIME_BUDGET, "max_swaps": Int(low=0), "fallback": Node(optional=True)},
    "chitalab.solver.ActiveSet": {**IHT_KNOBS, "expand": Number(low=1)},
    "chitalab.solver.IHT": IHT_KNOBS,
    "chitalab.solver.Backsolve": {},
    "chitalab.solver.BlockSwap": {"time_budget_s": TIME_BUDGET, "max_swaps": Int(low=0)},
    "chitalab.solver.Polish": {"method": Choice(options=POLISH_METHODS), "sweeps": Int(low=1)},
    # patterns
    "chitalab.solver.GlobalTopK": {},
    "chitalab.solver.NM": {"n": Int(low=1), "m": Int(low=1)},
    "chitalab.solver.PerLayer": {
        "mode": Choice(options=PER_LAYER_MODES),
        "max_layer_sparsity": Fraction(optional=True),
        "densities": Numbers(low=0, high=1, optional=True),
        "resolution": Int(low=1),
    },
    "chitalab.solver.FlopBudget": {
        "flops_fraction": Number(low=0, inclusive=False, high=1),
        "weight_budget": Bool(),
    },
    # run kinds, their optimizers and schedules
    "chitalab.run.oneshot.OneShot": {"channels_last": Bool()},
    "chitalab.run.gradual.Gradual": {
        "epochs": Int(low=1),
        "first_epoch": Int(low=0),
        "prune_every": Int(low=1),
        "nprune_epochs": Int(low=1),
        "kind": Choice(options=SPARSITY_SCHEDULES),
        "base_level": Fraction(),
        "allow_regrowth": Bool(),
        "batch_size": Int(low=1, optional=True),
    },
    "chitalab.training.CosineRestarts": {"lr_min": Number(low=0)},
    "torch.optim.SGD": {
        "lr": Number(low=0, inclusive=False),
        "momentum": Number(low=0),
        "weight_decay": Number(low=0),
        "nesterov": Bool(),
    },
    "torch.optim.AdamW": {"lr": Number(low=0, inclusive=False), "weight_decay": Number(low=0)},
    "chitalab.run.job.DeployOptions": {"latency": Bool(), "latency_budget_s": Number(low=0, inclusive=False)},
    # data modules and networks
    "chitalab.data.MNISTDataModule": {
        **DATA_KNOBS,
        **EVAL_BATCH,
        **IMAGE_FILES,
        "mean": Number(low=-math.inf),
        "std": Number(low=0, inclusive=False),
    },
    "chitalab.data.CIFAR10DataModule": {**DATA_KNOBS, **EVAL_BATCH, **IMAGE_FILES, "augment": Bool()},
    "chitalab.data.SyntheticDataModule": {
        **DATA_KNOBS,
        "num_train": Int(low=1),
        "num_test": Int(low=1),
        "input_shape": Ints(low=1),
        "label_resolution": Int(low=1, optional=True),
        "seed": Int(low=0, high=SEED_MAX),
    },
    "chitalab.data.ImageFolderDataModule": {
        **DATA_KNOBS,
        "preprocessing": Choice(options=("fixed", "model")),
        "image_size": Int(low=1),
        "resize": Int(low=1),
        "mean": Numbers(low=-math.inf),
        "std": Numbers(low=0),
    },
    "chitalab.models.CifarResNet": {"depth": Int(low=8), "num_classes": Int(low=1)},
    "chitalab.models.MLPNet": {"in_features": Int(low=1), "hidden": Ints(low=1), "num_classes": Int(low=1)},
    "chitalab.run.loggers.wandb_logger": {"offline": Bool()},
}
"""The knobs of each instantiated node, by `_target_` (None: a knob with no check of its own here)."""

PATHS: dict[str, dict[str, Knob | None]] = {
    "": {
        "sparsity": Fraction(),
        "seed": Int(low=0, high=SEED_MAX),
        "progress": Bool(),
        "keep_going": Bool(),
        "allow_resume_mismatch": Bool(),
    },
    "cache": {"fisher": Bool(), "dense": Bool(), "max_gb": Number(low=0, inclusive=False)},
    "trainer": {
        "accelerator": Choice(options=ACCELERATORS),
        "devices": Devices(),
        "precision": Precision(),
        "strategy": Choice(options=LIGHTNING_STRATEGIES),
        "log_every_n_steps": Int(low=1),
        "enable_model_summary": Bool(),
    },
    "model": {
        "pretrained": Bool(),
        "trust_checkpoint": Bool(),
        "bn_recalibration": Bool(),
        "bn_recalibration_samples": Int(low=1, optional=True),
    },
    "model.prune": {"include": Patterns(), "exclude": Patterns()},
    "dataset": {"num_classes": Int(low=1), "normalization": Choice(options=CIFAR10_NORMALIZATIONS)},
    "report": {"ablation": Patterns(optional=True)},
}
"""The knobs of the plain (not instantiated) nodes, by their path."""


def declared(path: str, node: DictConfig) -> dict[str, Knob | None]:
    """The knobs declared for `node` at `path`: by path, and by its `_target_`."""
    knobs = dict(PATHS.get(path, {}))
    target = raw(node, "_target_")
    if isinstance(target, str):
        knobs.update(NODES.get(target, {}))
    return knobs


def raw(node: DictConfig, key: str) -> Any:
    """`node[key]` as plain Python (lists and dicts unwrapped), MISSING when absent or an
    interpolation (whose source is checked where it is declared)."""
    if key not in node or OmegaConf.is_interpolation(node, key):
        return MISSING
    try:
        value = node[key]
    except Exception:  # an unresolvable value (a `${hydra:...}` outside a job): not a knob of the table
        return MISSING
    if isinstance(value, (DictConfig, ListConfig)):
        try:
            return OmegaConf.to_container(value, resolve=True)
        except Exception:
            return MISSING
    return value


def nodes(cfg: DictConfig, path: str = "") -> Iterator[tuple[str, DictConfig]]:
    """Every dict node of the config with its dotted path (the root is ""), `hydra` left out."""
    yield path, cfg
    for key in map(str, cfg.keys()):
        if path == "" and key == "hydra":
            continue
        if OmegaConf.is_interpolation(cfg, key):
            continue
        child = cfg._get_node(key)
        if isinstance(child, DictConfig) and not child._is_none():
            yield from nodes(child, f"{path}.{key}" if path else key)


def check_config(cfg: DictConfig) -> None:
    """Check every declared knob of the composed config (type and range), raising the first bad
    one as an ArgumentError naming its full key; normalise in place the values given in a short
    form (one pattern string for a list of patterns, one number for a list of numbers)."""
    for path, node in list(nodes(cfg)):
        for name, knob in declared(path, node).items():
            if knob is None:
                continue
            value = raw(node, name)
            if value is MISSING:
                continue
            key = f"{path}.{name}" if path else name
            checked = knob.check(key, value)
            if checked is not value and checked != value:
                node[name] = checked


def every_knob() -> Iterator[tuple[str, str, Knob]]:
    """(where, name, knob) for every declared knob: where is a path or a `_target_`."""
    for tables in (PATHS, NODES):
        for where, knobs in tables.items():
            for name, knob in knobs.items():
                if knob is not None:
                    yield where, name, knob
