"""Overflow-safe building blocks: log-space products and the function psi of Lemma 9.

All bounds of Appendix B are products of non-negative factors, some of which overflow float64
(``e^{4 gamma R}``, ``e^{8R}``) while others may be zero (a zero coverage coefficient). They are
therefore evaluated as sums of logarithms with the convention ``0 * inf = 0``: a factor whose log is
``-inf`` makes the whole product zero, whatever the other factors are.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "LOG_HALF",
    "exp_or_scalar",
    "log_lemma9_factor_of_R",
    "log_log_ratio",
    "log_product",
    "log_psi_of_log",
    "log_z_term",
    "psi_of_log",
    "safe_log",
]

LOG_HALF = float(np.log(0.5))

# psi(e^u) = (e^u - 1 - u) / u^2 = sum_{k>=0} u^k / (k+2)!   (entire in u).
# On |u| < 1 the 20 terms below leave a truncation error < 1/22! ~ 9e-22, far below float64 eps.
_SERIES_TERMS = 20
_SERIES_COEF = np.array([1.0 / np.prod(np.arange(1.0, k + 3.0)) for k in range(_SERIES_TERMS)])
_SERIES_RADIUS = 1.0


def _psi_series(u: np.ndarray) -> np.ndarray:
    """Horner evaluation of sum_k u^k/(k+2)! (used for |u| < 1)."""
    acc = np.zeros_like(u)
    for c in _SERIES_COEF[::-1]:
        acc = acc * u + c
    return acc


def psi_of_log(u) -> np.ndarray:
    """psi(e^u) for real u, without cancellation near u = 0.

    Uses the series for |u| < 1 and ``(expm1(u) - u) / u^2`` elsewhere (relative cancellation in
    ``expm1(u) - u`` is then at most a factor ~3). Limits: ``psi_of_log(-inf) = 0``,
    ``psi_of_log(+inf) = inf``; overflow gives ``inf``.
    """
    u = np.asarray(u, dtype=np.float64)
    small = np.abs(u) < _SERIES_RADIUS
    u_small = np.where(small, u, 0.0)
    u_big = np.where(small | ~np.isfinite(u), 2.0, u)
    with np.errstate(over="ignore"):
        direct = (np.expm1(u_big) - u_big) / (u_big * u_big)
    out = np.where(small, _psi_series(u_small), direct)
    out = np.where(u == np.inf, np.inf, out)
    return np.where(u == -np.inf, 0.0, out)


def log_psi_of_log(u) -> np.ndarray:
    """log psi(e^u) for real u, finite wherever the value is (no overflow for u up to ~1e308).

    For u >= 1: ``u + log1p(-(1+u) e^{-u}) - 2 log u``; for |u| < 1: log of the series;
    for u <= -1: ``log(expm1(u) - u) - 2 log|u|``.
    """
    u = np.asarray(u, dtype=np.float64)
    small = np.abs(u) < _SERIES_RADIUS
    pos = (u >= _SERIES_RADIUS) & np.isfinite(u)
    neg = (u <= -_SERIES_RADIUS) & np.isfinite(u)
    u_small = np.where(small, u, 0.0)
    u_pos = np.where(pos, u, 2.0)
    u_neg = np.where(neg, u, -2.0)
    log_small = np.log(_psi_series(u_small))
    log_pos = u_pos + np.log1p(-(1.0 + u_pos) * np.exp(-u_pos)) - 2.0 * np.log(u_pos)
    log_neg = np.log(np.expm1(u_neg) - u_neg) - 2.0 * np.log(-u_neg)
    out = np.where(small, log_small, np.where(pos, log_pos, log_neg))
    out = np.where(u == np.inf, np.inf, out)
    return np.where(u == -np.inf, -np.inf, out)


def log_product(*logs) -> np.ndarray:
    """Sum of log-factors with the convention ``0 * inf = 0`` (any ``-inf`` wins)."""
    arrays = np.broadcast_arrays(*[np.asarray(x, dtype=np.float64) for x in logs])
    has_zero = np.zeros(arrays[0].shape, dtype=bool)
    total = np.zeros(arrays[0].shape)
    with np.errstate(invalid="ignore"):
        for arr in arrays:
            has_zero |= arr == -np.inf
            total = total + arr
    return np.where(has_zero, -np.inf, total)


def exp_or_scalar(log_value) -> np.ndarray | np.float64:
    """``exp`` of a log-value, returned as a numpy scalar for 0-d input."""
    with np.errstate(over="ignore"):
        out = np.exp(np.asarray(log_value, dtype=np.float64))
    return out[()] if out.ndim == 0 else out


def log_log_ratio(class_size, delta, multiplier: float = 1.0) -> np.ndarray:
    """``log(ln(multiplier * class_size / delta))`` (positive inner log for class_size >= 1, delta < 1)."""
    class_size = np.asarray(class_size, dtype=np.float64)
    delta = np.asarray(delta, dtype=np.float64)
    return np.log(np.log(multiplier) + np.log(class_size) - np.log(delta))


def log_lemma9_factor_of_R(R) -> np.ndarray:
    """``log(1/2 v psi(e^{4R}))``, the Lemma 9 constant with ``r_max = e^{4R}`` of eq. (19)."""
    return np.maximum(LOG_HALF, log_psi_of_log(4.0 * np.asarray(R, dtype=np.float64)))


def log_z_term(R) -> np.ndarray:
    """``log(2 R^2 e^{4R} + 3)``, the factor collecting the two terms of the proof of Theorem 4."""
    R = np.asarray(R, dtype=np.float64)
    with np.errstate(divide="ignore"):
        log_first = np.log(2.0) + 2.0 * np.log(R) + 4.0 * R
    return np.logaddexp(log_first, np.log(3.0))


def safe_log(x) -> np.ndarray:
    """``log`` with ``log 0 = -inf`` and no warning."""
    with np.errstate(divide="ignore"):
        return np.log(np.asarray(x, dtype=np.float64))
