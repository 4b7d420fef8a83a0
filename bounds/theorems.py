r"""Final displayed bounds of Theorems 4, 6 and 7 (Appendix B.2, B.3, B.4), as printed and corrected.

Common notation: ``C_pi`` / ``C_r`` are the generalized coverage coefficients :math:`C_\Pi`,
:math:`C_{\mathcal R}` of Definition 3, ``R`` and ``gamma`` as in Assumption 2 and eq. (2),
``class_size`` is :math:`|\Pi|`, ``reward_class_size`` is :math:`|\mathcal R|`. Every bound contains
the Lemma 9 constant :math:`\tfrac12 \vee \psi(e^{4R})` (ratio range of eq. (19)) and the factor
:math:`2R^2 e^{4R} + 3` that collects the two terms of the proof of Theorem 4.

All functions broadcast over their arguments, evaluate in log space (huge ``R`` gives ``inf``, never
NaN), and use the convention ``0 * inf = 0`` (a zero coverage coefficient gives a zero coverage
term, even when ``R`` or a class size is infinite).
"""

from __future__ import annotations

import numpy as np

from ._numerics import (
    exp_or_scalar,
    log_lemma9_factor_of_R,
    log_log_ratio,
    log_product,
    log_z_term,
    safe_log,
)
from ._validate import check_class_size, check_coverage, check_delta, check_gamma, check_n, check_radius

__all__ = [
    "theorem4",
    "theorem4_corrected",
    "theorem6",
    "theorem6_corrected",
    "theorem7",
    "theorem7_corrected",
]


def _theorem4(C_pi, R, gamma, class_size, n, delta, const: float):
    C_pi = check_coverage("C_pi", C_pi)
    R = check_radius(R)
    gamma = check_gamma(gamma)
    class_size = check_class_size("class_size", class_size)
    n = check_n(n)
    delta = check_delta(delta)
    return exp_or_scalar(
        log_product(
            log_lemma9_factor_of_R(R),
            np.log(const),
            log_z_term(R),
            safe_log(C_pi),
            4.0 * gamma * R,
            -2.0 * np.log(gamma),
            log_log_ratio(class_size, delta),
            -np.log(n),
        )
    )


def theorem4(C_pi, R, gamma, class_size, n, delta):
    r"""Final bound of Theorem 4 as printed (end of Appendix B.2).

    With probability at least ``1 - delta`` the PMLE :math:`\hat\pi` (eq. (4), ``beta = 0``) satisfies,
    under Assumptions 1-2 and Definition 3,

    .. math::

        \mathbb{E}_{x}\big[\mathrm{KL}(\pi^*(x)\|\hat\pi(x))\big] \le
        \Big(\tfrac12 \vee \psi(e^{4R})\Big)
        \frac{16\,(2R^2 e^{4R} + 3)\, C_\Pi\, e^{4\gamma R}}{\gamma^2}\cdot\frac{\ln(|\Pi|/\delta)}{n}.

    Origin of the constant: (20) gives the Lemma 9 factor; the square of the log ratio is split as
    :math:`2\cdot\frac{1}{\gamma^2}\mathbb{E}_{\pi^*}[\Delta\bar R^2] + 2\,\mathbb{E}[(\ln Z_*/Z_{\hat\pi})^2]`
    with the second at most :math:`\frac{2R^2e^{4R}+2}{\gamma^2}\mathbb{E}_{\pi^*}[\Delta\bar R^2]`;
    Definition 3 and eq. (18) (``8 e^{4 gamma R}``) give :math:`16 = 2 \cdot 8`. Since eq. (18)
    rests on the false constant of Lemma 8, this display is not established by the proof; see
    :func:`theorem4_corrected` (FINDINGS.md, F1).

    Parameters
    ----------
    C_pi : array_like
        Coverage coefficient :math:`C_\Pi \ge 0` (``inf`` gives ``inf``; ``0`` gives ``0``).
    R : array_like
        Constant of Assumption 2, ``>= 0``.
    gamma : array_like
        Temperature of eq. (2), finite and ``> 0``.
    class_size : array_like
        :math:`|\Pi| \ge 1`.
    n : array_like
        Sample size, finite and ``>= 1``.
    delta : array_like
        Failure probability in (0, 1).

    Returns
    -------
    numpy.ndarray or numpy.float64
    """
    return _theorem4(C_pi, R, gamma, class_size, n, delta, 16.0)


def theorem4_corrected(C_pi, R, gamma, class_size, n, delta):
    r"""Theorem 4 with the corrected Lemma 8 (constant 1/4): the printed bound times 4.

    .. math::

        \mathbb{E}_{x}\big[\mathrm{KL}(\pi^*(x)\|\hat\pi(x))\big] \le
        \Big(\tfrac12 \vee \psi(e^{4R})\Big)
        \frac{64\,(2R^2 e^{4R} + 3)\, C_\Pi\, e^{4\gamma R}}{\gamma^2}\cdot\frac{\ln(|\Pi|/\delta)}{n}.

    Same proof as printed with eq. (18) replaced by :func:`bounds.eq18_corrected`
    (``32 e^{4 gamma R}``): :math:`(2/\gamma^2 + 2(2R^2e^{4R}+2)/\gamma^2)\cdot C_\Pi \cdot 32 e^{4\gamma R}
    = 64(2R^2e^{4R}+3) C_\Pi e^{4\gamma R}/\gamma^2`. Parameters as in :func:`theorem4`.
    """
    return _theorem4(C_pi, R, gamma, class_size, n, delta, 64.0)


def _theorem6(C_pi, R, gamma, class_size, reward_class_size, n, delta, const: float):
    C_pi = check_coverage("C_pi", C_pi)
    R = check_radius(R)
    gamma = check_gamma(gamma)
    class_size = check_class_size("class_size", class_size)
    reward_class_size = check_class_size("reward_class_size", reward_class_size)
    n = check_n(n)
    delta = check_delta(delta)
    log_logs = np.logaddexp(
        log_log_ratio(class_size, delta, 2.0),
        np.log(2.0) + log_log_ratio(reward_class_size, delta, 2.0),
    )
    return exp_or_scalar(
        log_product(
            log_lemma9_factor_of_R(R),
            np.log(const),
            log_z_term(R),
            safe_log(C_pi),
            4.0 * gamma * R,
            -2.0 * np.log(gamma),
            log_logs,
            -np.log(n),
        )
    )


def theorem6(C_pi, R, gamma, class_size, reward_class_size, n, delta):
    r"""Final bound of Theorem 6 as printed (end of Appendix B.3).

    With probability at least ``1 - delta`` the preference-distillation estimate (eq. (11)) satisfies,
    under Assumptions 1, 2, 5 and Definition 3 (and, implicitly, :math:`\pi^* \in \mathcal
    P_\gamma(\mathcal R)` for Proposition 12 on the reward class),

    .. math::

        \mathbb{E}_{x}\big[\mathrm{KL}(\pi^*(x)\|\hat\pi(x))\big] \le
        \Big(\tfrac12 \vee \psi(e^{4R})\Big)
        \frac{32\,(2R^2 e^{4R} + 3)\, C_\Pi\, e^{4\gamma R}}{\gamma^2}\cdot
        \frac{\ln(2|\Pi|/\delta) + 2\ln(2|\mathcal R|/\delta)}{n}.

    Origin: the interpolation event gives :math:`2\ln(2|\Pi|/\delta)/n`, Proposition 12 on
    :math:`\mathcal P_\gamma(\mathcal R)` gives :math:`4\ln(2|\mathcal R|/\delta)/n` (union bound,
    ``delta/2`` each), :math:`(x+y)^2 \le 2x^2+2y^2` gives
    :math:`(4\ln(2|\Pi|/\delta) + 8\ln(2|\mathcal R|/\delta))/n`; eq. (21) multiplies by
    :math:`4e^{4\gamma R}` (Lemma 8 with constant 1/2 gives :math:`2e^{4\gamma R}`, FINDINGS.md R2),
    and the Theorem 4 algebra multiplies by :math:`2(2R^2e^{4R}+3)C_\Pi/\gamma^2`.

    Parameters
    ----------
    C_pi, R, gamma, class_size, n, delta : array_like
        As in :func:`theorem4`.
    reward_class_size : array_like
        :math:`|\mathcal R| \ge 1`.

    Returns
    -------
    numpy.ndarray or numpy.float64
    """
    return _theorem6(C_pi, R, gamma, class_size, reward_class_size, n, delta, 32.0)


def theorem6_corrected(C_pi, R, gamma, class_size, reward_class_size, n, delta):
    r"""Theorem 6 with the corrected Lemma 8 (constant 1/4): the printed bound times 2.

    .. math::

        \mathbb{E}_{x}\big[\mathrm{KL}(\pi^*(x)\|\hat\pi(x))\big] \le
        \Big(\tfrac12 \vee \psi(e^{4R})\Big)
        \frac{64\,(2R^2 e^{4R} + 3)\, C_\Pi\, e^{4\gamma R}}{\gamma^2}\cdot
        \frac{\ln(2|\Pi|/\delta) + 2\ln(2|\mathcal R|/\delta)}{n}.

    With Lemma 8's constant 1/4, eq. (21) holds with :math:`\tfrac12 \cdot 16 e^{4\gamma R}
    = 8 e^{4\gamma R}` in place of the printed :math:`4e^{4\gamma R}` (which was itself loose by 2),
    so the final constant doubles. Parameters as in :func:`theorem6`.
    """
    return _theorem6(C_pi, R, gamma, class_size, reward_class_size, n, delta, 64.0)


def _theorem7(C_r, R, gamma, class_size, reward_class_size, n, delta, const: float, reward_mult: float):
    C_r = check_coverage("C_r", C_r)
    R = check_radius(R)
    gamma = check_gamma(gamma)
    class_size = check_class_size("class_size", class_size)
    reward_class_size = check_class_size("reward_class_size", reward_class_size)
    n = check_n(n)
    delta = check_delta(delta)
    log_n = np.log(n)
    policy_term = log_product(
        np.log(16.0 * np.e),
        safe_log(R),
        np.log(np.maximum(4.0 * R, 1.0)),
        log_log_ratio(class_size, delta, 2.0),
        -log_n,
    )
    reward_term = log_product(
        np.log(const),
        log_z_term(R),
        safe_log(C_r),
        (4.0 * gamma + 4.0) * R,
        -2.0 * np.log(gamma),
        log_log_ratio(reward_class_size, delta, reward_mult),
        -log_n,
    )
    return exp_or_scalar(log_product(log_lemma9_factor_of_R(R), np.logaddexp(policy_term, reward_term)))


def theorem7(C_r, R, gamma, class_size, reward_class_size, n, delta):
    r"""Final bound of Theorem 7 as printed (end of Appendix B.4).

    With probability at least ``1 - delta`` the reverse-KL estimate (eq. (16), ``beta = 0``) satisfies,
    under Assumptions 1, 2, 5 and Definition 3 for :math:`\mathcal P_\gamma(\mathcal R)`,

    .. math::

        \mathbb{E}_{x}\big[\mathrm{KL}(\hat\pi(x)\|\pi^*(x))\big] \le
        \Big(\tfrac12 \vee \psi(e^{4R})\Big)\Big(16eR(4R\vee 1)\frac{\ln(2|\Pi|/\delta)}{n}
        + \frac{32(2R^2e^{4R}+3)\,C_{\mathcal R}\,e^{(4\gamma+4)R}}{\gamma^2}
        \cdot\frac{\ln(|\mathcal R|/\delta)}{n}\Big).

    Origin: Lemma 9 on :math:`\pi^*/\hat\pi \le e^{4R}`; the log ratio through :math:`\tilde\pi` is split
    with :math:`(x+y)^2\le 2x^2+2y^2`; the first part uses Lemma 10 (:math:`r_{\min}=e^{-4R}`, factor
    :math:`e(4R\vee1)`) and the interpolation event :math:`|\Pi|^2 e^{-\varepsilon n/(4R)}`, i.e.
    :math:`8R\ln(2|\Pi|/\delta)/n` at level ``delta/2``; the second uses a change of measure
    (:math:`e^{4R}`) and the Theorem 4 derivation on :math:`\mathcal P_\gamma(\mathcal R)`. The printed
    :math:`\ln(|\mathcal R|/\delta)` drops the union bound's factor 2 (FINDINGS.md, F3), and the
    constant 32 rests on the false Lemma 8 constant (F1); see :func:`theorem7_corrected`.

    Parameters
    ----------
    C_r : array_like
        Coverage coefficient :math:`C_{\mathcal R} \ge 0`.
    R, gamma, class_size, n, delta : array_like
        As in :func:`theorem4`.
    reward_class_size : array_like
        :math:`|\mathcal R| \ge 1`.

    Returns
    -------
    numpy.ndarray or numpy.float64
    """
    return _theorem7(C_r, R, gamma, class_size, reward_class_size, n, delta, 32.0, 1.0)


def theorem7_corrected(C_r, R, gamma, class_size, reward_class_size, n, delta):
    r"""Theorem 7 with the union bound's ``delta/2`` and the corrected Lemma 8.

    .. math::

        \mathbb{E}_{x}\big[\mathrm{KL}(\hat\pi(x)\|\pi^*(x))\big] \le
        \Big(\tfrac12 \vee \psi(e^{4R})\Big)\Big(16eR(4R\vee 1)\frac{\ln(2|\Pi|/\delta)}{n}
        + \frac{128(2R^2e^{4R}+3)\,C_{\mathcal R}\,e^{(4\gamma+4)R}}{\gamma^2}
        \cdot\frac{\ln(2|\mathcal R|/\delta)}{n}\Big).

    The reward-class event is Proposition 12 at level ``delta/2`` (hence :math:`2|\mathcal R|`);
    with :func:`bounds.eq18_corrected` the Theorem 4 derivation on :math:`\mathcal P_\gamma(\mathcal R)`
    gives :math:`64(2R^2e^{4R}+3)C_{\mathcal R}e^{4\gamma R}/\gamma^2`, times :math:`e^{4R}` and 2.
    Parameters as in :func:`theorem7`.
    """
    return _theorem7(C_r, R, gamma, class_size, reward_class_size, n, delta, 128.0, 2.0)
