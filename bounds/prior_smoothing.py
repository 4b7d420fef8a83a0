r"""Prior smoothing of Section 5: closed-form minimisers on the simplex.

For a contextless categorical policy :math:`p \in \Delta_K`, reference :math:`p_0`, rewards
:math:`r`, KL weight :math:`\beta \ge 0` and entropy weight :math:`\gamma \ge 0`, the objective (16)
reads

.. math::

    \mathcal L_{\mathrm{RKL},\beta}(p) = -p\cdot r - \gamma H(p) + \beta\,\mathrm{KL}(p\|p_0)
    = -p\cdot r + (\beta+\gamma)\,\mathrm{KL}(p\,\|\,\bar p_0) + \mathrm{const},

with :math:`\bar p_0 \propto p_0^{\alpha}`, :math:`\alpha = \beta/(\beta+\gamma)`; hence the minimiser
:math:`\hat p_k \propto p_{0,k}^{\alpha}\exp(r_k/(\beta+\gamma))`, versus the RLHF solution
:math:`\hat p_k \propto p_{0,k}\exp(r_k/(\beta+\gamma))`. All functions act on the last axis and
broadcast over leading axes.
"""

from __future__ import annotations

import numpy as np
from scipy.special import logsumexp

from ._validate import as_float, check_nonnegative, check_positive

__all__ = ["reverse_kl_objective", "reverse_kl_solution", "rlhf_solution", "smoothed_prior"]


def _check_nonnegative(name: str, value) -> np.ndarray:
    """A float array with a category axis, every entry finite and >= 0."""
    value = as_float(name, value)
    if value.ndim == 0:
        raise ValueError(f"{name} must have at least one axis (the categories), got the scalar {float(value)!r}")
    bad = (value < 0) | ~np.isfinite(value)
    if bad.any():
        raise ValueError(f"{name} must be finite and >= 0, got {float(value[bad].flat[0])!r}")
    return value


def _check_p0(p0) -> np.ndarray:
    p0 = _check_nonnegative("p0", p0)
    if np.any(p0.sum(axis=-1) <= 0):
        raise ValueError("p0 must have a positive entry along the last axis, got an all-zero row")
    return p0


def _check_p(p) -> np.ndarray:
    """A probability vector on the last axis: finite, >= 0, summing to 1 within 4 K eps (or 1e-9)."""
    p = _check_nonnegative("p", p)
    tol = max(1e-9, 4 * p.shape[-1] * np.finfo(np.float64).eps)
    err = np.abs(p.sum(axis=-1) - 1.0)
    if np.any(err > tol):
        raise ValueError(f"p must sum to 1 along the last axis (tolerance {tol:.3g}), got a sum of "
                         f"{float(np.asarray(p.sum(axis=-1))[err > tol].flat[0])!r}")
    return p


def _check_r(r) -> np.ndarray:
    r = as_float("r", r)
    if not np.all(np.isfinite(r)):
        raise ValueError(f"r must be finite, got {float(r[~np.isfinite(r)].flat[0])!r}")
    return r


def _check_weights(beta, gamma) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``beta, gamma >= 0`` (``inf`` allowed, not both), ``beta + gamma > 0``; returns them and alpha."""
    beta = check_nonnegative("beta", beta)
    gamma = check_nonnegative("gamma", gamma)
    if np.any(np.isinf(beta) & np.isinf(gamma)):
        raise ValueError("beta and gamma must not both be inf (alpha = beta / (beta + gamma) is undefined)")
    if np.any(beta + gamma <= 0):
        raise ValueError(f"beta + gamma must be > 0, got {float(np.min(beta + gamma))!r}")
    with np.errstate(invalid="ignore"):
        alpha = np.where(np.isinf(beta), 1.0, beta / (beta + gamma))
    return beta, gamma, alpha


def _normalise_log(log_w: np.ndarray) -> np.ndarray:
    return np.exp(log_w - logsumexp(log_w, axis=-1, keepdims=True))


_DIRECT_LIMIT = 1e3


def _gibbs(log_base: np.ndarray, r: np.ndarray, temp) -> np.ndarray:
    r"""Normalised :math:`\exp(\text{log\_base} + r/\text{temp})` without NaN.

    The rewards are shifted by their maximum over the base's support before the division, so
    ``r / temp`` cannot reach ``+inf`` (a tiny ``temp`` concentrates the mass on the best response;
    ``temp = inf`` gives the base). Outside the support the weight is exactly 0. Where every
    ``|r / temp|`` is at most ``_DIRECT_LIMIT`` the direct form ``log_base + r / temp`` is used (it
    loses at most ``eps * _DIRECT_LIMIT`` of ``log_base``); beyond, adding ``r / temp`` of 1e9 to
    ``log_base`` would cost 7 digits, so the shifted form is used.
    """
    log_base, r = np.broadcast_arrays(log_base, r)
    temp = np.asarray(temp)[..., None] if np.ndim(temp) else temp
    support = log_base > -np.inf
    with np.errstate(over="ignore", invalid="ignore"):
        scaled = r / temp
    if np.all(np.abs(np.where(support, scaled, 0.0)) <= _DIRECT_LIMIT):
        return _normalise_log(np.where(support, log_base + scaled, -np.inf))  # the common case, as before
    with np.errstate(over="ignore", invalid="ignore"):
        top = np.max(np.where(support, r, -np.inf), axis=-1, keepdims=True)
        shifted = np.where(support, (r - top), 0.0)  # <= 0; may be -inf for rewards 1e308 apart
        scaled = np.where(shifted == 0, 0.0, shifted / temp)
    return _normalise_log(np.where(support, log_base + scaled, -np.inf))


def _alpha_log_p0(p0: np.ndarray, alpha) -> np.ndarray:
    # alpha * log p0 with the convention 0^0 = 1 (alpha = 0 forgets the reference entirely).
    with np.errstate(divide="ignore"):
        log_p0 = np.log(p0)
    alpha = np.asarray(alpha)[..., None] if np.ndim(alpha) else alpha
    with np.errstate(invalid="ignore"):
        return np.where(np.asarray(alpha) == 0, 0.0, alpha * log_p0)


def smoothed_prior(p0, beta, gamma):
    r"""The smoothed reference :math:`\bar p_0 \propto p_0^{\alpha}`, :math:`\alpha = \beta/(\beta+\gamma)`.

    Parameters
    ----------
    p0 : array_like
        Reference probabilities on the last axis (non-negative; only ratios matter).
    beta, gamma : float
        KL weight and entropy weight of eq. (16), both ``>= 0`` with ``beta + gamma > 0``.

    Returns
    -------
    numpy.ndarray
        Normalised :math:`p_0^\alpha` (uniform on the support's complement too when ``alpha = 0``).
    """
    p0 = _check_p0(p0)
    _, _, alpha = _check_weights(beta, gamma)
    return _normalise_log(_alpha_log_p0(p0, alpha))


def reverse_kl_solution(p0, r, beta, gamma):
    r"""Minimiser of :math:`-p\cdot r - \gamma H(p) + \beta\,\mathrm{KL}(p\|p_0)` over the simplex.

    Section 5 ("Prior smoothing"): :math:`\hat p_k \propto p_{0,k}^{\alpha}\exp(r_k/(\beta+\gamma))`
    with :math:`\alpha = \beta/(\beta+\gamma)`. Evaluated by a log-sum-exp normalisation.

    Parameters
    ----------
    p0 : array_like
        Reference probabilities on the last axis (non-negative; only ratios matter).
    r : array_like
        Finite rewards, broadcast against ``p0``.
    beta, gamma : float
        ``>= 0`` with ``beta + gamma > 0``; ``gamma = 0`` gives :func:`rlhf_solution`.

    Returns
    -------
    numpy.ndarray
        The minimiser (probabilities on the last axis).
    """
    p0 = _check_p0(p0)
    r = _check_r(r)
    beta, gamma, alpha = _check_weights(beta, gamma)
    return _gibbs(_alpha_log_p0(p0, alpha), r, beta + gamma)


def rlhf_solution(p0, r, beta_total):
    r"""Minimiser of the RLHF objective (1) with KL weight ``beta_total``: :math:`\hat p_k \propto
    p_{0,k}\exp(r_k/\beta_{\mathrm{total}})`.

    Section 5 compares it with :func:`reverse_kl_solution` at ``beta_total = beta + gamma``.

    Parameters
    ----------
    p0, r : array_like
        As in :func:`reverse_kl_solution`.
    beta_total : float
        The KL weight, ``> 0``.

    Returns
    -------
    numpy.ndarray
        :math:`p_0 e^{r/\beta_{\mathrm{total}}}` normalised on the last axis (zero where ``p0`` is zero).
    """
    p0 = _check_p0(p0)
    r = _check_r(r)
    beta_total = check_positive("beta_total", beta_total)
    with np.errstate(divide="ignore"):
        return _gibbs(np.log(p0), r, beta_total)


def reverse_kl_objective(p, p0, r, beta, gamma):
    r"""The objective :math:`-p\cdot r - \gamma H(p) + \beta\,\mathrm{KL}(p\|p_0)` of Section 5.

    Uses :math:`0\log 0 = 0`; ``KL`` is ``+inf`` if ``p`` puts mass where ``p0`` has none (and
    ``beta > 0``). ``p0`` is normalised first.

    Parameters
    ----------
    p : array_like
        Probabilities on the last axis.
    p0, r, beta, gamma
        As in :func:`reverse_kl_solution`.

    Returns
    -------
    numpy.ndarray or numpy.float64
    """
    p = _check_p(p)
    p0 = _check_p0(p0)
    p0 = p0 / p0.sum(axis=-1, keepdims=True)
    r = _check_r(r)
    beta = check_nonnegative("beta", beta)
    gamma = check_nonnegative("gamma", gamma)
    if np.any(np.isinf(beta) & np.isinf(gamma)):
        raise ValueError("beta and gamma must not both be inf (the objective would be inf - inf)")
    with np.errstate(divide="ignore", invalid="ignore"):
        plogp = np.where(p > 0, p * np.log(np.where(p > 0, p, 1.0)), 0.0)
        plogp0 = np.where(p > 0, p * np.log(np.where(p > 0, p0, 1.0)), 0.0)
    neg_entropy = plogp.sum(axis=-1)
    kl = (plogp - plogp0).sum(axis=-1)
    with np.errstate(invalid="ignore"):  # inf * 0 = 0: an infinite weight on a zero KL costs nothing
        kl_term = np.where((beta == 0) | (kl == 0), 0.0, beta * np.where(np.isinf(kl), np.inf, kl))
        entropy_term = np.where(gamma == 0, 0.0, gamma * neg_entropy)
    out = -(p * r).sum(axis=-1) + entropy_term + kl_term
    return out[()] if np.ndim(out) == 0 else out
