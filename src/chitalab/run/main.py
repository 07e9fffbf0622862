"""One job from config to results.json: read the config, build the job, run its kind, write
the results once."""

from __future__ import annotations

import logging
import time

from ..outputs import flatten_metrics, peak_memory_mb, save_outputs
from .job import Job, JobConfig, RunOutcome, build_job
from .loggers import log_run
from .results import Results, Seconds, Sparsity

log = logging.getLogger(__name__)


def collect_results(job: Job, outcome: RunOutcome, total_seconds: float) -> Results:
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
        sparsity=Sparsity(requested=c.sparsity, measured=job.pruned.sparsity()),
        num_pruned_weights=job.pruned.numel,
        num_nonzero=job.pruned.numel - job.pruned.count_zeros(),
        dense=outcome.dense,
        pruned=outcome.pruned,
        seconds=Seconds(fisher=outcome.fisher_seconds, solver=outcome.solver_seconds, total=total_seconds),
        peak_memory_mb=peak_memory_mb(),
        solver=outcome.solver,
        trajectory=outcome.trajectory,
        report=c.report,
    )


def run(config: JobConfig, start: float) -> Results:
    """Run the job `config` describes (read at `start`, a perf_counter time); returns the
    results also written to results.json."""
    job = build_job(config)
    outcome = job.config.kind.execute(job)
    results = collect_results(job, outcome, time.perf_counter() - start)
    if outcome.writes_outputs:
        save_outputs(job.config.out_dir, job.net.state_dict(), results.to_json())
        summary = results.to_dict()
        metrics = flatten_metrics({k: summary[k] for k in ("sparsity", "dense", "pruned", "seconds", "peak_memory_mb")})
        log_run(job.logger, job.config.config, metrics, outcome.unlogged_series)
        log.info("wrote %s", job.config.out_dir)
    return results
