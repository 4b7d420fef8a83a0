"""Propositions 12 and 14 and the intermediate bound (18) of Appendix B.

Notation: ``class_size`` is :math:`|\\Pi|`, ``n`` the number of preference pairs, ``delta`` the
failure probability, ``R`` the constant of Assumption 2 and ``gamma`` the temperature of eq. (2).
"""

from __future__ import annotations

import numpy as np

from ._numerics import exp_or_scalar, log_log_ratio, log_product, safe_log
from ._validate import check_class_size, check_delta, check_gamma, check_n, check_radius

__all__ = ["eq18", "eq18_corrected", "proposition12", "proposition14_factor"]


def proposition12(class_size, n, delta):
    r"""Right-hand side of Proposition 12, :math:`4 \ln(|\Pi|/\delta) / n`.

    Proposition 12 (Appendix B.2): the preference MLE :math:`\hat\pi` (eq. (4), ``beta = 0``) over a
    finite realizable class (Assumption 1) satisfies, with probability at least ``1 - delta``,

    .. math::

        \mathbb{E}_{x\sim\mathcal{D},\,a,b\sim\mu(x)}
        \big[(\mathbb{P}_{\hat\pi}(a \succ b \mid x) - \mathbb{P}_*(a \succ b \mid x))^2\big]
        \le \frac{4\ln(|\Pi|/\delta)}{n}.

    The 4 is ``1 / (1/4)``: the proof lower-bounds the Hellinger-type term
    :math:`1 - \mathbb{E}[\sqrt{p_\pi p_*} + \sqrt{(1-p_\pi)(1-p_*)}]` by
    :math:`\tfrac14 \mathbb{E}[(p_\pi - p_*)^2]` (valid; 1/2 also follows, see FINDINGS.md, R1).

    Parameters
    ----------
    class_size : array_like
        :math:`|\Pi| \ge 1`.
    n : array_like
        Sample size, finite and ``>= 1``.
    delta : array_like
        Failure probability in (0, 1).

    Returns
    -------
    numpy.ndarray or numpy.float64
        Broadcast over all arguments.
    """
    class_size = check_class_size("class_size", class_size)
    n = check_n(n)
    delta = check_delta(delta)
    return exp_or_scalar(log_product(np.log(4.0), log_log_ratio(class_size, delta), -np.log(n)))


def _eq18(R, gamma, class_size, n, delta, const: float):
    R = check_radius(R)
    gamma = check_gamma(gamma)
    class_size = check_class_size("class_size", class_size)
    n = check_n(n)
    delta = check_delta(delta)
    return exp_or_scalar(
        log_product(np.log(const), 4.0 * gamma * R, log_log_ratio(class_size, delta), -np.log(n))
    )


def eq18(R, gamma, class_size, n, delta):
    r"""Right-hand side of eq. (18) as printed, :math:`8 e^{4\gamma R} \ln(|\Pi|/\delta) / n`.

    Eq. (18) (proof of Theorem 4, Appendix B.2) states that, with probability ``1 - delta``,

    .. math::

        \mathbb{E}_{x\sim\mathcal{D},\,a\sim\mu(x)}\big[\Delta\bar R_{\hat\pi}(x,a)^2\big]
        \le 8 e^{4\gamma R}\,\frac{\ln(|\Pi|/\delta)}{n}.

    The 8 is :math:`4 \cdot 2`: Proposition 12's 4 times the inverse of the
    :math:`e^{-4\gamma R}/2` obtained from Lemma 8 with constant 1/2 squared and
    :math:`\mathbb{E}[(X-Y)^2] = 2\operatorname{Var}X`. Because Lemma 8's constant is 1/4, not 1/2,
    the printed (18) is not proved, and it is in fact false for small ``delta`` (FINDINGS.md, F1
    and F2); see :func:`eq18_corrected`.

    Parameters
    ----------
    R : array_like
        Constant of Assumption 2, ``>= 0``.
    gamma : array_like
        Temperature of eq. (2), finite and ``> 0``.
    class_size, n, delta : array_like
        As in :func:`proposition12`.

    Returns
    -------
    numpy.ndarray or numpy.float64
        Evaluated in log space (``inf`` for huge ``gamma * R``, never NaN).
    """
    return _eq18(R, gamma, class_size, n, delta, 8.0)


def eq18_corrected(R, gamma, class_size, n, delta):
    r"""Eq. (18) with the corrected Lemma 8: :math:`32 e^{4\gamma R} \ln(|\Pi|/\delta) / n`.

    With :func:`bounds.lemma8_corrected`, :math:`(\mathbb{P}_{\hat\pi} - \mathbb{P}_*)^2 \ge
    \tfrac{1}{16} e^{-4\gamma R} (\Delta\bar R_{\hat\pi}(x,a) - \Delta\bar R_{\hat\pi}(x,b))^2`;
    taking expectations and using :math:`\mathbb{E}[(X-Y)^2] = 2\operatorname{Var}X` (the centred
    reward has mean 0 under :math:`\mu(x)`) gives
    :math:`\mathbb{E}_\mu[\Delta\bar R^2] \le 8 e^{4\gamma R}\,\mathbb{E}[(\mathbb{P}_{\hat\pi} -
    \mathbb{P}_*)^2] \le 8 e^{4\gamma R} \cdot 4 \ln(|\Pi|/\delta)/n` by Proposition 12.

    Parameters and returns as in :func:`eq18`.
    """
    return _eq18(R, gamma, class_size, n, delta, 32.0)


def proposition14_factor(R):
    r"""Constant of Proposition 14, :math:`(4R \vee 1)\, e^{8R+1} / R^2`.

    Proposition 14 (Appendix B.4): for policies satisfying Assumption 2,

    .. math::

        \mathbb{E}_x[\mathrm{KL}(\hat\pi(x)\|\pi^*(x))] \le \frac{(4R \vee 1) e^{8R+1}}{R^2}
        \,\mathbb{E}_x[\mathrm{KL}(\pi^*(x)\|\hat\pi(x))].

    The factor is :math:`\frac{e^{4R}}{R^2}` (step (a), Lemma 9 with :math:`r_{\max}=e^{4R}`; Lemma 9
    actually gives :math:`e^{4R}/(16R^2)`, FINDINGS.md R4) times :math:`e(4R \vee 1)` (step (b),
    Lemma 10 with :math:`r_{\min} = e^{-4R}`) times :math:`e^{4R}` (change of measure via (19)).

    Parameters
    ----------
    R : array_like
        Constant of Assumption 2, ``>= 0`` (``R = 0`` gives ``inf``).

    Returns
    -------
    numpy.ndarray or numpy.float64
        Evaluated in log space (``inf`` for huge ``R``, never NaN).
    """
    R = check_radius(R)
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        # direct product (relative error ~ few eps) where it does not overflow, log space beyond
        direct = np.maximum(4.0 * R, 1.0) * np.exp(8.0 * R + 1.0) / (R * R)
        log_val = np.log(np.maximum(4.0 * R, 1.0)) + 8.0 * R + 1.0 - 2.0 * safe_log(R)
    log_val = np.where(R == np.inf, np.inf, log_val)
    via_log = exp_or_scalar(log_val)
    out = np.where(np.isfinite(direct) | (R == 0), direct, via_log)
    return out[()] if out.ndim == 0 else out
