"""Gradual pruning (the Lightning callback) and CHITA++ on a tiny model with synthetic data."""

from __future__ import annotations

import dataclasses
import json
from functools import partial

import lightning.pytorch as pl
import pytest
import torch
from lightning.pytorch.callbacks import Callback, ModelCheckpoint

from chitalab.data import SyntheticDataModule
from chitalab.fisher import GradientSource
from chitalab.models import MLPNet, loss_function
from chitalab.outputs import RESULTS_FILE
from chitalab.params import select_pruned
from chitalab.pruning import (
    ChitaPruner,
    MagnitudePruner,
    MultiStagePruner,
    PruneContext,
    Pruner,
    SampleStream,
    StepSearch,
)
from chitalab.solver import GLOBAL_TOP_K, NM, ActiveSet
from chitalab.training import Classifier, CosineRestarts, GradualPruning, evaluate_model
from tests.support import SYNTHETIC, run_entry_point
from tests.support.patterns import is_n_m

NUM_CLASSES = 4


def synthetic() -> SyntheticDataModule:
    dm = SyntheticDataModule(num_train=256, num_test=64, batch_size=32, shuffle=False)
    dm.setup()
    return dm


def chita(iterations: int = 100, **kwargs) -> ChitaPruner:
    """Single-stage CHITA (active set) on 64 gradients."""
    return ChitaPruner(GradientSource(n_samples=64), ActiveSet(iterations=iterations), **kwargs)


def tiny_net(seed: int = 0) -> MLPNet:
    torch.manual_seed(seed)
    return MLPNet(64, [16, 8], NUM_CLASSES)


class Recorder(Pruner):
    """Wraps a pruner and records what each call saw and returned."""

    def __init__(self, inner: Pruner):
        self.inner = inner
        self.calls: list[dict] = []

    def settings(self) -> dict:
        return self.inner.settings()

    def samples_needed(self) -> int:
        return self.inner.samples_needed()

    def prune(self, ctx: PruneContext, sparsity: float):
        outcome = self.inner.prune(ctx, sparsity)
        self.calls.append(
            {"step": ctx.step, "stage": ctx.stage, "frozen": ctx.frozen, "weights": outcome.weights.clone()}
        )
        return outcome


class StopAfterEpoch(Callback):
    """Interrupts training at the end of `epoch`, as a crash or preemption would."""

    def __init__(self, epoch: int):
        self.epoch = epoch

    def on_train_epoch_end(self, trainer, module):
        if trainer.current_epoch == self.epoch:
            trainer.should_stop = True


def fit(
    dm,
    net,
    pruner,
    epochs,
    levels,
    max_epochs,
    extra_callbacks=(),
    ckpt_path=None,
    momentum=0.9,
    weight_decay=1e-2,
    samples=None,
    constraint=GLOBAL_TOP_K,
):
    callback = GradualPruning(
        pruner,
        epochs,
        levels,
        select_pruned(net).names,
        samples=samples or SampleStream(dm, seed=0),
        constraint=constraint,
        evaluate=lambda n: evaluate_model(n, dm.test_dataloader(), NUM_CLASSES),
        progress=False,
    )
    trainer = pl.Trainer(
        max_epochs=max_epochs,
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=bool(extra_callbacks),
        callbacks=[callback, *extra_callbacks],
    )
    optimizer = partial(torch.optim.SGD, lr=0.05, momentum=momentum, weight_decay=weight_decay)
    module = Classifier(net, NUM_CLASSES, optimizer, CosineRestarts(lr_min=1e-5), restart_epochs=epochs)
    trainer.fit(module, train_dataloaders=dm.train_dataloader(), ckpt_path=ckpt_path)
    return callback, trainer


def test_masks_stay_zero_with_momentum_and_weight_decay():
    dm, net = synthetic(), tiny_net()
    start = {n: p.detach().clone() for n, p in net.named_parameters()}
    callback, trainer = fit(dm, net, MagnitudePruner(), [0, 1], [0.5, 0.8], max_epochs=3)
    pruned = select_pruned(net)
    assert pruned.sparsity() >= 0.8
    optimizer = trainer.optimizers[0]
    for name, p in zip(pruned.names, pruned.params):
        mask = callback.masks[name]
        assert torch.all(p[~mask] == 0)
        assert torch.all(optimizer.state[p]["momentum_buffer"][~mask] == 0)
        assert not torch.equal(p[mask], start[name][mask]), "kept weights should have been fine-tuned"


class IgnoresThePattern(Pruner):
    """Global magnitude pruning whatever the run's pattern: a pruner with a bug."""

    def settings(self) -> dict:
        return {}

    def prune(self, ctx: PruneContext, sparsity: float):
        return MagnitudePruner().prune(dataclasses.replace(ctx, constraint=GLOBAL_TOP_K), sparsity)


def test_n_m_masks_hold_through_fine_tuning_and_a_step_that_breaks_the_pattern_stops_the_run():
    dm, net = synthetic(), tiny_net()
    constraint = NM(select_pruned(net).shapes, n=2, m=4)
    fit(dm, net, MagnitudePruner(), [0, 1], [0.25, 0.5], max_epochs=3, constraint=constraint)
    assert all(is_n_m(p, 2, 4) for p in select_pruned(net).params)
    with pytest.raises(RuntimeError, match="pruning step 0 left weights that NM does not allow"):
        fit(dm, tiny_net(), IgnoresThePattern(), [0], [0.5], max_epochs=1, constraint=constraint)


def test_callback_fires_on_scheduled_epochs_only():
    dm, net = synthetic(), tiny_net()
    recorder = Recorder(MagnitudePruner())
    callback, _ = fit(dm, net, recorder, [0, 2], [0.5, 0.9], max_epochs=4)
    assert [r["epoch"] for r in callback.trajectory] == [0, 2]
    assert [c["step"] for c in recorder.calls] == [0, 1]
    assert [r["target_sparsity"] for r in callback.trajectory] == [0.5, 0.9]
    for record in callback.trajectory:
        assert set(record["after_pruning"]) == set(record["after_finetuning"]) == {"test_acc", "test_loss"}
    assert [r["finetuned_until_epoch"] for r in callback.trajectory] == [1, 3]


def test_chitapp_inside_a_gradual_run_never_reuses_a_draw_and_evaluates_every_stage():
    """Step s stage i and step s+1 stage i-1 used to share their samples (rounds s + i)."""
    dm, net = synthetic(), tiny_net()
    stream = SampleStream(dm, seed=0)
    staged = MultiStagePruner(
        chita(iterations=5, step_search=StepSearch([0.5, 1.0], samples=64)), num_stages=3, base_level=0.3
    )
    callback, _ = fit(dm, net, staged, [0, 1, 2], [0.5, 0.7, 0.9], max_epochs=3, samples=stream)
    keys = [(k.purpose, k.step, k.stage) for k in stream.drawn]
    assert len(keys) == len(set(keys)) == 3 * 3 * 2  # steps x stages x (Fisher, step search)
    seeds = {k.seed(stream.seed) for k in stream.drawn}
    assert len(seeds) == len(keys)
    for record in callback.trajectory:
        assert [stage["stage"] for stage in record["stages"]] == [0, 1, 2]
        assert all({"test_acc", "test_loss"} <= set(stage) for stage in record["stages"])


def test_later_steps_keep_earlier_pruned_weights_at_zero():
    dm, net = synthetic(), tiny_net()
    recorder = Recorder(chita(iterations=20))
    fit(dm, net, recorder, [0, 1, 2], [0.5, 0.7, 0.9], max_epochs=3)
    supports = [c["weights"] != 0 for c in recorder.calls]
    for earlier, later in zip(supports, supports[1:]):
        assert not torch.any(later & ~earlier)


def test_resumed_run_ends_with_the_same_masks_and_trajectory(tmp_path):
    def pruner():
        return chita(iterations=20)

    epochs, levels = [0, 1, 2], [0.5, 0.7, 0.9]
    dm = synthetic()
    straight_net = tiny_net()
    straight, _ = fit(dm, straight_net, pruner(), epochs, levels, max_epochs=4)

    first_net = tiny_net()
    checkpoint = ModelCheckpoint(dirpath=tmp_path, save_last=True, save_top_k=0)
    interrupted, _ = fit(
        dm, first_net, pruner(), epochs, levels, max_epochs=4, extra_callbacks=[checkpoint, StopAfterEpoch(1)]
    )
    assert interrupted.next_step == 2  # stopped between the second and third pruning steps

    resumed_net = tiny_net(seed=123)  # weights come from the checkpoint
    resumed, _ = fit(dm, resumed_net, pruner(), epochs, levels, max_epochs=4, ckpt_path=str(tmp_path / "last.ckpt"))
    for name in straight.masks:
        assert torch.equal(straight.masks[name], resumed.masks[name])
    keys = ("epoch", "target_sparsity", "measured_sparsity")
    assert [[r[k] for k in keys] for r in resumed.trajectory] == [[r[k] for k in keys] for r in straight.trajectory]
    for (_, a), (_, b) in zip(straight_net.named_parameters(), resumed_net.named_parameters()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def _context(net, dm, **kwargs) -> PruneContext:
    return PruneContext(
        model=net.eval(),
        pruned=select_pruned(net),
        loss_fn=loss_function(net),
        samples=SampleStream(dm, seed=0),
        constraint=GLOBAL_TOP_K,
        progress=False,
        **kwargs,
    )


def test_chitapp_with_one_stage_equals_single_stage_chita():
    dm = synthetic()
    single = chita().prune(_context(tiny_net(), dm), 0.8)
    staged = MultiStagePruner(chita(), num_stages=1).prune(_context(tiny_net(), dm), 0.8)
    torch.testing.assert_close(staged.weights, single.weights)


def test_chitapp_masks_are_monotone_unless_regrowth_is_allowed():
    dm = synthetic()
    recorder = Recorder(chita(iterations=20))
    MultiStagePruner(recorder, num_stages=4, base_level=0.3).prune(_context(tiny_net(), dm), 0.9)
    supports = [c["weights"] != 0 for c in recorder.calls]
    assert [(c["step"], c["stage"]) for c in recorder.calls] == [(0, 0), (0, 1), (0, 2), (0, 3)]
    for earlier, later in zip(supports, supports[1:]):
        assert not torch.any(later & ~earlier)

    free = Recorder(chita(iterations=20))
    result = MultiStagePruner(free, num_stages=4, base_level=0.3, allow_regrowth=True).prune(
        _context(tiny_net(), dm), 0.9
    )
    assert all(c["frozen"] is None for c in free.calls)
    assert int((result.weights != 0).sum()) <= int(0.1 * result.weights.numel()) + 1


def test_gradual_run_through_the_cli_with_ddp_on_two_processes(tmp_path):
    # A fresh process: Lightning's DDP launcher starts the second rank by re-running this
    # process's command line, which in process would be pytest's
    done = run_entry_point(
        *SYNTHETIC,
        "schedule=gradual_fast",
        "schedule.epochs=3",
        "schedule.prune_every=1",
        "schedule.nprune_epochs=2",
        "trainer.strategy=ddp",
        "trainer.devices=2",
        f"hydra.run.dir={tmp_path}",
    )
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads((tmp_path / RESULTS_FILE).read_text())
    assert [r["epoch"] for r in results["trajectory"]] == [0, 1]
    for record in results["trajectory"]:
        checksums = record["rank_checksums"]
        assert len(checksums) == 2 and checksums[0] == checksums[1]
    assert results["sparsity"]["measured"] >= 0.9
    assert (tmp_path / "checkpoints" / "last.ckpt").is_file()


def test_step_search_keeps_the_support_picks_a_listed_step_and_leaves_the_model_alone():
    dm, net = synthetic(), tiny_net()
    before = select_pruned(net).flatten().clone()
    plain = chita(first_order_term=True, l2=1e-2).prune(_context(net, dm), 0.8)
    searched = chita(first_order_term=True, l2=1e-2, step_search=StepSearch([0.5, 1.0, 2.0], samples=128))
    outcome = searched.prune(_context(net, dm), 0.8)
    torch.testing.assert_close(select_pruned(net).flatten(), before)
    assert torch.equal(outcome.weights != 0, plain.weights != 0)
    t = outcome.stats["step_size"]
    assert t in (0.5, 1.0, 2.0) and set(outcome.stats["step_losses"]) == {0.5, 1.0, 2.0}
    assert outcome.stats["step_losses"][t] == min(outcome.stats["step_losses"].values())
    kept = before * (plain.weights != 0)
    torch.testing.assert_close(outcome.weights, kept + t * (plain.weights - kept), rtol=1e-5, atol=1e-6)
