"""One-shot runs: evaluate the dense model, prune once (or in CHITA++ stages), evaluate again.

No Trainer: the re-estimation and both evaluations are plain loops under
`torch.inference_mode` (`training.inference`), which also keeps Lightning out of the process."""

from __future__ import annotations

import logging

from ..training.inference import evaluate_model
from .job import Job, RunOutcome
from .results import Evaluation

log = logging.getLogger(__name__)


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
        job.recalibrate_batchnorm(channels_last=self.channels_last)
        job.net.to(c.device).eval()
        test_loader = c.datamodule.test_dataloader()

        def evaluate() -> dict[str, float]:
            return evaluate_model(job.net, test_loader, c.num_classes, channels_last=self.channels_last)

        dense = Evaluation(**evaluate())
        log.info("dense model: test accuracy %.2f%%, loss %.4f", dense.test_acc, dense.test_loss)
        outcome = c.pruner.prune(job.context(evaluate=evaluate), job.sparsity)
        job.pruned.assign(outcome.weights)
        after = Evaluation(**evaluate())
        log.info("pruned model: test accuracy %.2f%%, loss %.4f", after.test_acc, after.test_loss)
        return RunOutcome(
            dense=dense,
            pruned=after,
            fisher_seconds=outcome.fisher_seconds,
            solver_seconds=outcome.solver_seconds,
            solver=outcome.stats,
            trajectory=outcome.stages,
            writes_outputs=True,  # a single process: no Trainer, no DDP ranks
            unlogged_series=outcome.stages,
        )
