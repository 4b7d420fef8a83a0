r"""A minimax lower bound that is not the paper's: Assouad's lemma on the hypercube class.

The class (:mod:`finitepref.hypercube`, two-response instance): :math:`d` prompts with
:math:`\mathcal D` uniform, :math:`\mu(x)` uniform on two responses, and
:math:`\pi_v(a_0\mid x_j) = \tfrac12 + (2v_j - 1)\varepsilon` for :math:`v\in\{0,1\}^d`, so
:math:`|\Pi| = 2^d`; preferences follow eq. (2) with tilt :math:`\gamma`. A wrong coordinate costs

.. math:: \kappa(\varepsilon) = \mathrm{KL}\bigl(\mathrm{Ber}(\tfrac12+\varepsilon)\,\|\,\mathrm{Ber}(\tfrac12-\varepsilon)\bigr)
          = 4\varepsilon\,\mathrm{artanh}(2\varepsilon)

in either direction, and :math:`\mathbb E_x\mathrm{KL}(\pi_v\|\pi_w) = \frac{\kappa}{d}\#\{j: v_j\ne w_j\}`:
the loss of Theorem 4 (eq. 7) is :math:`\kappa/d` times the Hamming distance.

Data. A pair is informative about coordinate :math:`j` only when its prompt is :math:`x_j` and its two
responses differ, with probability :math:`p = 1/(2d)`; the better response then wins with
probability :math:`q = \sigma(\gamma\ln\frac{1/2+\varepsilon}{1/2-\varepsilon}) = \sigma(2\gamma\,\mathrm{artanh}(2\varepsilon))`
(eq. 3). Two data laws :math:`P_v, P_{v'}` whose vertices differ in coordinate :math:`j` alone share the
law of everything but the wins :math:`W` among the :math:`m\sim\mathrm{Bin}(n, p)` informative pairs of
:math:`x_j`, so

.. math:: 1 - \mathrm{TV}(P_v, P_{v'}) = \mathbb E_m\sum_w \min\bigl(\mathrm{Bin}(w; m, q), \mathrm{Bin}(w; m, 1-q)\bigr)
          = \mathbb E_m\bigl[2\,\mathbb P(W < m/2) + \mathbb P(W = m/2)\bigr],\quad W\sim\mathrm{Bin}(m, q).

Assouad's lemma (Yu 1997, Lemma 2; Tsybakov 2009, Thm. 2.12): for a loss at least
:math:`\sum_j\alpha\,\mathbf 1[\hat v_j\ne v_j]`, every estimator satisfies
:math:`\max_v\mathbb E_v[\text{loss}]\ge\frac{\alpha d}{2}\min_{v\sim v'}(1-\mathrm{TV}(P_v,P_{v'}))`.
With :math:`\alpha = \kappa/d`, for every estimator :math:`\hat\pi` with values in :math:`\Pi` (every
estimator of the paper),

.. math:: \max_{\pi^*\in\Pi}\mathbb E\,\mathbb E_x\mathrm{KL}(\pi^*(x)\|\hat\pi(x))
          \;\ge\; L(n, d, \varepsilon, \gamma) := \kappa(\varepsilon)\,\mathbb E_{m\sim\mathrm{Bin}(n,\,1/(2d))}
          \Bigl[\mathbb P(W < \tfrac m2) + \tfrac12\mathbb P(W = \tfrac m2)\Bigr]
          \qquad\text{(A)}

(the same for the reverse KL, :math:`\kappa` being symmetric). (A) is the Bayes risk of the uniform prior
on :math:`v` (majority vote per coordinate, a fair coin on ties), so it is the sharpest form of the lemma
here. With Bretagnolle-Huber, :math:`1-\mathrm{TV}\ge\frac12 e^{-\mathrm{KL}(P_v\|P_{v'})}` and
:math:`\mathrm{KL}(P_v\|P_{v'}) = np\,(2q-1)\ln\frac q{1-q}`, it gives the closed form

.. math:: L_{\mathrm{BH}}(n, d, \varepsilon, \gamma) = \frac{\kappa(\varepsilon)}4
          \exp\Bigl(-\frac{n}{2d}(2q-1)\ln\frac{q}{1-q}\Bigr)\le L.\qquad\text{(B)}

Scaling: with :math:`\varepsilon = c\sqrt{d/n}` and :math:`n/d\to\infty`, :math:`\kappa\approx 8\varepsilon^2`,
:math:`\ln\frac q{1-q}\approx 4\gamma\varepsilon`, :math:`2q-1\approx 2\gamma\varepsilon`, and (B) becomes :math:`n L_{\mathrm{BH}}\approx 2c^2 d\,e^{-4\gamma^2c^2}`,
maximal at :math:`c^2 = 1/(4\gamma^2)`: :math:`\max_\varepsilon n L_{\mathrm{BH}}\approx d/(2e\gamma^2) =
\ln|\Pi|/(2e\gamma^2\ln 2)`. Any bound of the form :math:`f(|\Pi|)/n` that holds for this class (where
:math:`C_\Pi = 1` and :math:`R = \mathrm{artanh}(2\varepsilon)\to 0`) therefore grows at least like
:math:`\ln|\Pi|`: Theorem 4's factor :math:`\ln|\Pi|` cannot be dropped.

References
----------
.. [1] B. Yu. "Assouad, Fano, and Le Cam." In *Festschrift for Lucien Le Cam*, Springer, 1997, pp. 423-435.
.. [2] A. B. Tsybakov. *Introduction to Nonparametric Estimation.* Springer, 2009. Theorem 2.12 and
   Lemma 2.6 (Bretagnolle-Huber).
"""

from __future__ import annotations

import numpy as np
from scipy import stats
from scipy.special import expit

from ._numerics import exp_or_scalar
from ._validate import as_float, check_gamma, check_n

__all__ = ["hypercube_coordinate_kl", "hypercube_win_probability", "hypercube_lower_bound",
           "hypercube_lower_bound_bh"]

_WIDTH = 12.0
"""(A) sums m over mean +- (12 sd + 12): the mass left out is below 1e-20 (Bernstein's inequality), and dropping
non-negative terms keeps L a lower bound."""


def _check_eps(eps) -> np.ndarray:
    arr = as_float("eps", eps)
    bad = ~((arr > 0) & (arr < 0.5))
    if np.any(bad):
        raise ValueError(f"eps must be in the open interval (0, 1/2), got {float(arr[bad].flat[0])!r}")
    return arr


def _check_dim(d) -> np.ndarray:
    arr = as_float("d", d)
    bad = (arr < 1) | ~np.isfinite(arr) | (arr != np.floor(arr))
    if np.any(bad):
        raise ValueError(f"d must be an integer >= 1, got {float(arr[bad].flat[0])!r}")
    return arr


def _check_integer_n(n) -> np.ndarray:
    arr = check_n(n)
    bad = arr != np.floor(arr)
    if np.any(bad):
        raise ValueError(f"n must be an integer, got {float(arr[bad].flat[0])!r}")
    return arr


def hypercube_coordinate_kl(eps):
    r""":math:`\kappa(\varepsilon) = \mathrm{KL}(\mathrm{Ber}(\frac12+\varepsilon)\|\mathrm{Ber}(\frac12-\varepsilon)) = 4\varepsilon\,\mathrm{artanh}(2\varepsilon)`.

    The KL (either direction) of one wrong coordinate of the hypercube class; ``eps`` in (0, 1/2).

    Examples
    --------
    >>> bool(np.isclose(hypercube_coordinate_kl(0.25), np.log(3) / 2, rtol=1e-15))  # 0.75 ln 3 - 0.25 ln 3
    True
    """
    eps = _check_eps(eps)
    out = 4.0 * eps * np.arctanh(2.0 * eps)
    return out[()] if out.ndim == 0 else out


def hypercube_win_probability(eps, gamma):
    r""":math:`q = \sigma(2\gamma\,\mathrm{artanh}(2\varepsilon))`: the better response of a differing pair wins (eq. 3).

    Examples
    --------
    >>> round(float(hypercube_win_probability(0.1, 1.0)), 12)  # gamma = 1: q = 1/2 + eps
    0.6
    """
    eps, gamma = _check_eps(eps), check_gamma(gamma)
    out = expit(2.0 * gamma * np.arctanh(2.0 * eps))
    return out[()] if out.ndim == 0 else out


def _majority_error(n: float, d: float, q: float) -> float:
    r""":math:`\mathbb E_{m\sim\mathrm{Bin}(n,1/(2d))}[\mathbb P(W<m/2) + \frac12\mathbb P(W=m/2)]`, :math:`W\sim\mathrm{Bin}(m,q)`."""
    p = 1.0 / (2.0 * d)
    mean, spread = n * p, _WIDTH * np.sqrt(n * p * (1.0 - p)) + _WIDTH
    lo, hi = max(int(mean - spread), 0), min(int(np.ceil(mean + spread)), int(n))
    m = np.arange(lo, hi + 1, dtype=np.float64)
    below = stats.binom.cdf(np.ceil(m / 2.0) - 1.0, m, q)
    even = np.mod(m, 2.0) == 0
    half = np.where(even, stats.binom.pmf(np.floor(m / 2.0), m, q), 0.0)
    return float(np.sum(stats.binom.pmf(m, n, p) * (below + 0.5 * half)))


def hypercube_lower_bound(n, d, eps, gamma):
    r"""Assouad's minimax lower bound (A) on :math:`\max_{\pi^*}\mathbb E\,\mathbb E_x\mathrm{KL}` for the hypercube class.

    .. math:: L = \kappa(\varepsilon)\,\mathbb E_{m\sim\mathrm{Bin}(n,1/(2d))}\bigl[\mathbb P(W<\tfrac m2)
              + \tfrac12\mathbb P(W=\tfrac m2)\bigr],\qquad W\sim\mathrm{Bin}(m, q),\ q = \sigma(2\gamma\,\mathrm{artanh}(2\varepsilon)).

    Derivation in the module docstring; exact (binomial sums; tails of :math:`m` of mass below
    :math:`10^{-20}` are dropped, which can only lower :math:`L`). Multiply by ``n`` for the scale of
    Theorem 4 (eq. 7). Broadcasts over its arguments.

    Parameters
    ----------
    n : array_like
        Sample size, an integer >= 1.
    d : array_like
        Number of coordinates (prompts), an integer >= 1; :math:`|\Pi| = 2^d`.
    eps : array_like
        Perturbation in (0, 1/2).
    gamma : array_like
        Tilt of eq. (2), finite and > 0.

    Returns
    -------
    numpy.ndarray or numpy.float64
        :math:`L\ge 0`, in nats per prompt (the unit of :math:`\mathbb E_x\mathrm{KL}`).

    Examples
    --------
    >>> lb = hypercube_lower_bound(1000, 4, 0.05, 1.0)
    >>> bool(hypercube_lower_bound_bh(1000, 4, 0.05, 1.0) <= lb <= hypercube_coordinate_kl(0.05) / 2)
    True
    """
    n, d, eps, gamma = _check_integer_n(n), _check_dim(d), _check_eps(eps), check_gamma(gamma)
    q = expit(2.0 * gamma * np.arctanh(2.0 * eps))
    kappa = 4.0 * eps * np.arctanh(2.0 * eps)
    n_b, d_b, q_b, k_b = np.broadcast_arrays(n, d, q, kappa)
    out = np.array([k * _majority_error(nn, dd, qq) for nn, dd, qq, k in
                    zip(n_b.ravel(), d_b.ravel(), q_b.ravel(), k_b.ravel(), strict=True)]).reshape(n_b.shape)
    return out[()] if out.ndim == 0 else out


def hypercube_lower_bound_bh(n, d, eps, gamma):
    r"""The closed form (B) of Assouad's lemma with Bretagnolle-Huber: a lower bound on (A).

    .. math:: L_{\mathrm{BH}} = \frac{\kappa(\varepsilon)}{4}\exp\Bigl(-\frac{n}{2d}(2q-1)\ln\frac q{1-q}\Bigr),
              \qquad \ln\frac q{1-q} = 2\gamma\,\mathrm{artanh}(2\varepsilon).

    Parameters as :func:`hypercube_lower_bound` (``n`` may be any real >= 1 here).

    Examples
    --------
    >>> round(float(hypercube_lower_bound_bh(1, 1, 0.25, 1.0)), 6)  # (ln 3 / 8) exp(-(1/2)(1/2) ln 3)
    0.104346
    """
    n, d, eps, gamma = check_n(n), _check_dim(d), _check_eps(eps), check_gamma(gamma)
    logit = 2.0 * gamma * np.arctanh(2.0 * eps)
    q = expit(logit)
    kl_neighbours = n / (2.0 * d) * (2.0 * q - 1.0) * logit
    return exp_or_scalar(np.log(eps) + np.log(np.arctanh(2.0 * eps)) - kl_neighbours)
