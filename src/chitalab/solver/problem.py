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


@dataclass(frozen=True)
class Problem:
    """Data of one pruning problem; all tensors on the same device and dtype."""

    G: Tensor
    w_bar: Tensor
    y: Tensor
    ridge: float
    a: Tensor | None = None

    @classmethod
    def from_gradients(
        cls, G: Tensor, w_bar: Tensor, l2: float, first_order: Tensor | None = None
    ) -> "Problem":
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

    def matvec(self, w: Tensor, support: Tensor | None = None) -> Tensor:
        """G·w, reading only the columns in `support` when w is known to vanish outside it."""
        if support is not None and support.numel() * 4 < self.p:
            return self.G.index_select(1, support) @ w.index_select(0, support)
        return self.G @ w

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

    def restrict(self, index: Tensor) -> "Problem":
        """The problem over coordinates `index`, the others held at zero.

        Its objective differs from the full one by a constant, so minimisers agree.
        """
        return Problem(
            G=self.G.index_select(1, index),
            w_bar=self.w_bar.index_select(0, index),
            y=self.y,
            ridge=self.ridge,
            a=None if self.a is None else self.a.index_select(0, index),
        )

    def lipschitz(self, iterations: int = 30, seed: int = 0) -> float:
        """Upper estimate of the gradient's Lipschitz constant ‖G‖₂² + ridge, by power iteration."""
        gen = torch.Generator(device="cpu").manual_seed(seed)
        v = torch.randn(self.p, generator=gen, dtype=self.G.dtype).to(self.G.device)
        v /= v.norm()
        sigma2 = torch.zeros((), dtype=self.G.dtype, device=self.G.device)
        for _ in range(iterations):
            u = self.G.T @ (self.G @ v)
            sigma2 = u.norm()
            if sigma2 == 0:
                break
            v = u / sigma2
        # Power iteration approaches from below; the margin keeps 1/L a safe step.
        return 1.05 * float(sigma2) + self.ridge


def top_k_support(v: Tensor, k: int) -> Tensor:
    """Indices of the k largest |v|, sorted ascending (ties broken by torch.topk)."""
    if k >= v.numel():
        return torch.arange(v.numel(), device=v.device)
    return torch.topk(v.abs(), k, sorted=False).indices.sort().values


def hard_threshold(v: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """Keep the k largest |v| and zero the rest; returns (vector, support)."""
    support = top_k_support(v, k)
    out = torch.zeros_like(v)
    out[support] = v[support]
    return out, support
