r"""Boundedness R (Assumption 2), generalized coverage C (Definition 3) and l_inf concentrability.

All functions take log-probabilities of a finite class ``(K, X, A)`` and are chunked over ``K``
so that classes of a million policies fit in a few hundred MiB.

The centered reward of Section 2 is :math:`\bar R_\pi(x,a) = \gamma(\ln\pi(a\mid x) -
\mathbb E_{b\sim\mu(x)}\ln\pi(b\mid x))` and :math:`\Delta\bar R_\pi = \bar R_\pi - \bar R_*`.
The factor :math:`\gamma` cancels from both R (which Assumption 2 measures in units of
:math:`\gamma`) and C, so the functions work with :math:`\bar R/\gamma`.
"""

from __future__ import annotations

import math

import torch

from . import distributed

Tensor = torch.Tensor

__all__ = ["centered_log_probs", "boundedness", "coverage", "concentrability"]

_CHUNK = 65_536
_EPS = torch.finfo(torch.float64).eps


def centered_log_probs(log_pi: Tensor, mu: Tensor) -> Tensor:
    r""":math:`\bar R_\pi/\gamma = \ln\pi(a\mid x) - \mathbb E_{b\sim\mu(x)}\ln\pi(b\mid x)`, shape ``(..., X, A)``."""
    return log_pi - (mu * log_pi).sum(-1, keepdim=True)


def boundedness(log_policies: Tensor, mu: Tensor) -> float:
    r"""R of Assumption 2: :math:`\max_{\pi\in\Pi,x,a}|\ln\pi(a\mid x) - \mathbb E_{\mu(x)}\ln\pi(\cdot\mid x)|`.

    With this R, :math:`|\bar R_\pi(x,a)|\le\gamma R` for every policy, prompt and response.
    """
    return distributed.max_over_rows(
        log_policies.shape[0], _CHUNK, lambda rows: float(centered_log_probs(log_policies[rows], mu).abs().max()))


def coverage(log_policies: Tensor, log_pi_star: Tensor, prompt_probs: Tensor, mu: Tensor) -> float:
    r"""Generalized coverage coefficient :math:`C_{\Pi'}` of Definition 3, exactly.

    .. math:: C_{\Pi'} = \max_{\pi\in\Pi'}
              \frac{\mathbb E_{x\sim\mathcal D,a\sim\pi^*(x)}[\Delta\bar R_\pi(x,a)^2]}
                   {\mathbb E_{x\sim\mathcal D,a\sim\mu(x)}[\Delta\bar R_\pi(x,a)^2]},

    with the conventions that a policy whose numerator is 0 constrains nothing (ratio 0), and a
    policy with a positive numerator but a zero denominator (it differs from :math:`\pi^*` only
    off the support of :math:`\mu`) gives :math:`+\infty`. A class containing only policies with
    :math:`\Delta\bar R = 0` has :math:`C = 0`.

    "Zero" is decided with a tolerance of 64 float64 ulps of the log-probabilities' magnitude:
    :math:`\Delta\bar R` entries smaller than that are rounding noise of an exact zero.

    Total: :math:`\Delta\bar R` is normalised per policy by a power of two before squaring (the
    ratio is scale-free and the scaling exact), so log-probabilities down to ``-1.7e308`` give the
    right finite value, never a false 0 from an overflowed ``inf / inf``. Log-probabilities must be
    finite (a zero probability makes :math:`\Delta\bar R` undefined): ``ValueError`` otherwise.
    """
    _check_finite_logs("log_pi_star", log_pi_star)
    centered_star = centered_log_probs(log_pi_star, mu)
    pi_star = torch.exp(log_pi_star)
    weight_star = prompt_probs[:, None] * pi_star
    weight_mu = prompt_probs[:, None] * mu
    scale_star = float(log_pi_star.abs().max())

    def chunk_max(rows: slice) -> float:
        chunk = log_policies[rows]
        _check_finite_logs("log_policies", chunk)
        # halves and powers of two are exact: no overflow of the difference or of its square
        delta = 0.5 * centered_log_probs(chunk, mu) - 0.5 * centered_star
        scale = chunk.abs().amax(dim=(-2, -1), keepdim=True) + scale_star + 1.0
        delta = torch.where(delta.abs() <= 32 * _EPS * scale, torch.zeros_like(delta), delta)
        delta = delta * _power_of_two_normaliser(delta)
        sq = delta * delta
        num = (weight_star * sq).sum((-2, -1))
        den = (weight_mu * sq).sum((-2, -1))
        ratio = torch.where(num == 0, torch.zeros_like(num), num / den)  # den == 0 < num gives inf
        return float(ratio.max())

    return distributed.max_over_rows(log_policies.shape[0], _CHUNK, chunk_max)


def _power_of_two_normaliser(delta: Tensor) -> Tensor:
    """Per policy, the power of two ``2**-e`` with ``max |delta| * 2**-e`` in [1/2, 1) (1 where delta is 0)."""
    peak = delta.abs().amax(dim=(-2, -1), keepdim=True)
    _, exponent = torch.frexp(peak)
    return torch.where(peak > 0, torch.ldexp(torch.ones_like(peak), -exponent), torch.ones_like(peak))


def _check_finite_logs(name: str, log_p: Tensor) -> None:
    if not torch.isfinite(log_p).all():
        raise ValueError(f"{name}: expected finite log-probabilities (full support; Assumption 2), got "
                         f"{float(log_p[~torch.isfinite(log_p)][0])}")


def concentrability(log_policies: Tensor, prompt_probs: Tensor, mu: Tensor) -> float:
    r""":math:`\ell_\infty` concentrability :math:`\sup_{\pi\in\Pi}\max_{x: \mathcal D(x)>0,\,a}\pi(a\mid x)/\mu(a\mid x)`.

    Infinite when :math:`\mu(a\mid x) = 0 < \pi(a\mid x)` for some policy; shown for comparison with
    :func:`coverage`, which the paper notes can be finite when this is not.
    """
    log_mu = torch.log(mu)
    active = prompt_probs > 0
    best = distributed.max_over_rows(
        log_policies.shape[0], _CHUNK, lambda rows: float((log_policies[rows][:, active] - log_mu[active]).max()),
        initial=-math.inf)
    return math.exp(best) if best < 709.0 else math.inf


# ---------------------------------------------------------------------- single-policy coverage (issue 14)
from dataclasses import dataclass  # noqa: E402  (appended section: kept apart for an easy merge)

__all__ += ["SinglePolicyCoverage", "single_policy_log_ratio", "single_policy_coverage"]


@dataclass(frozen=True)
class SinglePolicyCoverage:
    r"""Single-policy concentrability coefficients of :math:`\pi^*` under the data policy :math:`\mu`.

    Properties of :math:`(\mathcal D, \mu, \pi^*)` alone, unlike :math:`C_\Pi` (Definition 3), which
    is a maximum over the class. Prompts with :math:`\mathcal D(x) = 0` do not enter; a response
    with :math:`\pi^*(a\mid x) > 0 = \mu(a\mid x)` makes every coefficient ``inf``; terms with
    :math:`\pi^*(a\mid x) = 0` contribute 0.

    Attributes
    ----------
    linf : float
        :math:`C^{\pi^*}_\infty = \max_{x:\mathcal D(x)>0,\,a}\pi^*(a\mid x)/\mu(a\mid x)`: the
        :math:`\ell_\infty` single-policy concentrability of offline RL (Rashidinejad et al. 2021,
        "Bridging Offline Reinforcement Learning and Imitation Learning: A Tale of Pessimism",
        :math:`C^*` for contextual bandits), the coefficient :math:`C^{\pi}_\infty` of Huang et al.
        (2024, chi-PO) with their :math:`\pi_{\mathrm{ref}}` read as the data policy :math:`\mu`.
    chi2 : float
        :math:`C^{\pi^*}_{\chi^2} = \mathbb E_{x\sim\mathcal D}\mathbb E_{a\sim\pi^*(x)}[\pi^*(a\mid x)/\mu(a\mid x)]
        = 1 + \mathbb E_{x\sim\mathcal D}\chi^2(\pi^*(x)\|\mu(x))`: the :math:`\chi^2` (:math:`L_2(\mu)`)
        form, :math:`\mathcal C^{\pi}` of Huang et al. (2024); :math:`1\le` ``chi2`` :math:`\le` ``linf``.
    pairwise_linf : float
        :math:`\max_{x,a,a'}\frac{\pi^*(a\mid x)\pi^*(a'\mid x)}{\mu(a\mid x)\mu(a'\mid x)} = (C^{\pi^*}_\infty)^2`:
        the density ratio of an on-policy pair :math:`(a, a')\sim\pi^*\otimes\pi^*` to an offline
        pair :math:`\sim\mu\otimes\mu`, the pairwise (trajectory-pair) concentrability of Zhan et al.
        (2023, "Provable Offline Preference-Based Reinforcement Learning", ICLR 2024) with both
        compared responses drawn from the target. (Zhu, Jordan and Jiao 2023, "Principled RLHF from
        Pairwise or K-wise Comparisons", use its linear-feature analogue, the norm of
        :math:`\mathbb E_{\pi^*}\phi` in the inverse data covariance of feature differences.)
    pairwise_chi2 : float
        :math:`\mathbb E_{x}\mathbb E_{(a,a')\sim\pi^*\otimes\pi^*}\frac{\pi^*(a)\pi^*(a')}{\mu(a)\mu(a')}
        = \mathbb E_x\bigl[(1 + \chi^2(\pi^*(x)\|\mu(x)))^2\bigr]`, the :math:`\chi^2` form of the same
        pair ratio.
    """

    linf: float
    chi2: float
    pairwise_linf: float
    pairwise_chi2: float

    def as_dict(self) -> dict[str, float]:
        """The coefficients as a plain dict (for results files)."""
        return {"linf": self.linf, "chi2": self.chi2, "pairwise_linf": self.pairwise_linf,
                "pairwise_chi2": self.pairwise_chi2}


def single_policy_log_ratio(log_pi_star: Tensor, mu: Tensor) -> Tensor:
    r""":math:`\ln\pi^*(a\mid x) - \ln\mu(a\mid x)`, shape ``(X, A)``: ``+inf`` where :math:`\mu = 0 < \pi^*`,
    ``-inf`` where :math:`\pi^* = 0` (whatever :math:`\mu`)."""
    log_mu = torch.log(mu)
    zero_star = torch.isneginf(log_pi_star)
    safe_mu = torch.where(zero_star, torch.zeros_like(log_mu), log_mu)
    return torch.where(zero_star, torch.full_like(log_mu, -math.inf), log_pi_star - safe_mu)


def _log_expectation(log_weight: Tensor, log_value: Tensor) -> Tensor:
    r""":math:`\ln\sum_a e^{w_a + v_a}` over the last axis, with :math:`e^{-\infty}\cdot e^{+\infty} = 0`."""
    dead = torch.isneginf(log_weight)
    terms = torch.where(dead, torch.full_like(log_weight, -math.inf), log_weight + log_value)
    return torch.logsumexp(terms, -1)


def _exp_or_inf(log_value: float) -> float:
    return math.exp(log_value) if log_value < 709.0 else math.inf


def single_policy_coverage(log_pi_star: Tensor, prompt_probs: Tensor, mu: Tensor) -> SinglePolicyCoverage:
    r"""The single-policy coefficients of :class:`SinglePolicyCoverage`, computed in log space.

    With :math:`\rho = \ln\pi^* - \ln\mu` (:func:`single_policy_log_ratio`) and :math:`\mathcal X_+ =
    \{x: \mathcal D(x) > 0\}`: ``linf`` :math:`= \exp\max_{\mathcal X_+,a}\rho`; per prompt
    :math:`\ln(1 + \chi^2_x) = \mathrm{logsumexp}_a(\ln\pi^* + \rho)`; ``chi2`` and
    ``pairwise_chi2`` are the :math:`\mathcal D`-means of :math:`e^{\ln(1+\chi^2_x)}` and
    :math:`e^{2\ln(1+\chi^2_x)}`, again by logsumexp. Values beyond :math:`e^{709}` are ``inf``.
    """
    active = prompt_probs > 0
    rho = single_policy_log_ratio(log_pi_star, mu)[active]
    log_d = torch.log(prompt_probs[active])
    log_chi = _log_expectation(log_pi_star[active], rho)  # ln(1 + chi^2_x), (X+,)
    log_linf = float(rho.max())
    return SinglePolicyCoverage(
        linf=_exp_or_inf(log_linf),
        chi2=_exp_or_inf(float(torch.logsumexp(log_d + log_chi, 0))),
        pairwise_linf=_exp_or_inf(2.0 * log_linf),
        pairwise_chi2=_exp_or_inf(float(torch.logsumexp(log_d + 2.0 * log_chi, 0))),
    )
