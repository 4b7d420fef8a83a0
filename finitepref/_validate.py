"""Input validation shared by the toy core.

One error style everywhere: the argument named, the value shown, what was expected, e.g.
``ValueError("n: expected an integer in [1, 2**53], got 9223372036854775808")``. Every failure is a
``ValueError`` (a wrong type of a number is a ``ValueError`` too, so callers catch one class).
"""

from __future__ import annotations

import numbers

import numpy as np
import torch

DIST_TOL = 1e-9
#: Largest sample count for which float64 statistics (counts, sums of counts) stay exact.
MAX_COUNT = 2**53


def _short(value) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def input_eps(value) -> float:
    """Machine epsilon of the floating dtype ``value`` arrives in (float64's for anything else)."""
    dtype = value.dtype if isinstance(value, (np.ndarray, torch.Tensor)) else None
    if isinstance(dtype, torch.dtype) and dtype.is_floating_point:
        return float(torch.finfo(dtype).eps)
    if isinstance(dtype, np.dtype) and np.issubdtype(dtype, np.floating):
        return float(np.finfo(dtype).eps)
    return float(np.finfo(np.float64).eps)


def check_device(device) -> torch.device:
    """A torch device that exists here (``'cuda'`` without CUDA is a clear ``ValueError``)."""
    try:
        dev = torch.device(device)
        torch.empty(0, device=dev)
    except (RuntimeError, AssertionError, TypeError, ValueError) as err:
        raise ValueError(f"device: expected an available torch device, got {_short(device)} ({err})") from None
    return dev


def as_float64(name: str, value, ndim: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """Convert numpy/torch/list input to a float64 tensor of the given rank, rejecting NaN and complex."""
    raw = value.detach().cpu() if isinstance(value, torch.Tensor) else value
    try:
        arr = np.asarray(raw)
        if np.iscomplexobj(arr):
            raise ValueError("complex values")
        t = torch.as_tensor(np.asarray(arr, dtype=np.float64))
    except (TypeError, ValueError) as err:
        raise ValueError(f"{name}: expected a real float64 array, got {_short(value)} ({err})") from None
    if t.ndim != ndim:
        raise ValueError(f"{name}: expected {ndim} dimensions, got shape {tuple(t.shape)}")
    if torch.isnan(t).any():
        where = tuple(int(i) for i in torch.nonzero(torch.isnan(t))[0])
        raise ValueError(f"{name}: expected no NaN, got NaN at index {where}")
    return t.to(device)


def _sum_tol(n_terms: int, eps: float) -> float:
    """Tolerance on a sum of ``n_terms`` probabilities given in a dtype of epsilon ``eps``."""
    return max(DIST_TOL, 4.0 * n_terms * eps)


def check_distribution(name: str, p: torch.Tensor, eps: float | None = None) -> None:
    """Each slice along the last axis must be non-negative and sum to 1.

    The tolerance is ``DIST_TOL`` for float64 input and ``4 * A * eps`` for input given in a coarser
    dtype (``eps`` its machine epsilon): float32 probabilities summing to 0.99999998 are valid.
    """
    if (p < 0).any():
        where = tuple(int(i) for i in torch.nonzero(p < 0)[0])
        raise ValueError(f"{name}: expected probabilities >= 0, got {float(p[where]):.6g} at index {where}")
    if torch.isinf(p).any():
        raise ValueError(f"{name}: expected finite probabilities, got inf")
    tol = _sum_tol(p.shape[-1], eps if eps is not None else float(np.finfo(np.float64).eps))
    err = (p.sum(-1) - 1.0).abs()
    if (err > tol).any():
        where = tuple(int(i) for i in torch.nonzero(err > tol)[0])
        raise ValueError(f"{name}: expected rows summing to 1 (tolerance {tol:.3g}), got sum "
                         f"{float(p.sum(-1)[where]):.12g} at index {where}")


def check_log_distribution(name: str, log_p: torch.Tensor, eps: float | None = None) -> None:
    """Log-probabilities: no +inf, and each slice must normalise to 1 (tolerance as :func:`check_distribution`)."""
    if torch.isposinf(log_p).any():
        raise ValueError(f"{name}: expected log-probabilities <= 0, got +inf")
    tol = _sum_tol(log_p.shape[-1], eps if eps is not None else float(np.finfo(np.float64).eps))
    err = (torch.logsumexp(log_p, -1)).abs()
    if (err > tol).any():
        where = tuple(int(i) for i in torch.nonzero(err > tol)[0])
        raise ValueError(f"{name}: expected log-probabilities normalised to 1 (tolerance {tol:.3g}), got "
                         f"logsumexp {float(torch.logsumexp(log_p, -1)[where]):.6g} at index {where}")


def check_positive(name: str, value: float, allow_zero: bool = False) -> float:
    """A finite real number ``> 0`` (``>= 0`` with ``allow_zero``), returned as float."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not np.isfinite(value):
        raise ValueError(f"{name}: expected a finite real number, got {_short(value)}")
    if value < 0 or (value == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name}: expected a number {bound}, got {value!r}")
    return float(value)


def check_count(name: str, value: int, upper: int = MAX_COUNT) -> int:
    """An integer in ``[1, upper]`` (bool and non-integral numbers rejected)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or not 1 <= value <= upper:
        bound = "2**53" if upper == MAX_COUNT else str(upper)
        raise ValueError(f"{name}: expected an integer in [1, {bound}], got {_short(value)}")
    return int(value)
