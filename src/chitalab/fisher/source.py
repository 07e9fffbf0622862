"""The gradient source: where every Fisher-based pruner gets G.

One object plans the memory of G, collects it (whole, or one column group at a time for the
block-diagonal methods), refuses non-finite gradients and times itself. Pruners receive a
source from the config (`pruner.gradients`); none implements collection.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Sequence

import torch
from torch import Tensor, nn

from ..errors import check_choice, check_int, check_number
from ..params import PrunedParams
from .gradients import METHODS, activation_bytes, check_finite_gradients, collect_gradients, gradient_chunks
from .memory import FisherPlan, memory_budget, plan_fisher
from .store import FisherStore, StoredGradients, gradient_key

log = logging.getLogger(__name__)

DTYPES = {"float32": torch.float32, "float64": torch.float64, "bfloat16": torch.bfloat16, "float16": torch.float16}
HALF_DTYPES = ("bfloat16", "float16")  # storage only: solvers that compute in the storage dtype refuse them
MEMORY_KNOBS = "lower gradients.n_samples or gradients.chunk_size, prune fewer layers (model.prune.include/exclude)"
LossFn = Callable[..., Tensor]


class FisherGradients:
    """G for one draw of samples, as `GradientSource.prepare` planned it: `whole()` when the
    plan has one group, or `columns(start, stop)` per group. With a Fisher store, G is read
    from it, or computed in one pass over all columns and written to it first (`store_status`:
    hit, miss or off). `seconds` adds up the planning, every collection and every read."""

    def __init__(
        self,
        source: GradientSource,
        model: nn.Module,
        pruned: PrunedParams,
        loss_fn: LossFn,
        x: Tensor,
        y: Tensor,
        plan: FisherPlan,
        progress: bool,
        seconds: float,
        store: FisherStore | None = None,
    ):
        self.source, self.model, self.pruned, self.loss_fn = source, model, pruned, loss_fn
        self.x, self.y, self.plan, self.progress, self.seconds = x, y, plan, progress, seconds
        self.store = store
        self.store_status = "off" if store is None else "unread"
        self._stored: StoredGradients | None = None
        self._whole: Tensor | None = None  # G kept in memory after computing it for the store

    def columns(self, start: int, stop: int) -> Tensor:
        """Columns [start, stop) of G (n x (stop − start), column-major); refused when not finite."""
        tic = time.perf_counter()
        G = self._collect((start, stop)) if self.store is None else self._from_store(start, stop)
        self.seconds += time.perf_counter() - tic
        return G

    def whole(self) -> Tensor:
        """All of G; only for a plan of one group."""
        if len(self.plan.groups) != 1:
            raise ValueError(f"the plan splits G into {len(self.plan.groups)} groups; read them with columns()")
        return self.columns(0, self.pruned.numel)

    def summary(self) -> dict:
        """What results.json records about G: the memory plan and the store's hit or miss."""
        return {"memory_plan": self.plan.summary(), "fisher_store": self.store_status}

    def _arguments(self, chunk_size: int) -> dict:
        """What `collect_gradients` and `gradient_chunks` are given for this G."""
        return dict(
            model=self.model,
            pruned=self.pruned,
            loss_fn=self.loss_fn,
            x=self.x,
            y=self.y,
            mini_bsz=self.source.mini_bsz,
            chunk_size=chunk_size,
            dtype=self.source.torch_dtype,
            progress=self.progress,
            method=self.source.method,
        )

    def _collect(self, columns: tuple[int, int] | None) -> Tensor:
        G = collect_gradients(**self._arguments(self.plan.chunk_size), columns=columns)
        check_finite_gradients(G)
        return G

    def _from_store(self, start: int, stop: int) -> Tensor:
        if self._whole is None and self._stored is None:
            self._open_or_write()
        if self._whole is not None:
            return self._whole[:, start:stop]
        if self._stored is None:  # the store could not be written: this job goes on without it
            return self._collect((start, stop))
        try:
            return self._stored.read(start, stop)
        except OSError as err:  # the entry became unreadable since it was opened
            self._without_store(err)
            return self._collect((start, stop))

    def _without_store(self, err: OSError) -> None:
        """Go on without the store (its folder is read-only, full, gone, ...), with one warning."""
        assert self.store is not None
        log.warning(
            "Fisher store: cannot use %s (%s); going on without it (cache.fisher=false turns it off)",
            self.store.root,
            err.strerror or err,
        )
        self.store_status, self._stored = "off", None

    def _open_or_write(self) -> None:
        """Read the store's entry for this G (whole when the plan has one group, else opened for
        reading group by group), or compute G and write it: whole in memory when the plan has
        one group (and kept), else in one pass over all columns, in chunks of rows small enough
        for the budget with every column at once."""
        assert self.store is not None
        source, n, p, dtype = self.source, self.plan.n, self.pruned.numel, self.source.torch_dtype
        settings = {"mini_bsz": source.mini_bsz, "dtype": source.dtype, "method": source.method}
        key = gradient_key(self.model, self.pruned, self.loss_fn, self.x, self.y, settings)
        whole = len(self.plan.groups) == 1
        if whole:
            self._whole = self.store.load(key, n, p, dtype)
        else:
            self._stored = self.store.open(key, n, p, dtype)
        if self._whole is not None or self._stored is not None:
            self.store_status = "hit"
            log.info("Fisher store: hit (%s)", self.store.path(key))
            return
        self.store_status = "miss"
        try:
            if whole:
                self._whole = self._collect(None)
                self.store.write(key, n, p, dtype, [self._whole])  # one block: G's column-major bytes as they are
            else:
                self._stored = self.store.write(key, n, p, dtype, self._finite_chunks(self.one_pass_chunk_size()))
        except OSError as err:  # nothing half-written stays: the store writes under a temporary name
            self._without_store(err)
            return
        log.info("Fisher store: miss; G computed and written to %s", self.store.path(key))

    def one_pass_chunk_size(self) -> int:
        """Rows per chunk when every column is computed at once, within the plan's budget: the
        in-flight bytes per row of all groups together (a bound: activations count once per
        group) and two rows of G (a chunk's rows, and their transposed copy being written)."""
        plan = self.plan
        per_row = sum(plan.in_flight) / plan.chunk_size + 2 * plan.p * self.source.torch_dtype.itemsize
        return max(1, min(plan.chunk_size, int((plan.budget - plan.workspace) // per_row)))

    def _finite_chunks(self, chunk_size: int) -> Iterator[Tensor]:
        for _, rows in gradient_chunks(**self._arguments(chunk_size)):
            check_finite_gradients(rows)
            yield rows


class GradientSource:
    """Per-sample gradients of the loss (the empirical Fisher's rows): `n_samples` rows, each the
    mean over `mini_bsz` samples, stored in `dtype`, computed `chunk_size` rows per vectorised
    call, within `max_memory_gb` (null: half of the free memory), by `method` (auto | hooks |
    vmap, see `fisher.gradients`). With `store`, G is kept in the Fisher store under `store_dir`
    (at most `store_max_gb`) and reused by every job that needs the same G."""

    def __init__(
        self,
        n_samples: int = 1000,
        mini_bsz: int = 1,
        dtype: str = "float32",
        chunk_size: int = 64,
        max_memory_gb: float | None = None,
        method: str = "auto",
        store: bool = False,
        store_dir: str = ".cache/fisher",
        store_max_gb: float = 20.0,
    ):
        self.n_samples = check_int("n_samples", n_samples, 1)
        self.mini_bsz = check_int("mini_bsz", mini_bsz, 1)
        self.dtype = check_choice("dtype", dtype, tuple(DTYPES))
        self.chunk_size = check_int("chunk_size", chunk_size, 1)
        self.max_memory_gb = None if max_memory_gb is None else check_number("max_memory_gb", max_memory_gb, 0, False)
        self.method = check_choice("method", method, METHODS)
        self.store, self.store_dir = bool(store), str(store_dir)
        self.store_max_gb = check_number("store_max_gb", store_max_gb, 0, False)

    @property
    def samples_needed(self) -> int:
        """Training samples one collection draws."""
        return self.n_samples * self.mini_bsz

    @property
    def torch_dtype(self) -> torch.dtype:
        return DTYPES[self.dtype]

    def settings(self) -> dict:
        return dict(vars(self))

    def prepare(
        self,
        model: nn.Module,
        pruned: PrunedParams,
        loss_fn: LossFn,
        x: Tensor,
        y: Tensor,
        cuts: Sequence[int] | None = None,
        workspace: int = 0,
        hint: str = "",
        progress: bool = True,
        reusable: bool = True,
        column_workspace: int = 0,
    ) -> FisherGradients:
        """Plan G for the samples (x, y): column groups ending at `cuts` (None: G whole) that fit
        the budget with `workspace` bytes left for the solver (and `column_workspace` per column of
        a group, see `plan_fisher`). The plan is logged; a budget too
        small raises a UserError naming the knobs (and `hint`, the pruner's own). `reusable`:
        whether another job may need this G (the Fisher store is used only then)."""
        tic = time.perf_counter()
        m = self.mini_bsz
        plan = plan_fisher(
            n=self.n_samples,
            sizes=pruned.sizes,
            cuts=list(cuts) if cuts is not None else [pruned.numel],
            dtype=self.torch_dtype,
            chunk_size=self.chunk_size,
            activation_bytes=activation_bytes(model, loss_fn, x[:m], y[:m]),
            budget=memory_budget(self.max_memory_gb, pruned.params[0].device),
            workspace=workspace,
            column_workspace=column_workspace,
            hint=f"; {hint + ', ' if hint else ''}{MEMORY_KNOBS}, or raise gradients.max_memory_gb",
        )
        log.info(plan.describe())
        store = FisherStore(self.store_dir, self.store_max_gb) if self.store and reusable else None
        seconds = time.perf_counter() - tic
        return FisherGradients(self, model, pruned, loss_fn, x, y, plan, progress, seconds, store)
