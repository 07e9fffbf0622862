"""One-shot runs: evaluate the dense model, prune once (or in CHITA++ stages), evaluate again."""

from __future__ import annotations

import logging

from ..training import Classifier, evaluate_model
from .job import Job, RunOutcome
from .results import Evaluation

log = logging.getLogger(__name__)


class OneShot:
    """`schedule=oneshot`: prune the pretrained model once, no fine-tuning."""

    name = "oneshot"
    batch_size: int | None = None

    def execute(self, job: Job) -> RunOutcome:
        c = job.config
        trainer = job.trainer(enable_checkpointing=False)
        job.recalibrate_batchnorm()
        module = Classifier(job.net, c.num_classes)
        test_loader = c.datamodule.test_dataloader()
        dense = Evaluation(**module.evaluate(trainer, test_loader, "dense"))
        log.info("dense model: test accuracy %.2f%%, loss %.4f", dense.test_acc, dense.test_loss)

        job.net.to(c.device).eval()
        ctx = job.context(evaluate=lambda: evaluate_model(job.net, test_loader, c.num_classes))
        outcome = c.pruner.prune(ctx, c.sparsity)
        job.pruned.assign(outcome.weights)
        after = Evaluation(**module.evaluate(trainer, test_loader, "pruned"))
        log.info("pruned model: test accuracy %.2f%%, loss %.4f", after.test_acc, after.test_loss)
        return RunOutcome(
            dense=dense,
            pruned=after,
            fisher_seconds=outcome.fisher_seconds,
            solver_seconds=outcome.solver_seconds,
            solver=outcome.stats,
            trajectory=outcome.stages,
            writes_outputs=trainer.is_global_zero,
            unlogged_series=outcome.stages,
        )
