"""One job from config to results.json: read the config, build the job, run its kind, write
the results once."""

from __future__ import annotations

import logging
import math
import time

import torch

from ..errors import UserError
from ..outputs import flatten_metrics, peak_memory_mb, save_outputs
from ..params import check_finite_state, keep_count
from .job import Job, JobConfig, RunOutcome, build_job
from .loggers import log_run, mark_failed
from .provenance import provenance
from .results import Results, Seconds, Sparsity

log = logging.getLogger(__name__)


def deploy_block(job: Job) -> dict:
    """The pruned model's size, MACs and CPU latency, measured on one training sample's shape."""
    from ..export import deploy_summary  # only once a run has something to measure

    x, _ = job.config.datamodule.training_samples(torch.arange(1))
    options = job.config.deploy
    return deploy_summary(
        job.net, job.pruned.names, x, latency=options.latency, latency_budget_s=options.latency_budget_s
    )


def collect_results(job: Job, outcome: RunOutcome, total_seconds: float, deploy: dict | None) -> Results:
    """The job's `Results` from what its run kind measured."""
    c = job.config
    return Results(
        model=c.model.name,
        dataset=c.dataset,
        schedule=c.kind.name,
        method=c.pruner.label(),
        pruner=c.pruner.settings(),
        pattern=job.constraint.settings(),
        seed=c.seed,
        device=str(c.device),
        sparsity=Sparsity(requested=job.sparsity, measured=job.pruned.sparsity()),
        num_pruned_weights=job.pruned.numel,
        num_nonzero=job.pruned.numel - job.pruned.count_zeros(),
        dense=outcome.dense,
        pruned=outcome.pruned,
        seconds=Seconds(fisher=outcome.fisher_seconds, solver=outcome.solver_seconds, total=total_seconds),
        peak_memory_mb=peak_memory_mb(),
        solver=outcome.solver,
        trajectory=outcome.trajectory,
        report=c.report,
        deploy=deploy,
        provenance=provenance(c.model, c.datamodule.data_source()),
        pattern_check=job.constraint.check(job.pruned.flatten(), keep_count(job.sparsity, job.pruned.numel)),
    )


def logged_metrics(results: Results) -> dict[str, float]:
    """The summary metrics for the logger: sparsity (total and per layer), accuracy, seconds,
    memory, MACs and whether the pattern holds."""
    summary = results.to_dict()
    keys = ("sparsity", "dense", "pruned", "seconds", "peak_memory_mb")
    metrics = flatten_metrics({k: summary[k] for k in keys})
    metrics["pattern/holds"] = float(bool(results.pattern_check.get("holds")))
    macs = (results.deploy or {}).get("macs")
    if macs:
        metrics.update({"macs/dense": macs["dense"], "macs/sparse": macs["sparse"]})
        for layer in macs["layers"]:
            if layer["pruned"]:
                metrics[f"layers/{layer['name']}/sparsity"] = layer["sparsity"]
    return metrics


def check_finite_results(job: Job, outcome: RunOutcome) -> None:
    """A pruned model with a NaN or inf weight, loss or objective is a failed job, not a result."""
    check_finite_state(job.net, "after pruning", f"the pruner ({job.config.pruner.label()}) diverged; check its knobs")
    numbers = flatten_metrics({"dense": vars(outcome.dense), "pruned": vars(outcome.pruned), "solver": outcome.solver})
    bad = [f"{key}={value}" for key, value in numbers.items() if not math.isfinite(value)]
    if bad:
        raise UserError(f"the run produced non-finite values ({', '.join(bad[:5])}); no results were written")


def run(config: JobConfig, start: float) -> Results:
    """Run the job `config` describes (read at `start`, a perf_counter time); returns the
    results also written to results.json. A failure closes a started logger run as failed."""
    job = build_job(config)
    try:
        outcome = job.config.kind.execute(job)
        check_finite_results(job, outcome)
        deploy = deploy_block(job) if outcome.writes_outputs else None
        results = collect_results(job, outcome, time.perf_counter() - start, deploy)
        if outcome.writes_outputs:
            save_outputs(job.config.out_dir, job.net.state_dict(), results.to_json())
            summary = results.to_dict()
            metadata = {key: summary[key] for key in ("model", "dataset", "method", "schedule", "seed")}
            metadata |= {"sparsity": results.sparsity.measured, "pruned_test_acc": results.pruned.test_acc}
            log_run(job.logger, logged_metrics(results), outcome.unlogged_series, job.config.out_dir, metadata)
            log.info("wrote %s", job.config.out_dir)
    except BaseException:
        mark_failed(job.built_logger())
        raise
    return results
