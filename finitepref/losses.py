r"""The single implementation of every loss in the paper.

Each function is elementwise over broadcastable :class:`torch.Tensor` arguments of
log-probabilities and rewards, and returns a tensor of per-sample losses (no reduction).
The exact toy estimators (:mod:`finitepref.estimators`) evaluate them on the exact
categorical log-probabilities of every policy in a finite class; the language-model trainer
(:mod:`finitepref.llm`) evaluates them on summed token log-probabilities of sampled
sequences. No other copy of these formulas exists in the package.

Notation follows the paper: :math:`\sigma` is the logistic sigmoid, ``logp_plus`` is
:math:`\ln\pi(a^+\mid x)`, ``logp_minus`` is :math:`\ln\pi(a^-\mid x)`, ``ref_*`` are the
same under the reference :math:`\pi_0`, ``r_*`` are rewards :math:`R(x, a^\pm)`.

Numerics: :math:`-\ln\sigma(z)` is computed by :func:`torch.nn.functional.logsigmoid`, which
is finite and exact for :math:`|z|` up to the float range; :math:`\ln(1-\sigma(z))` is written
:math:`\ln\sigma(-z)`. Log-probabilities may be as small as ``-1e300``-scale finite values;
``-inf`` (a zero probability) propagates as ``+inf`` loss where the equation says so, and a zero
weight times an infinite log-loss is 0 (never NaN).

References
----------
.. [1] J. Yun, J. Kim, J. Park, J. Kim, J. J. Ryu, J. Cho, K.-S. Jun. "Alignment as Distribution
   Learning: Your Preference Model is Explicitly a Language Model." ICML 2025 Workshop on Models of
   Human Feedback for AI Alignment, 2025. Equation numbers refer to it.
.. [2] R. Rafailov, A. Sharma, E. Mitchell, S. Ermon, C. D. Manning, C. Finn. "Direct Preference
   Optimization: Your Language Model is Secretly a Reward Model." NeurIPS 2023. arXiv:2305.18290.
.. [3] Z. Gao, J. D. Chang, W. Zhan, O. Oertell, G. Swamy, K. Brantley, T. Joachims, J. A. Bagnell,
   J. D. Lee, W. Sun. "REBEL: Reinforcement Learning via Regressing Relative Rewards." NeurIPS 2024.
   arXiv:2404.16767.
.. [4] L. Ouyang, J. Wu, X. Jiang, et al. "Training language models to follow instructions with human
   feedback." NeurIPS 2022. arXiv:2203.02155.
.. [5] R. A. Bradley, M. E. Terry. "Rank Analysis of Incomplete Block Designs: I. The Method of Paired
   Comparisons." Biometrika 39(3/4):324-345, 1952.
.. [6] J. Schulman. "Approximating KL Divergence." Blog post, 2020.
   http://joschu.net/blog/kl-approx.html
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

Tensor = torch.Tensor

__all__ = [
    "preference_logit",
    "pmle_loss",
    "dpo_loss",
    "bradley_terry_loss",
    "distill_loss",
    "rebel_loss",
    "shaped_reward",
]


def preference_logit(logp_a: Tensor, logp_b: Tensor, gamma: float) -> Tensor:
    r"""Logit of the preference model, eq. (3).

    .. math:: \mathbb{P}_\pi(a \succ b \mid x) = \sigma\bigl(\gamma(\ln\pi(a\mid x) - \ln\pi(b\mid x))\bigr).

    Returns :math:`\gamma(\ln\pi(a\mid x) - \ln\pi(b\mid x))`. Two equal infinite arguments
    (two zero-probability responses) give 0, the model's 1/2 for indistinguishable responses,
    instead of ``nan``; gradients flow unchanged everywhere else.

    Examples
    --------
    >>> t = lambda v: torch.tensor(v, dtype=torch.float64)
    >>> float(preference_logit(t(-1.0), t(-3.0), 0.5))
    1.0
    >>> float(preference_logit(t(float("-inf")), t(float("-inf")), 1.0))
    0.0
    """
    diff = logp_a - logp_b
    both_inf = torch.isinf(logp_a) & (logp_a == logp_b)
    return gamma * diff.masked_fill(both_inf, 0.0)


def pmle_loss(logp_plus: Tensor, logp_minus: Tensor, gamma: float) -> Tensor:
    r"""Per-pair negative log-likelihood of preference MLE, eq. (4).

    .. math:: \ell_{\mathrm{PMLE}} = -\ln\sigma\Bigl(\gamma \ln\frac{\pi(a^+\mid x)}{\pi(a^-\mid x)}\Bigr).

    The KL regularizer of eq. (5) is added separately (see :func:`shaped_reward`).

    Examples
    --------
    >>> t = lambda v: torch.tensor(v, dtype=torch.float64)
    >>> round(float(pmle_loss(t(-1.0), t(-1.0), 1.0)), 6)  # equal probabilities: -ln sigma(0) = ln 2
    0.693147
    """
    return -F.logsigmoid(preference_logit(logp_plus, logp_minus, gamma))


def dpo_loss(
    logp_plus: Tensor, logp_minus: Tensor, ref_plus: Tensor, ref_minus: Tensor, beta: float
) -> Tensor:
    r"""Per-pair DPO loss, eq. (6), with inverse temperature ``beta``.

    .. math:: \ell_{\mathrm{DPO}} = -\ln\sigma\Bigl(\beta\ln\frac{\pi(a^+\mid x)}{\pi(a^-\mid x)}
              - \beta\ln\frac{\pi_0(a^+\mid x)}{\pi_0(a^-\mid x)}\Bigr).

    The paper writes the coefficient as :math:`\gamma`; Rafailov et al. (2023) call it
    :math:`\beta`. Here it is the argument ``beta`` [2]_.

    Examples
    --------
    >>> t = lambda v: torch.tensor(v, dtype=torch.float64)
    >>> round(float(dpo_loss(t(-1.0), t(-2.0), t(-1.0), t(-2.0), 0.1)), 6)  # pi = pi0 on the pair: ln 2
    0.693147
    """
    margin = preference_logit(logp_plus, logp_minus, 1.0) - preference_logit(ref_plus, ref_minus, 1.0)
    return -F.logsigmoid(beta * margin)


def bradley_terry_loss(r_plus: Tensor, r_minus: Tensor) -> Tensor:
    r"""Per-pair Bradley-Terry reward-model loss, eq. (9).

    .. math:: \ell_{\mathrm{BT}} = -\ln\sigma\bigl(R(x,a^+) - R(x,a^-)\bigr).

    The Bradley-Terry model [5]_ as used for reward models by Ouyang et al. [4]_.

    Examples
    --------
    >>> t = lambda v: torch.tensor(v, dtype=torch.float64)
    >>> round(float(bradley_terry_loss(t(2.0), t(0.0))), 6)  # ln(1 + e^-2)
    0.126928
    """
    return -F.logsigmoid(preference_logit(r_plus, r_minus, 1.0))


def distill_loss(
    logp_plus: Tensor, logp_minus: Tensor, r_plus: Tensor, r_minus: Tensor, gamma: float
) -> Tensor:
    r"""Per-pair preference-distillation loss, eq. (11).

    With the synthetic preference of the reward model
    :math:`\tilde p = \mathbb{P}_{\tilde\pi}(a^+\succ a^-\mid x) = \sigma(\hat R(x,a^+) - \hat R(x,a^-))`
    and the policy's logit :math:`z = \gamma\ln\frac{\pi(a^+\mid x)}{\pi(a^-\mid x)}`,

    .. math:: \ell_{\mathrm{Distill}} = -\tilde p\,\ln\sigma(z) - (1-\tilde p)\,\ln\sigma(-z),

    the cross-entropy between Bernoulli(:math:`\tilde p`) and Bernoulli(:math:`\sigma(z)`). It is
    symmetric under swapping :math:`a^+` and :math:`a^-`. :math:`1-\tilde p` is computed as
    :math:`\sigma(-\Delta\hat R)`, so neither weight loses digits; a weight of 0 times an infinite
    log-loss counts 0.

    Examples
    --------
    >>> t = lambda v: torch.tensor(v, dtype=torch.float64)
    >>> round(float(distill_loss(t(-1.0), t(-1.0), t(0.0), t(0.0), 1.0)), 6)  # both sides 1/2: ln 2
    0.693147
    """
    dr = preference_logit(r_plus, r_minus, 1.0)
    z = preference_logit(logp_plus, logp_minus, gamma)
    return -(_weighted(_sigmoid(dr), F.logsigmoid(z)) + _weighted(_sigmoid(-dr), F.logsigmoid(-z)))


def _sigmoid(x: Tensor) -> Tensor:
    r""":math:`\sigma(x)`, accurate into the subnormal range: :math:`e^x` for :math:`x < -36` (where
    :math:`\sigma(x) = e^x/(1+e^x)` equals :math:`e^x` to float64 precision), since ``torch.sigmoid``
    computes :math:`1/(1+e^{-x})` and returns 0 once :math:`e^{-x}` overflows (:math:`x < -709.8`)."""
    return torch.where(x < -36.0, torch.exp(x.clamp(max=-36.0)), torch.sigmoid(x))  # clamp: no inf in the unused branch


def _weighted(weight: Tensor, value: Tensor) -> Tensor:
    """``weight * value`` with ``0 * inf = 0`` (a label of probability 0 ignores an infinite log-loss)."""
    return torch.where(weight == 0, torch.zeros_like(value), weight * value)


def rebel_loss(
    logp_plus: Tensor,
    logp_minus: Tensor,
    ref_plus: Tensor,
    ref_minus: Tensor,
    r_plus: Tensor,
    r_minus: Tensor,
    eta: float,
) -> Tensor:
    r"""Per-pair REBEL squared loss, eq. (10).

    .. math:: \ell_{\mathrm{REBEL}} = \Bigl(\ln\frac{\pi(a^+\mid x)/\pi_0(a^+\mid x)}{\pi(a^-\mid x)/\pi_0(a^-\mid x)}
              - \eta\bigl(\hat R(x,a^+) - \hat R(x,a^-)\bigr)\Bigr)^2.

    Gao et al. [3]_.

    Examples
    --------
    >>> t = lambda v: torch.tensor(v, dtype=torch.float64)
    >>> float(rebel_loss(t(-1.0), t(-2.0), t(-1.5), t(-1.5), t(0.5), t(0.0), 2.0))  # (1 - 2 * 0.5)^2
    0.0
    """
    margin = preference_logit(logp_plus, logp_minus, 1.0) - preference_logit(ref_plus, ref_minus, 1.0)
    return (margin - eta * preference_logit(r_plus, r_minus, 1.0)) ** 2


def shaped_reward(reward: Tensor, logp: Tensor, ref_logp: Tensor | None, beta: float, gamma: float) -> Tensor:
    r"""Per-sample shaped reward of RLHF, eq. (1), and of reverse KL, eq. (16).

    .. math:: \tilde r(x, a) = R(x, a) - \beta\bigl(\ln\pi(a\mid x) - \ln\pi_0(a\mid x)\bigr) - \gamma\ln\pi(a\mid x).

    Its expectation under :math:`a\sim\pi(x)` is
    :math:`\mathbb{E}_\pi[R] - \beta\,\mathrm{KL}(\pi(x)\|\pi_0(x)) + \gamma H(\pi(x))`, so the
    objectives are :math:`\mathcal{L}_{\mathrm{RKL},\beta}(\pi) = -\mathbb{E}_{x,\,a\sim\pi}[\tilde r]`
    (eq. 16; ``gamma=0`` gives RLHF, eq. 1). Equivalently, RLHF with KL coefficient
    :math:`\beta+\gamma` against the smoothed prior :math:`\pi_0^{\beta/(\beta+\gamma)}` (Section 5).
    With ``reward = 0`` and ``gamma = 0`` it is :math:`-\beta` times the per-sample KL estimate, the
    regularizer of eqs. (5) and (12).

    ``ref_logp`` may be ``None`` only when ``beta == 0``. With ``reward = 0, gamma = 0`` its negative
    mean is the KL estimate :math:`\beta\ln(\pi/\pi_0)` of Schulman [6]_ ("k1"), whose expectation under
    :math:`\pi` is exact here (the toy core sums over all responses).

    Examples
    --------
    >>> t = lambda v: torch.tensor(v, dtype=torch.float64)
    >>> float(shaped_reward(t(1.0), t(-1.0), t(-2.0), 0.5, 0.0))  # 1 - 0.5 * (-1 + 2)
    0.5
    """
    out = reward - gamma * logp if gamma != 0 else reward + torch.zeros_like(logp)
    if beta != 0:
        if ref_logp is None:
            raise ValueError(f"ref_logp: expected reference log-probabilities when beta != 0 (beta = {beta!r}), got None")
        out = out - beta * (logp - ref_logp)
    return out


# ---------------------------------------------------------------------- beyond the paper (issue 14)
__all__ += ["ipo_loss", "chi_link_margin", "chipo_loss"]


def ipo_loss(
    logp_plus: Tensor, logp_minus: Tensor, ref_plus: Tensor, ref_minus: Tensor, tau: float
) -> Tensor:
    r"""Per-pair IPO loss (Azar et al. 2023, "A General Theoretical Paradigm to Understand Learning
    from Human Preferences", eq. 17), with regularisation ``tau``.

    .. math:: \ell_{\mathrm{IPO}} = \Bigl(h_\pi(a^+, a^-) - \frac{1}{2\tau}\Bigr)^2,\qquad
              h_\pi(a^+, a^-) = \ln\frac{\pi(a^+\mid x)}{\pi_0(a^+\mid x)} - \ln\frac{\pi(a^-\mid x)}{\pi_0(a^-\mid x)}.

    :math:`h` is the margin of :func:`dpo_loss` (two equal infinite log-probabilities give a zero
    difference, as in :func:`preference_logit`); an infinite margin gives ``+inf``.

    Examples
    --------
    >>> import torch
    >>> t = torch.tensor
    >>> ipo_loss(t([-1.0]), t([-2.0]), t([-1.5]), t([-1.5]), tau=0.5)  # margin 1 = 1/(2 tau): zero loss
    tensor([0.])
    """
    margin = preference_logit(logp_plus, logp_minus, 1.0) - preference_logit(ref_plus, ref_minus, 1.0)
    return (margin - 0.5 / tau) ** 2


def _exp_difference(u: Tensor, v: Tensor) -> Tensor:
    r""":math:`e^u - e^v` without cancellation or NaN: :math:`\pm e^{\max}\,(-\mathrm{expm1}(\min-\max))`,
    exactly 0 where ``u == v`` (also for equal infinities), :math:`\pm\infty` where it overflows."""
    same = u == v
    hi = torch.where(same, torch.zeros_like(u), torch.maximum(u, v))
    gap = torch.where(same, torch.zeros_like(u), torch.minimum(u, v) - hi)
    sign = torch.where(u >= v, torch.ones_like(u), -torch.ones_like(u))
    return sign * torch.exp(hi) * -torch.expm1(gap)


def chi_link_margin(
    logp_plus: Tensor, logp_minus: Tensor, ref_plus: Tensor, ref_minus: Tensor, beta: float
) -> Tensor:
    r"""Implicit-reward margin of chi-PO (Huang et al. 2024, Algorithm 1), before clipping.

    .. math:: \beta\,\phi\Bigl(\frac{\pi(a^+\mid x)}{\pi_0(a^+\mid x)}\Bigr) - \beta\,\phi\Bigl(\frac{\pi(a^-\mid x)}{\pi_0(a^-\mid x)}\Bigr),
              \qquad \phi(z) = z + \ln z,

    computed from the log-ratios :math:`u^\pm = \ln\pi(a^\pm\mid x) - \ln\pi_0(a^\pm\mid x)` as
    :math:`\beta\bigl[(e^{u^+} - e^{u^-}) + (u^+ - u^-)\bigr]`. The two brackets have the same sign,
    so the sum never forms :math:`\infty - \infty`; :math:`e^{u^+} - e^{u^-}` is evaluated by
    ``expm1`` (no cancellation when :math:`u^+\approx u^-`). The result may be :math:`\pm\infty`
    (a zero probability, or a ratio beyond :math:`e^{709}`); :func:`chipo_loss` clips it.

    Examples
    --------
    >>> import torch
    >>> t = torch.tensor
    >>> chi_link_margin(t([-1.0]), t([-2.0]), t([-1.5]), t([-1.5]), beta=1.0)  # (e^.5 - e^-.5) + 1
    tensor([2.0422])
    """
    u = preference_logit(logp_plus, ref_plus, 1.0)
    v = preference_logit(logp_minus, ref_minus, 1.0)
    return beta * (_exp_difference(u, v) + preference_logit(u, v, 1.0))


def chipo_loss(
    logp_plus: Tensor, logp_minus: Tensor, ref_plus: Tensor, ref_minus: Tensor, beta: float, r_max: float
) -> Tensor:
    r"""Per-pair chi-PO loss (Huang et al. 2024, "Correcting the Mythos of KL-Regularization: Direct
    Alignment without Overoptimization via Chi-Squared Preference Optimization", Algorithm 1).

    DPO's link :math:`\beta\ln(\pi/\pi_0)` (eq. 6) replaced by :math:`\beta\phi(\pi/\pi_0)` with
    :math:`\phi(z) = z + \ln z`, and the margin clipped to :math:`[-2R_{\max}, 2R_{\max}]`:

    .. math:: \ell_{\chi\mathrm{PO}} = -\ln\sigma\Bigl(\mathrm{clip}_{2R_{\max}}\Bigl[
              \beta\phi\Bigl(\frac{\pi(a^+\mid x)}{\pi_0(a^+\mid x)}\Bigr)
              - \beta\phi\Bigl(\frac{\pi(a^-\mid x)}{\pi_0(a^-\mid x)}\Bigr)\Bigr]\Bigr),
              \qquad \mathrm{clip}_c(z) = \max\{\min\{c, z\}, -c\},

    with :math:`R_{\max}` the bound of the paper's rewards :math:`r^*\in[0, R_{\max}]` (``r_max``,
    finite and positive). The loss is finite for every input (the clip bounds the logit), and lies
    in :math:`[\ln(1 + e^{-2R_{\max}}), \ln(1 + e^{2R_{\max}})]`. The margin is
    :func:`chi_link_margin`.

    Examples
    --------
    >>> import torch
    >>> t = torch.tensor
    >>> chipo_loss(t([0.0]), t([-800.0]), t([-1.0]), t([-1.0]), beta=1.0, r_max=2.0)  # clipped at 4: ln(1 + e^-4)
    tensor([0.0181])
    """
    c = 2.0 * r_max
    margin = chi_link_margin(logp_plus, logp_minus, ref_plus, ref_minus, beta)
    return -F.logsigmoid(torch.clamp(margin, -c, c))
