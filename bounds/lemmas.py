"""Auxiliary lemmas of Appendix B.1: Lemma 8 (sigmoid gap), Lemmas 9 and 10 (psi).

Notation: ``sigma(z) = 1 / (1 + e^{-z})`` and ``a v b = max(a, b)``.
"""

from __future__ import annotations

import numpy as np
from scipy.special import log_expit

from ._numerics import psi_of_log as _psi_of_log
from ._validate import as_float, check_positive

__all__ = [
    "lemma8",
    "lemma8_corrected",
    "lemma9_factor",
    "lemma9_upper_factor",
    "lemma10_factor",
    "log_sigmoid_gap",
    "psi",
    "sigmoid_gap",
]


def log_sigmoid_gap(a, b):
    r"""Natural log of :func:`sigmoid_gap`, ``log |sigma(a) - sigma(b)|``.

    Evaluated without overflow or cancellation through the identity

    .. math::

        \sigma(a) - \sigma(b) = \frac{\sinh((a-b)/2)}{2\cosh(a/2)\cosh(b/2)},

    whose logarithm is (with :math:`d = a - b`)

    .. math::

        -\mathbb{1}[ab > 0]\,(|a| \wedge |b|) + \log(-\mathrm{expm1}(-|d|))
        - \mathrm{log1p}(e^{-|a|}) - \mathrm{log1p}(e^{-|b|}),

    since :math:`(|a-b| - |a| - |b|)/2` equals :math:`-(|a| \wedge |b|)` when ``a`` and ``b``
    have the same sign and 0 otherwise (exactly, so no rounding enters through large ``|a|``).

    Parameters
    ----------
    a, b : array_like
        Real numbers (``+-inf`` allowed), broadcast together.

    Returns
    -------
    numpy.ndarray or numpy.float64
        ``log |sigma(a) - sigma(b)|``; ``-inf`` where ``a == b``.

    Raises
    ------
    ValueError
        If ``a`` or ``b`` is NaN.
    """
    a = as_float("a", a)
    b = as_float("b", b)
    a, b = np.broadcast_arrays(a, b)
    finite = np.isfinite(a) & np.isfinite(b)
    af = np.where(finite, a, 0.0)
    bf = np.where(finite, b, 0.0)
    d = np.abs(af - bf)
    same_sign = (af * bf) > 0
    with np.errstate(divide="ignore", over="ignore"):
        core = np.where(same_sign, -np.minimum(np.abs(af), np.abs(bf)), 0.0)
        core = core + np.log(-np.expm1(-d)) - np.log1p(np.exp(-np.abs(af))) - np.log1p(np.exp(-np.abs(bf)))
        # At least one infinite argument: sigma(+inf) = 1, sigma(-inf) = 0, so the gap is
        # sigma(-b) (a = +inf), sigma(b) (a = -inf), and symmetrically in b.
        inf_a = np.where(a == np.inf, log_expit(-b), log_expit(b))
        inf_b = np.where(b == np.inf, log_expit(-a), log_expit(a))
        inf_val = np.where(np.isinf(a), inf_a, inf_b)
        # both infinite with equal sign: gap 0
        both_same = np.isinf(a) & np.isinf(b) & (a == b)
        inf_val = np.where(both_same, -np.inf, inf_val)
    out = np.where(finite, core, inf_val)
    return out[()] if out.ndim == 0 else out


def sigmoid_gap(a, b):
    r"""The left-hand side of Lemma 8, :math:`|\sigma(a) - \sigma(b)|`, computed stably.

    See :func:`log_sigmoid_gap` for the formula; it is evaluated as the product
    :math:`e^{-\mathbb{1}[ab>0](|a|\wedge|b|)}\,(-\mathrm{expm1}(-|a-b|))\,/\,((1+e^{-|a|})(1+e^{-|b|}))`,
    accurate to a few
    units of float64 eps (relative) for ``|a|, |b|`` up to 700 and beyond, including ``a`` close
    to ``b`` (no subtraction of nearly equal sigmoids is ever formed).

    Parameters
    ----------
    a, b : array_like
        Real numbers (``+-inf`` allowed), broadcast together.

    Returns
    -------
    numpy.ndarray or numpy.float64
        ``|sigma(a) - sigma(b)|`` in ``[0, 1]``.

    Raises
    ------
    ValueError
        If ``a`` or ``b`` is NaN.
    """
    a = as_float("a", a)
    b = as_float("b", b)
    a, b = np.broadcast_arrays(a, b)
    finite = np.isfinite(a) & np.isfinite(b)
    af = np.where(finite, a, 0.0)
    bf = np.where(finite, b, 0.0)
    # Product form of exp(log_sigmoid_gap): each factor carries a relative error of ~eps, whereas
    # exponentiating the log would cost eps * |log value| (~1e-13 at values near 1e-300).
    m = np.where(af * bf > 0, np.minimum(np.abs(af), np.abs(bf)), 0.0)
    with np.errstate(over="ignore", under="ignore"):
        core = (
            np.exp(-m)
            * (-np.expm1(-np.abs(af - bf)))
            / ((1.0 + np.exp(-np.abs(af))) * (1.0 + np.exp(-np.abs(bf))))
        )
    out = np.where(finite, core, np.exp(np.where(finite, 0.0, log_sigmoid_gap(a, b))))
    return out[()] if out.ndim == 0 else out


def _lemma8_bound(a, b, const: float):
    a = as_float("a", a)
    b = as_float("b", b)
    a, b = np.broadcast_arrays(a, b)
    m = np.maximum(np.abs(a), np.abs(b))
    with np.errstate(over="ignore", invalid="ignore", under="ignore"):
        diff = np.abs(a - b)
        # product form (relative error ~3 eps); e^{-m} |a - b| -> 0 as m -> inf, and |a - b| can only
        # overflow when e^{-m} underflows to 0, so both cases give exactly 0 (no 0 * inf = NaN).
        out = const * np.exp(-m) * diff
    out = np.where(np.isinf(m) | np.isinf(diff), 0.0, out)
    return out[()] if out.ndim == 0 else out


def lemma8(a, b):
    r"""Lower bound of Lemma 8 as printed: :math:`\tfrac12 e^{-(|a| \vee |b|)} |a - b|`.

    Lemma 8 (Appendix B.1) claims, for all real ``a, b``,

    .. math::

        |\sigma(a) - \sigma(b)| \ge \tfrac{1}{2} e^{-(|a| \vee |b|)} |a - b| .

    The constant 1/2 comes from the proof's claim :math:`\sigma'(z) \ge \tfrac12 e^{-|z|}`, which is
    false (``sigma'(0) = 1/4``); the lemma fails near the diagonal for
    :math:`|a|, |b| < \operatorname{asinh}(1)`. See :func:`lemma8_corrected` and
    ``bounds/FINDINGS.md``.

    Parameters
    ----------
    a, b : array_like
        Real numbers (``+-inf`` allowed, giving 0), broadcast together.

    Returns
    -------
    numpy.ndarray or numpy.float64
        The printed lower bound (no overflow, no NaN).
    """
    return _lemma8_bound(a, b, 0.5)


def lemma8_corrected(a, b):
    r"""Corrected Lemma 8: :math:`|\sigma(a) - \sigma(b)| \ge \tfrac14 e^{-(|a| \vee |b|)} |a - b|`.

    Derivation (``bounds/FINDINGS.md``, finding F1):
    :math:`\sigma'(z) = e^{-|z|} / (1 + e^{-|z|})^2 \ge \tfrac14 e^{-|z|}`, and on the segment between
    ``a`` and ``b`` one has :math:`|z| \le |a| \vee |b|`, so integrating gives the bound. The constant
    1/4 is sharp: the ratio of the two sides tends to 1 as ``a, b -> 0``.

    Parameters
    ----------
    a, b : array_like
        Real numbers (``+-inf`` allowed, giving 0), broadcast together.

    Returns
    -------
    numpy.ndarray or numpy.float64
        The corrected lower bound (no overflow, no NaN).
    """
    return _lemma8_bound(a, b, 0.25)


def psi(z):
    r"""The auxiliary function of Lemma 9, :math:`\psi(z) = (z - 1 - \ln z) / (\ln z)^2`.

    Extended continuously by :math:`\psi(1) = 1/2` (proof of Lemma 10), :math:`\psi(0) = 0` and
    :math:`\psi(\infty) = \infty`. With :math:`u = \ln z`,
    :math:`\psi = (e^u - 1 - u)/u^2 = \sum_{k \ge 0} u^k / (k+2)!`, which is evaluated by its series
    for :math:`|u| < 1` (no cancellation near ``z = 1``) and directly otherwise. ``psi`` is
    increasing on :math:`[0, \infty)` (it equals :math:`\int_0^1 (1-t) e^{tu}\,dt`).

    Parameters
    ----------
    z : array_like
        Non-negative numbers (``inf`` allowed).

    Returns
    -------
    numpy.ndarray or numpy.float64
        ``psi(z)``.

    Raises
    ------
    ValueError
        If ``z`` is negative or NaN.
    """
    z = as_float("z", z)
    if np.any(z < 0):
        raise ValueError(f"z must be >= 0, got {z[z < 0].flat[0]!r}")
    near_one = (z > 0.5) & (z < 2.0)
    with np.errstate(divide="ignore"):
        u = np.where(near_one, np.log1p(np.where(near_one, z - 1.0, 0.0)), np.log(z))
    small = np.abs(u) < 1.0
    zz = np.where(small | ~np.isfinite(u), np.e, z)
    uu = np.where(small | ~np.isfinite(u), 1.0, u)
    direct = (zz - 1.0 - uu) / (uu * uu)
    out = np.where(small, _psi_of_log(np.where(small, u, 0.0)), direct)
    out = np.where(z == np.inf, np.inf, np.where(z == 0, 0.0, out))
    return out[()] if out.ndim == 0 else out


def lemma9_factor(r_max):
    r"""The constant of Lemma 9, :math:`\tfrac12 \vee \psi(r_{\max})`.

    Lemma 9 (Appendix B.1): for :math:`r_{\max} > 1` and all :math:`r \in (0, r_{\max}]`,

    .. math::

        r - 1 - \ln r \le \Big(\tfrac12 \vee \psi(r_{\max})\Big) (\ln r)^2
        \le \frac{r_{\max}}{(\ln r_{\max})^2} (\ln r)^2 .

    The 1/2 covers ``r < 1`` (where ``r - 1 - ln r <= (ln r)^2 / 2``); ``psi(r_max)`` covers
    ``r in [1, r_max]`` by monotonicity of ``psi``. The first inequality also holds for
    ``0 < r_max <= 1`` (factor 1/2), which is accepted here.

    Parameters
    ----------
    r_max : array_like
        Upper end of the range of ratios, ``> 0``.

    Returns
    -------
    numpy.ndarray or numpy.float64

    Raises
    ------
    ValueError
        If ``r_max <= 0`` or NaN.
    """
    r_max = check_positive("r_max", r_max)
    out = np.maximum(0.5, psi(r_max))
    return out[()] if np.ndim(out) == 0 else out


def lemma9_upper_factor(r_max):
    r"""The cruder constant of Lemma 9, :math:`r_{\max} / (\ln r_{\max})^2` (requires ``r_max > 1``).

    It dominates :func:`lemma9_factor` because :math:`\psi(z) \le z/(\ln z)^2` for ``z > 1`` and
    :math:`z/(\ln z)^2 \ge e^2/4 > 1/2`. With :math:`r_{\max} = e^{4R}` it is
    :math:`e^{4R}/(16 R^2)`, the form used in the remark closing B.2.

    Parameters
    ----------
    r_max : array_like
        ``> 1``.

    Returns
    -------
    numpy.ndarray or numpy.float64

    Raises
    ------
    ValueError
        If ``r_max <= 1`` or NaN.
    """
    r_max = as_float("r_max", r_max)
    if np.any(r_max <= 1):
        raise ValueError(f"r_max must be > 1, got {r_max[r_max <= 1].flat[0]!r}")
    with np.errstate(invalid="ignore"):
        out = r_max / np.log(r_max) ** 2
    out = np.where(r_max == np.inf, np.inf, out)
    return out[()] if out.ndim == 0 else out


def lemma10_factor(r_min):
    r"""The constant of Lemma 10, :math:`1 / \big(e\,(\ln r_{\min}^{-1} \vee 1)\big)`.

    Lemma 10 (Appendix B.1): for :math:`r_{\min} > 0` and all :math:`r \ge r_{\min}`,

    .. math::

        r - 1 - \ln r \ge \frac{(\ln r)^2}{e\,(\ln r_{\min}^{-1} \vee 1)} .

    For ``r >= 1/e`` it follows from :math:`\psi(r) \ge \psi(e^{-1}) = e^{-1}`; for
    ``r_min <= r < 1/e`` from the chord bound :math:`\ln r \le (r-1)/(1-e^{-1})`, giving
    :math:`\psi(r) \ge 1/(e \ln r^{-1})`.

    Parameters
    ----------
    r_min : array_like
        Lower end of the range of ratios, ``> 0``.

    Returns
    -------
    numpy.ndarray or numpy.float64

    Raises
    ------
    ValueError
        If ``r_min <= 0`` or NaN.
    """
    r_min = check_positive("r_min", r_min)
    out = 1.0 / (np.e * np.maximum(-np.log(r_min), 1.0))
    return out[()] if np.ndim(out) == 0 else out
