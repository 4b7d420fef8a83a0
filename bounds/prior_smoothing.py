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


def _check_p0(p0) -> np.ndarray:
    p0 = as_float("p0", p0)
    if p0.ndim == 0:
        raise ValueError("p0 must have at least one axis (the categories)")
    if np.any(p0 < 0) or not np.all(np.isfinite(p0)):
        raise ValueError("p0 must be finite and >= 0")
    if np.any(p0.sum(axis=-1) <= 0):
        raise ValueError("p0 must have a positive entry along the last axis")
    return p0


def _check_r(r) -> np.ndarray:
    r = as_float("r", r)
    if not np.all(np.isfinite(r)):
        raise ValueError("r must be finite")
    return r


def _normalise_log(log_w: np.ndarray) -> np.ndarray:
    return np.exp(log_w - logsumexp(log_w, axis=-1, keepdims=True))


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
    beta = check_nonnegative("beta", beta)
    gamma = check_nonnegative("gamma", gamma)
    if np.any(beta + gamma <= 0):
        raise ValueError("beta + gamma must be > 0")
    alpha = beta / (beta + gamma)
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
    beta = check_nonnegative("beta", beta)
    gamma = check_nonnegative("gamma", gamma)
    if np.any(beta + gamma <= 0):
        raise ValueError("beta + gamma must be > 0")
    alpha = beta / (beta + gamma)
    temp = beta + gamma
    temp = temp[..., None] if np.ndim(temp) else temp
    return _normalise_log(_alpha_log_p0(p0, alpha) + r / temp)


def rlhf_solution(p0, r, beta_total):
    r"""Minimiser of the RLHF objective (1) with KL weight ``beta_total``: :math:`\hat p_k \propto
    p_{0,k}\exp(r_k/\beta_{\mathrm{total}})`.

    Section 5 compares it with :func:`reverse_kl_solution` at ``beta_total = beta + gamma``.

    Parameters
    ----------
    p0 : array_like
        Reference probabilities on the last axis (non-negative; only ratios matter).
    r : array_like
        Finite rewards, broadcast against ``p0``.
    beta_total : float
        ``> 0``.

    Returns
    -------
    numpy.ndarray
    """
    p0 = _check_p0(p0)
    r = _check_r(r)
    beta_total = check_positive("beta_total", beta_total)
    temp = beta_total[..., None] if np.ndim(beta_total) else beta_total
    with np.errstate(divide="ignore"):
        return _normalise_log(np.log(p0) + r / temp)


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
    p = as_float("p", p)
    p0 = _check_p0(p0)
    p0 = p0 / p0.sum(axis=-1, keepdims=True)
    r = _check_r(r)
    beta = check_nonnegative("beta", beta)
    gamma = check_nonnegative("gamma", gamma)
    with np.errstate(divide="ignore", invalid="ignore"):
        plogp = np.where(p > 0, p * np.log(np.where(p > 0, p, 1.0)), 0.0)
        plogp0 = np.where(p > 0, p * np.log(np.where(p > 0, p0, 1.0)), 0.0)
    neg_entropy = plogp.sum(axis=-1)
    kl = (plogp - plogp0).sum(axis=-1)
    value = -(p * r).sum(axis=-1) + gamma * neg_entropy
    kl_term = np.where(beta == 0, 0.0, beta * np.where(np.isinf(kl), np.inf, kl))
    out = value + kl_term
    return out[()] if np.ndim(out) == 0 else out
