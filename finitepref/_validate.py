"""Input validation shared by the toy core. Every failure is a ``ValueError`` naming the argument."""

from __future__ import annotations

import numbers

import numpy as np
import torch

DIST_TOL = 1e-9


def as_float64(name: str, value, ndim: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """Convert numpy/torch/list input to a float64 tensor of the given rank, rejecting NaN."""
    try:
        t = torch.as_tensor(np.asarray(value.detach().cpu() if isinstance(value, torch.Tensor) else value),
                            dtype=torch.float64)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{name}: cannot convert to a float64 array ({err})") from err
    if t.ndim != ndim:
        raise ValueError(f"{name}: expected {ndim} dimensions, got shape {tuple(t.shape)}")
    if torch.isnan(t).any():
        raise ValueError(f"{name}: contains NaN")
    return t.to(device)


def check_distribution(name: str, p: torch.Tensor) -> None:
    """Each slice along the last axis must be non-negative and sum to 1 within ``DIST_TOL``."""
    if (p < 0).any():
        where = tuple(int(i) for i in torch.nonzero(p < 0)[0])
        raise ValueError(f"{name}: negative probability at index {where}")
    if torch.isinf(p).any():
        raise ValueError(f"{name}: contains inf")
    err = (p.sum(-1) - 1.0).abs()
    if (err > DIST_TOL).any():
        where = tuple(int(i) for i in torch.nonzero(err > DIST_TOL)[0])
        raise ValueError(f"{name}: does not sum to 1 (tolerance {DIST_TOL}) at index {where}: "
                         f"sum = {float(p.sum(-1)[where]):.12g}")


def check_log_distribution(name: str, log_p: torch.Tensor) -> None:
    """Log-probabilities: no +inf, and each slice must normalise to 1 within ``DIST_TOL``."""
    if torch.isposinf(log_p).any():
        raise ValueError(f"{name}: contains +inf")
    err = (torch.logsumexp(log_p, -1)).abs()
    if (err > DIST_TOL).any():
        where = tuple(int(i) for i in torch.nonzero(err > DIST_TOL)[0])
        raise ValueError(f"{name}: does not sum to 1 (tolerance {DIST_TOL}) at index {where}")


def check_positive(name: str, value: float, allow_zero: bool = False) -> float:
    if not isinstance(value, numbers.Real) or not np.isfinite(value):
        raise ValueError(f"{name}: expected a finite real number, got {value!r}")
    if value < 0 or (value == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name}: must be {bound}, got {value!r}")
    return float(value)


def check_count(name: str, value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"{name}: expected an integer >= 1, got {value!r}")
    return int(value)
