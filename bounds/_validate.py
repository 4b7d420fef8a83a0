"""Argument checks shared by the public functions of :mod:`bounds`.

Every check converts its input to a float64 array, rejects NaN, and raises :class:`ValueError`
with a message that names the offending argument and shows one offending value.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "as_float",
    "check_class_size",
    "check_coverage",
    "check_delta",
    "check_gamma",
    "check_n",
    "check_nonnegative",
    "check_positive",
    "check_radius",
]


def as_float(name: str, value) -> np.ndarray:
    """Return ``value`` as a float64 array, rejecting NaN."""
    try:
        raw = np.asarray(value)
        if np.iscomplexobj(raw):
            raise TypeError("complex values")
        arr = np.asarray(raw, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{name} must be a real number or array, got {_short(value)} ({err})") from None
    if np.isnan(arr).any():
        raise ValueError(f"{name} must not be NaN, got {_short(value)}")
    return arr


def _short(value) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _fail_if(name: str, arr: np.ndarray, bad: np.ndarray, requirement: str) -> np.ndarray:
    if np.any(bad):
        first = float(np.broadcast_to(arr, bad.shape)[bad].flat[0])
        raise ValueError(f"{name} must be {requirement}, got {first!r}")
    return arr


def check_delta(delta) -> np.ndarray:
    """Confidence level ``delta`` in the open interval (0, 1)."""
    arr = as_float("delta", delta)
    return _fail_if("delta", arr, (arr <= 0) | (arr >= 1), "in the open interval (0, 1)")


def check_n(n) -> np.ndarray:
    """Sample size ``n``: finite and at least 1."""
    arr = as_float("n", n)
    return _fail_if("n", arr, (arr < 1) | ~np.isfinite(arr), "finite and >= 1")


def check_class_size(name: str, size) -> np.ndarray:
    """Cardinality of a finite class: at least 1 (``inf`` allowed, giving an infinite bound)."""
    arr = as_float(name, size)
    return _fail_if(name, arr, arr < 1, ">= 1")


def check_gamma(gamma) -> np.ndarray:
    """Bradley-Terry temperature ``gamma`` of eq. (2): finite and > 0."""
    arr = as_float("gamma", gamma)
    return _fail_if("gamma", arr, (arr <= 0) | ~np.isfinite(arr), "finite and > 0")


def check_radius(R) -> np.ndarray:
    """Bound ``R`` of Assumption 2: >= 0 (``inf`` allowed)."""
    arr = as_float("R", R)
    return _fail_if("R", arr, arr < 0, ">= 0")


def check_coverage(name: str, C) -> np.ndarray:
    """Coverage coefficient of Definition 3: >= 0 (``inf`` allowed)."""
    arr = as_float(name, C)
    return _fail_if(name, arr, arr < 0, ">= 0")


def check_positive(name: str, value) -> np.ndarray:
    """A strictly positive number (``inf`` allowed)."""
    arr = as_float(name, value)
    return _fail_if(name, arr, arr <= 0, "> 0")


def check_nonnegative(name: str, value) -> np.ndarray:
    """A non-negative number (``inf`` allowed)."""
    arr = as_float(name, value)
    return _fail_if(name, arr, arr < 0, ">= 0")
