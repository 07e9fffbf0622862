"""The CHITA pruning problem: an L0-constrained ridge regression on the gradient matrix.

    minimise  f(w) = ½‖y − G w‖² + (ridge/2)‖w − w̄‖² + a·(w − w̄)   s.t. ‖w‖₀ ≤ k

with G (n x p) the stacked per-sample gradients, y = G w̄ and ridge = n·λ (λ is the
user-facing `l2`, scaled as in the paper's code so tuned values carry over). Every
product is G·v or Gᵀ·r; the p x p matrix GᵀG is never formed.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

# Gather columns of G only when fewer than p / GATHER_FRACTION_* are needed (see Problem.few_columns).
GATHER_FRACTION_ROW_MAJOR = 32
GATHER_FRACTION_COLUMN_MAJOR = 3


@dataclass(frozen=True)
class Problem:
    """Data of one pruning problem; all tensors on the same device and dtype."""

    G: Tensor
    w_bar: Tensor
    y: Tensor
    ridge: float
    a: Tensor | None = None

    @classmethod
    def from_gradients(cls, G: Tensor, w_bar: Tensor, l2: float, first_order: Tensor | None = None) -> Problem:
        """Build the problem from gradients G, dense weights w̄ and the ridge `l2` (λ)."""
        if G.ndim != 2 or w_bar.ndim != 1 or G.shape[1] != w_bar.shape[0]:
            raise ValueError(f"G must be n x p and w_bar p, got {tuple(G.shape)} and {tuple(w_bar.shape)}")
        if l2 < 0:
            raise ValueError(f"l2 must be >= 0, got {l2}")
        w_bar = w_bar.to(device=G.device, dtype=G.dtype)
        a = None if first_order is None else first_order.to(device=G.device, dtype=G.dtype)
        return cls(G=G, w_bar=w_bar, y=G @ w_bar, ridge=G.shape[0] * l2, a=a)

    @property
    def n(self) -> int:
        return self.G.shape[0]

    @property
    def p(self) -> int:
        return self.G.shape[1]

    @property
    def column_major(self) -> bool:
        """Whether G's columns are contiguous (G stored as Gᵀ): column subsets then cost in
        proportion to their size, which is how `chitalab.fisher.collect_gradients` stores G."""
        return self.G.stride(0) == 1 and self.G.shape[0] > 1

    def few_columns(self, count: int) -> bool:
        """Whether `count` columns of G are few enough to gather rather than read all of G.

        Gathering columns of a column-major G reads only them (it pays up to about a third of
        p, counting the copy); in a row-major G a sizeable fraction touches nearly every cache
        line anyway, so only small sets are gathered.
        """
        return count * (GATHER_FRACTION_COLUMN_MAJOR if self.column_major else GATHER_FRACTION_ROW_MAJOR) < self.p

    def columns(self, index: Tensor) -> Tensor:
        """A copy of G[:, index], in G's layout."""
        if self.column_major:
            return self.G.T.index_select(0, index).T
        return self.G.index_select(1, index)

    def columns_times(self, index: Tensor, values: Tensor) -> Tensor:
        """G[:, index] · values: the columns are gathered when they are few (see `few_columns`),
        otherwise `values` are scattered into a zero vector for one dense G·v."""
        if self.few_columns(index.numel()):
            return self.columns(index) @ values
        dense = torch.zeros(self.p, dtype=self.G.dtype, device=self.G.device)
        dense[index] = values
        return self.G @ dense

    def matvec(self, w: Tensor, support: Tensor | None = None) -> Tensor:
        """G·w, reading only the columns in `support` when w is known to vanish outside it."""
        if support is None:
            return self.G @ w
        return self.columns_times(support, w.index_select(0, support))

    def residual(self, w: Tensor, support: Tensor | None = None) -> Tensor:
        """r = y − G w."""
        return self.y - self.matvec(w, support)

    def objective(self, w: Tensor, r: Tensor | None = None) -> float:
        """f(w); pass the residual r = y − G w when it is already known."""
        if r is None:
            r = self.residual(w)
        d = w - self.w_bar
        value = 0.5 * (r @ r) + 0.5 * self.ridge * (d @ d)
        if self.a is not None:
            value = value + self.a @ d
        return float(value)

    def gradient(self, w: Tensor, r: Tensor | None = None) -> Tensor:
        """∇f(w) = −Gᵀr + ridge·(w − w̄) + a."""
        if r is None:
            r = self.residual(w)
        g = torch.addmv(self.ridge * (w - self.w_bar), self.G.T, r, alpha=-1.0)
        if self.a is not None:
            g = g + self.a
        return g

    def dense_start(self, lipschitz: float | None = None) -> Tensor:
        """w̄, moved by one 1/L gradient step when the first-order term makes ∇f(w̄) nonzero."""
        if self.a is None:
            return self.w_bar
        L = self.lipschitz() if lipschitz is None else lipschitz
        return self.w_bar - self.gradient(self.w_bar) / L

    def restrict(self, index: Tensor) -> Problem:
        """The problem over coordinates `index`, the others held at zero.

        Its objective differs from the full one by a constant, so minimisers agree.
        """
        return Problem(
            G=self.columns(index),
            w_bar=self.w_bar.index_select(0, index),
            y=self.y,
            ridge=self.ridge,
            a=None if self.a is None else self.a.index_select(0, index),
        )

    def lipschitz(self, iterations: int = 30, rtol: float = 1e-2, seed: int = 0) -> float:
        """Upper estimate of the gradient's Lipschitz constant ‖G‖₂² + ridge, by power iteration,
        stopped once the estimate changes by less than `rtol` (each iteration reads G twice)."""
        gen = torch.Generator(device="cpu").manual_seed(seed)
        v = torch.randn(self.p, generator=gen, dtype=self.G.dtype).to(self.G.device)
        v /= v.norm()
        sigma2 = 0.0
        for _ in range(iterations):
            u = self.G.T @ (self.G @ v)
            previous, sigma2 = sigma2, float(u.norm())
            if sigma2 == 0 or abs(sigma2 - previous) <= rtol * sigma2:
                break
            v = u / sigma2
        # Power iteration approaches from below; the margin keeps 1/L a safe step.
        return 1.05 * sigma2 + self.ridge


def top_k_mask(v: Tensor, k: int) -> Tensor:
    """Boolean mask of the k largest |v| (ties broken by torch.topk)."""
    mask = torch.zeros(v.shape, dtype=torch.bool, device=v.device)
    if k >= v.numel():
        return mask.fill_(True)
    return mask.index_fill_(0, torch.topk(v.abs(), k, sorted=False).indices, True)


def top_k_support(v: Tensor, k: int) -> Tensor:
    """Indices of the k largest |v|, ascending (read off a mask: cheaper than sorting them)."""
    return torch.nonzero(top_k_mask(v, k)).flatten()


def hard_threshold(v: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """Keep the k largest |v| and zero the rest; returns (vector, support)."""
    mask = top_k_mask(v, k)
    return v.masked_fill(~mask, 0), torch.nonzero(mask).flatten()
