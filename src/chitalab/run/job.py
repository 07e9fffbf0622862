"""A job: the typed configuration (`JobConfig`), and the objects built from it before any long
work (`Job`: data set up, model loaded and checked, pruned weights, constraint, samples)."""

from __future__ import annotations

import inspect
import logging
import os
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import torch

from ..data import PruningDataModule
from ..errors import ArgumentError, UserError
from ..models import ModelSpec, load_model, loss_function
from ..params import PrunedParams, keep_count, select_pruned, sparsity_keeping
from ..progress import on_terminal
from ..pruning import DrawKey, Evaluate, PruneContext, Pruner, SampleStream
from ..solver import SparsityConstraint
from ..training import recalibrate_batchnorm
from .dense_cache import DenseBaseline, DenseCache, baseline_key
from .results import Evaluation, ReportKeys

if TYPE_CHECKING:  # Lightning is imported only by the runs that build a Trainer (gradual)
    import lightning.pytorch as pl
    from lightning.pytorch.callbacks import Callback

log = logging.getLogger(__name__)

BATCHNORM_DRAW = DrawKey("batchnorm")
"""The stream key of the BatchNorm re-estimation subset."""

PatternFactory = Callable[..., SparsityConstraint]
"""shapes= -> constraint: the `_partial_` pattern, bound to the pruned tensors' shapes by the job."""


@dataclass
class RunOutcome:
    """What a run kind measured; the run turns it into `Results`."""

    dense: Evaluation
    pruned: Evaluation
    fisher_seconds: float
    solver_seconds: float
    solver: dict
    trajectory: list[dict]
    writes_outputs: bool  # false on the non-zero ranks of a DDP run
    unlogged_series: list[dict]  # trajectory records the logger has not seen yet (one step each)


class RunKind(Protocol):
    """One-shot or gradual (`schedule._target_`): how a job prunes."""

    name: str
    batch_size: int | None

    def execute(self, job: Job) -> RunOutcome: ...


@dataclass(frozen=True)
class DeployOptions:
    """What the run's deploy block measures (see `chitalab.export.deploy_summary`)."""

    latency: bool = True
    latency_budget_s: float = 2.0


@dataclass
class JobConfig:
    """Everything a job is built from, read and validated before any long work starts."""

    seed: int
    sparsity: float
    progress: bool
    out_dir: Path
    ckpt_path: str | None
    resume_identity: dict[str, Any]  # the settings a resumed run must share with its checkpoint
    allow_resume_mismatch: bool
    device: torch.device
    model: ModelSpec
    dataset: str
    num_classes: int
    datamodule: PruningDataModule
    pruner: Pruner
    pattern: PatternFactory
    kind: RunKind
    trainer: Callable[..., pl.Trainer]
    logger: Callable[[], Any] | None  # builds the experiment logger (imports it) on first use
    report: ReportKeys
    deploy: DeployOptions
    config: dict[str, Any]  # the resolved config, for the experiment logger
    dense_cache: Path | None = None  # folder of the dense baseline cache (None: off)
    sample_counts: dict[str, int] = field(default_factory=dict)  # config key -> training samples it draws at once


@dataclass
class Job:
    """A job ready to run."""

    config: JobConfig
    net: torch.nn.Module
    pruned: PrunedParams
    constraint: SparsityConstraint
    samples: SampleStream
    sparsity: float  # the target: `config.sparsity`, or the one the pattern fixes (N:M)
    _logger_future: Future | None = field(default=None, init=False, repr=False)

    def start_logger(self) -> None:
        """Build the experiment logger and start its run in a background thread (W&B's start-up
        takes seconds; it then overlaps the job's work). `logger` waits for it."""
        if self.config.logger is not None and self._logger_future is None:
            pool = ThreadPoolExecutor(1, thread_name_prefix="logger")
            self._logger_future = pool.submit(started_logger, self.config.logger, self.config.config)
            pool.shutdown(wait=False)  # the thread ends with its one task

    @cached_property
    def logger(self) -> Any:
        """The experiment logger (None: none), built on first use (or by `start_logger`) and
        then shared by the Trainer and the final summary."""
        if self._logger_future is not None:
            return self._logger_future.result()
        return started_logger(self.config.logger, self.config.config) if self.config.logger is not None else None

    def built_logger(self) -> Any:
        """The experiment logger if it has been built (or is being started), else None."""
        if self._logger_future is not None or "logger" in self.__dict__:
            return self.logger
        return None

    @property
    def loss_fn(self) -> Callable[..., torch.Tensor]:
        return loss_function(self.net)

    def trainer(self, callbacks: Sequence[Callback] = (), **kwargs: Any) -> pl.Trainer:
        """The configured Lightning Trainer with the job's logger, folder, progress and `kwargs`."""
        c = self.config
        return c.trainer(
            logger=self.logger if self.logger is not None else False,
            callbacks=list(callbacks),
            enable_progress_bar=c.progress and on_terminal(),  # no carriage returns in log files
            default_root_dir=str(c.out_dir),
            **kwargs,
        )

    def recalibrate_batchnorm(self, channels_last: bool = False) -> int | None:
        """Re-estimate BatchNorm statistics when the model asks for it: on
        `model.bn_recalibration_samples` training samples drawn from the "batchnorm" stream
        (batched and augmented as the training batches), or one pass over all training batches
        when that is None. Returns the number of samples used (None: no re-estimation)."""
        spec, data = self.config.model, self.config.datamodule
        if not spec.bn_recalibration:
            return None
        net = self.net.to(self.config.device)
        if spec.bn_recalibration_samples is None:
            recalibrate_batchnorm(net, data.train_dataloader(), self.config.progress, channels_last)
            return data.num_train
        count = min(spec.bn_recalibration_samples, data.num_train)
        index = self.samples.indices(count, BATCHNORM_DRAW)
        recalibrate_batchnorm(net, data.training_batches(index), self.config.progress, channels_last)
        log.info("BatchNorm statistics from %d of %d training samples", count, data.num_train)
        return count

    def dense_baseline(self, evaluate: Evaluate, channels_last: bool = False) -> Evaluation:
        """Re-estimate BatchNorm (`recalibrate_batchnorm`) and evaluate the dense model, or, on a
        hit of the dense baseline cache, restore the re-estimated buffers and the metrics."""
        c = self.config
        cache = DenseCache(c.dense_cache) if c.dense_cache is not None else None
        key = ""
        if cache is not None:
            settings = {
                "dataset": c.config.get("dataset"),
                "bn_recalibration": c.model.bn_recalibration,
                "bn_recalibration_samples": c.model.bn_recalibration_samples,
                "seed": c.seed,
                "channels_last": channels_last,
                "device": str(c.device),
            }
            key = baseline_key(self.net, settings)
            hit = cache.load(key)
            if hit is not None:
                self.net.load_state_dict(hit.buffers, strict=False)
                self.net.to(c.device).eval()
                log.info("dense baseline cache: hit (%s)", cache.path(key))
                return Evaluation(hit.test_acc, hit.test_loss, cached=True)
        self.recalibrate_batchnorm(channels_last=channels_last)
        self.net.to(c.device).eval()
        dense = Evaluation.of(evaluate())
        if cache is not None:
            buffers = {name: b.detach().cpu().clone() for name, b in self.net.named_buffers()}
            if cache.save(key, DenseBaseline(buffers, dense.test_acc, dense.test_loss)):
                log.info("dense baseline cache: miss; written to %s", cache.path(key))
        return dense

    def context(self, evaluate: Evaluate | None = None) -> PruneContext:
        """The pruner's view of the job (one-shot: step 0)."""
        return PruneContext(
            model=self.net,
            pruned=self.pruned,
            loss_fn=self.loss_fn,
            samples=self.samples,
            constraint=self.constraint,
            progress=self.config.progress,
            evaluate=evaluate,
        )


def started_logger(factory: Callable[[], Any], config: dict[str, Any]) -> Any:
    """The logger `factory` builds, with its run started (`experiment`: W&B's init) and the job's
    `config` logged at once (a long or crashed run shows it from the start)."""
    logger = factory()
    run: Any = getattr(logger, "experiment", None)
    logger.log_hyperparams(config)
    if getattr(run, "dir", None):  # W&B (its own banner is silenced: chitalab.noise)
        log.info("W&B run %s in %s (`wandb sync` uploads an offline run)", run.name, Path(run.dir).parent)
    return logger


def check_compatible(net: torch.nn.Module, datamodule: PruningDataModule, model_name: str, dataset_name: str) -> None:
    """Run two samples through the model so a shape mismatch fails early with a clear message."""
    x, _ = datamodule.training_samples(torch.arange(2))
    try:
        with torch.no_grad():
            net.eval()(x)
    except RuntimeError as err:
        raise UserError(
            f"model {model_name} cannot take {dataset_name} inputs of shape {tuple(x.shape[1:])}: {err}"
        ) from None


def bind_pattern(
    factory: PatternFactory, net: torch.nn.Module, pruned: PrunedParams, datamodule: PruningDataModule
) -> SparsityConstraint:
    """The pattern bound to the pruned tensors' `shapes`, and to their `macs_per_weight` (uses
    of one weight per sample, from a forward pass of one training sample) when it asks for them."""
    kwargs: dict[str, Any] = {"shapes": pruned.shapes}
    if "macs_per_weight" in inspect.signature(factory).parameters:
        from ..export import measure_layer_macs  # only the patterns that price weights need it

        x, _ = datamodule.training_samples(torch.arange(1))
        uses = {layer.name: layer.uses_per_weight for layer in measure_layer_macs(net, x, pruned.names)}
        kwargs["macs_per_weight"] = [uses.get(name, 0) for name in pruned.names]
    return factory(**kwargs)


def target_sparsity(constraint: SparsityConstraint, sparsity: float, numel: int) -> float:
    """The run's target: `sparsity`, unless the pattern fixes the budget (N:M), whose sparsity
    then replaces it (with a warning when the two differ)."""
    kept = constraint.fixed_keep()
    if kept is None:
        return sparsity
    fixed = sparsity_keeping(kept, numel)
    if keep_count(sparsity, numel) != kept:
        log.warning("the pattern fixes the sparsity at %.4g (keep %d); sparsity=%g is not used", fixed, kept, sparsity)
    return fixed


def check_sample_counts(needed: int, num_train: int, counts: dict[str, int]) -> None:
    """Refuse a pruner that draws more training samples at once than the set has, naming the
    keys that ask for too many (`counts`: config key -> samples it draws; the pruner's own
    attribute names when the job was not read from a config)."""
    if needed <= num_train:
        return
    over = [f"{key} ({count})" for key, count in counts.items() if count > num_train]
    keys = " and ".join(over) or "the pruner's n_samples x mini_bsz, step_search.samples or ridge_choice.samples"
    raise UserError(
        f"the pruner needs {needed} training samples at once but the training set has {num_train}; "
        f"lower {keys} to at most {num_train}"
    )


def warn_empty(constraint: SparsityConstraint, pruned: PrunedParams, sparsity: float) -> None:
    """Warn when the sparsity keeps no weight at all, or none of a layer under a pattern that
    fixes each layer's share (`layer_budgets`: per_layer's uniform mode)."""
    k = keep_count(sparsity, pruned.numel)
    if k == 0:
        log.warning(
            "sparsity=%g keeps no weight of the %d pruned: the pruned layers will be all zeros "
            "(a sparsity below %.6g keeps at least one)",
            sparsity,
            pruned.numel,
            1 - 1 / pruned.numel,
        )
        return
    budgets = getattr(constraint, "layer_budgets", None)
    if budgets is None or getattr(constraint, "mode", None) != "uniform":
        return
    empty = [name for name, kept in zip(pruned.names, budgets(k)) if kept == 0]
    if empty:
        log.warning(
            "sparsity=%g keeps no weight of %d layer(s) under pattern.mode=uniform (%s): they will be all zeros",
            sparsity,
            len(empty),
            ", ".join(empty[:5]) + (", ..." if len(empty) > 5 else ""),
        )


def build_job(config: JobConfig) -> Job:
    """Load the model, set up the data (in the model's preprocessing where it has one), check that
    they fit, select the pruned weights and bind the pattern."""
    datamodule = config.datamodule
    log.info("setting up %s and %s", config.dataset, config.model.name)
    if os.environ.get("LOCAL_RANK", "0") == "0":  # DDP: one download per machine, before the other ranks start
        datamodule.prepare_data()
    net = load_model(config.model)
    datamodule.adapt_to(net)
    datamodule.setup("fit")
    check_sample_counts(config.pruner.samples_needed(), datamodule.num_train, config.sample_counts)
    check_compatible(net, datamodule, config.model.name, config.dataset)
    pruned = select_pruned(net, list(config.model.include), list(config.model.exclude))
    try:
        constraint = bind_pattern(config.pattern, net, pruned, datamodule)
    except ArgumentError as err:
        raise err.with_prefix("pattern") from None
    sparsity = target_sparsity(constraint, config.sparsity, pruned.numel)
    try:
        constraint.check_budget(keep_count(sparsity, pruned.numel))
    except ArgumentError as err:
        raise err.with_prefix("pattern") from None
    warn_empty(constraint, pruned, sparsity)
    log.info(
        "pruning %d weights in %d tensors of %s to sparsity %.4g (keep %d) with %s, %s",
        pruned.numel,
        len(pruned.names),
        config.model.name,
        sparsity,
        keep_count(sparsity, pruned.numel),
        config.pruner.label(),
        config.kind.name,
    )
    return Job(config, net, pruned, constraint, SampleStream(datamodule, config.seed), sparsity)
