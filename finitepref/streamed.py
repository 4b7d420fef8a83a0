r"""Streamed policy classes: log-probabilities generated chunk by chunk from features, never stored whole.

A :class:`LogLinearClass` stands in for the ``(K, X, A)`` tensor ``ToyProblem.log_policies`` of an
:math:`\varepsilon`-net of a log-linear family,
:math:`\ln\pi_\theta(a\mid x) = \theta\cdot\phi(x,a) - \ln\sum_b e^{\theta\cdot\phi(x,b)}`, with
:math:`\theta` on the grid :math:`\{-h,\dots,h\}^d\cdot` ``resolution`` in the row order of
:meth:`finitepref.ToyProblem.loglinear_grid` (first coordinate slowest). Indexing it (``cls[rows]``
with a slice, an integer, an index array, or a tuple whose first entry is one of these) computes
those rows on the spot, so everything that reads the class through ``prob.log_policies[rows]`` —
every estimator (through :func:`finitepref._argmin.argmin_rows`), R, :math:`C_\Pi`, :math:`\ell_\infty`
concentrability and the exact KL tables, all chunked over rows — works unchanged with memory
proportional to one chunk. Its ``_version`` is constant (the class is immutable), so the table
cache (:mod:`finitepref._tablecache`) keys it safely; its tables exceed the cache budget at
:math:`|\Pi| = 10^7` and are then streamed.

A reward class may be streamed too (``ToyProblem(..., rewards=<StreamedClass>)``); its induced class
:math:`\mathcal P_\gamma(\mathcal R)` of eq. (8) is then :class:`InducedClass`, streamed in turn.

``ToyProblem.loglinear_grid(..., stream=True)`` builds the same problem (same seed, same
:math:`\theta^*`, rewards, reference) with the class streamed.
"""

from __future__ import annotations

import numpy as np
import torch

Tensor = torch.Tensor

__all__ = ["StreamedClass", "LogLinearClass", "InducedClass"]


class StreamedClass:
    """Base of streamed classes: ``shape``, ``dtype``, ``device``, ``cls[rows]`` and ``to(device)``."""

    ndim = 3
    dtype = torch.float64
    _version = 0

    def rows(self, index: Tensor) -> Tensor:  # pragma: no cover - abstract
        """Log-probabilities ``(len(index), X, A)`` of the policies ``index`` (int64)."""
        raise NotImplementedError

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, key):
        rest = ()
        if isinstance(key, tuple):
            key, rest = key[0], key[1:]
        n = self.shape[0]
        if isinstance(key, slice):
            out = self.rows(torch.arange(*key.indices(n), device=self.device))
        elif isinstance(key, (int, np.integer)) and not isinstance(key, bool):
            k = int(key) + (n if int(key) < 0 else 0)
            if not 0 <= k < n:
                raise IndexError(f"index {int(key)} is out of bounds for a class of {n} policies")
            out = self.rows(torch.tensor([k], device=self.device))[0]
        else:
            index = torch.as_tensor(np.asarray(key.cpu() if isinstance(key, Tensor) else key), dtype=torch.int64)
            out = self.rows(index.reshape(-1).to(self.device)).reshape(*index.shape, *self.shape[1:])
        return out[(slice(None), *rest)] if rest else out

    def cpu(self) -> Tensor:
        """The whole class as a CPU tensor (materialised: for small classes and brute-force checks only)."""
        return self[:].cpu()


class LogLinearClass(StreamedClass):
    r""":math:`\{\pi_\theta: \theta\in\{-h,\dots,h\}^d\cdot\text{resolution}\}`, streamed.

    Parameters
    ----------
    features : Tensor (X, A, d)
        :math:`\phi(x, a)`, float64.
    half : int
        :math:`h`: :math:`2h+1` grid points per coordinate.
    resolution : float
        Grid spacing.
    """

    def __init__(self, features: Tensor, half: int, resolution: float) -> None:
        self.features = torch.as_tensor(features, dtype=torch.float64)
        if self.features.ndim != 3 or not torch.isfinite(self.features).all():
            raise ValueError(f"features: expected a finite (X, A, d) array, got shape {tuple(self.features.shape)}")
        self.half, self.resolution = int(half), float(resolution)
        side, dim = 2 * self.half + 1, self.features.shape[2]
        self.shape = torch.Size((side ** dim, *self.features.shape[:2]))
        self.device = self.features.device

    def thetas(self, index: Tensor) -> Tensor:
        """Grid points ``(len(index), d)``: the digits of ``index`` in base ``2h+1``, first coordinate slowest."""
        side, dim = 2 * self.half + 1, self.features.shape[2]
        powers = side ** torch.arange(dim - 1, -1, -1, device=index.device)
        steps = (index[:, None] // powers) % side - self.half
        return steps.to(torch.float64) * self.resolution

    def rows(self, index: Tensor) -> Tensor:
        return torch.log_softmax(torch.einsum("kd,xad->kxa", self.thetas(index), self.features), -1)

    def to(self, device) -> LogLinearClass:
        return LogLinearClass(self.features.to(device), self.half, self.resolution)


class InducedClass(StreamedClass):
    r""":math:`\mathcal P_\gamma(\mathcal R) = \{\pi_R\propto e^{R/\gamma}\}` (eq. 8) of a streamed reward class, streamed.

    Parameters
    ----------
    rewards : StreamedClass
        Reward rows :math:`R(x, a)`, shape ``(M, X, A)``.
    gamma : float
        The tilt :math:`\gamma > 0` of eq. (2).
    """

    def __init__(self, rewards: StreamedClass, gamma: float) -> None:
        self.rewards, self.gamma = rewards, float(gamma)
        self.shape, self.device = rewards.shape, rewards.device

    def rows(self, index: Tensor) -> Tensor:
        return torch.log_softmax(self.rewards.rows(index) / self.gamma, -1)

    def to(self, device) -> InducedClass:
        return InducedClass(self.rewards.to(device), self.gamma)
