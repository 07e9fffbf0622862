"""One-shot runs: evaluate the dense model, prune once (or in CHITA++ stages), evaluate again.

No Trainer: the re-estimation and both evaluations are plain loops under
`torch.inference_mode` (`training.inference`), which also keeps Lightning out of the process."""

from __future__ import annotations

import logging

from ..outputs import flatten_metrics
from ..progress import heartbeat
from ..training.inference import evaluate_model
from .job import Job, RunOutcome
from .results import Evaluation

log = logging.getLogger(__name__)
LIVE_STAGE_KEYS = ("test_acc", "test_loss", "measured_sparsity")
"""What each CHITA++ stage logs as it ends; the rest of its record (timings, objective) follows the run."""


class OneShot:
    """`schedule=oneshot`: prune the pretrained model once, no fine-tuning. `channels_last`:
    the BatchNorm re-estimation and the evaluations run convolutions in that memory format
    (faster on CPU for ResNet20; the same results)."""

    name = "oneshot"
    batch_size: int | None = None

    def __init__(self, channels_last: bool = True):
        self.channels_last = channels_last

    def execute(self, job: Job) -> RunOutcome:
        c = job.config
        job.start_logger()  # W&B starts while the job works
        test_loader = c.datamodule.test_dataloader()

        def evaluate() -> dict[str, float]:
            return evaluate_model(job.net, test_loader, c.num_classes, channels_last=self.channels_last)

        with heartbeat("dense baseline", c.progress):
            dense = job.dense_baseline(evaluate, channels_last=self.channels_last)
        log.info("dense model: test accuracy %.2f%%, loss %.4f", dense.test_acc, dense.test_loss)
        stages_done = 0

        def evaluate_stage() -> dict[str, float]:
            """A CHITA++ stage's evaluation, logged at once with its sparsity (step = stage)."""
            nonlocal stages_done
            metrics = evaluate()
            if job.logger is not None:
                live = {**metrics, "measured_sparsity": job.pruned.sparsity()}
                job.logger.log_metrics(flatten_metrics(live, "stage/"), step=stages_done)
            stages_done += 1
            return metrics

        with heartbeat(f"pruning with {c.pruner.label()}", c.progress):
            outcome = c.pruner.prune(job.context(evaluate=evaluate_stage), job.sparsity)
        job.pruned.assign(outcome.weights)
        with heartbeat("evaluating the pruned model", c.progress):
            after = Evaluation.of(evaluate())
        log.info("pruned model: test accuracy %.2f%%, loss %.4f", after.test_acc, after.test_loss)
        return RunOutcome(
            dense=dense,
            pruned=after,
            fisher_seconds=outcome.fisher_seconds,
            solver_seconds=outcome.solver_seconds,
            solver=outcome.stats,
            trajectory=outcome.stages,
            writes_outputs=True,  # a single process: no Trainer, no DDP ranks
            unlogged_series=[{k: v for k, v in r.items() if k not in LIVE_STAGE_KEYS} for r in outcome.stages],
        )
