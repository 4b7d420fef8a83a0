r"""Brute-force references: every estimator's empirical objective, sample by sample, in numpy.

Each function takes a :class:`~finitepref.ToyProblem`, an explicit list of samples
``[(x, a_plus, a_minus), ...]`` (e.g. ``data.samples(t)``) and the estimator's arguments, and
returns the mean objective of every candidate (policies, or rewards for eq. 9), straight from the
paper's equation with none of the estimators' machinery (no loss tables, no sufficient statistics,
no matrix product, no chunking, no :mod:`finitepref.losses`). The registry
(:mod:`finitepref.registry`) points each estimator at its reference; the tests check that every
estimator's choice attains the reference's minimum. Cost is O(n |Pi|), for small tests only.

Regularizers follow the estimators' documented form: beta times the mean over the samples' prompts
of :math:`\mathrm{KL}(\pi(x)\|\pi_0(x))`; eq. (16) is the mean over the samples' prompts of
:math:`-\mathbb E_\pi[\hat R] - \gamma H(\pi) + \beta\,\mathrm{KL}(\pi\|\pi_0)`; eq. (1) the same
with :math:`\gamma = 0`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.special import expit

__all__ = ["pmle", "fit_reward", "distill", "reverse_kl", "dpo", "rlhf", "rebel", "ipo", "chipo"]

Samples = Sequence[tuple[int, int, int]]


def _nls(z):
    r""":math:`-\ln\sigma(z) = \ln(1 + e^{-z})`."""
    return np.logaddexp(0.0, -z)


def _arrays(prob):
    lp = prob.log_policies.cpu().numpy()
    lref = None if prob.log_reference is None else prob.log_reference.cpu().numpy()
    rewards = None if prob.rewards is None else prob.rewards.cpu().numpy()
    return lp, lref, rewards


def _times(weight, loss):
    """weight * loss with 0 * inf = 0."""
    return np.where(weight == 0, 0.0, weight * loss)


def _kl_to_ref(lp: np.ndarray, lref: np.ndarray | None, beta: float) -> np.ndarray:
    """beta * KL(pi_k(x) || pi0(x)) for every policy and prompt, (K, X)."""
    if beta == 0:
        return np.zeros(lp.shape[:2])
    return beta * np.sum(np.exp(lp) * (lp - lref[None]), -1)


def _mean(samples: Samples, term) -> np.ndarray:
    total = 0.0
    with np.errstate(over="ignore"):  # an objective beyond the float64 range is +inf, as it should be
        for x, win, lose in samples:
            total = total + term(int(x), int(win), int(lose))
    return total / len(samples)


def pmle(prob, samples: Samples, beta: float = 0.0) -> np.ndarray:
    """Eq. (4)/(5): mean of -ln sigma(gamma ln pi(a+)/pi(a-)) + beta KL(pi(x)||pi0(x))."""
    lp, lref, _ = _arrays(prob)
    kl = _kl_to_ref(lp, lref, beta)
    return _mean(samples, lambda x, w, lo: _nls(prob.gamma * (lp[:, x, w] - lp[:, x, lo])) + kl[:, x])


def fit_reward(prob, samples: Samples) -> np.ndarray:
    """Eq. (9): mean of -ln sigma(R(x, a+) - R(x, a-)) for every reward of the class."""
    _, _, rewards = _arrays(prob)
    return _mean(samples, lambda x, w, lo: _nls(rewards[:, x, w] - rewards[:, x, lo]))


def distill(prob, samples: Samples, reward_index: int, beta: float = 0.0) -> np.ndarray:
    """Eqs. (11)/(12): cross-entropy to sigma(R^(a+) - R^(a-)) + beta KL(pi(x)||pi0(x))."""
    with np.errstate(over="ignore"):
        return _distill(prob, samples, reward_index, beta)


def _distill(prob, samples: Samples, reward_index: int, beta: float) -> np.ndarray:
    lp, lref, rewards = _arrays(prob)
    kl = _kl_to_ref(lp, lref, beta)
    r = rewards[int(reward_index)]

    def term(x, w, lo):
        dr = r[x, w] - r[x, lo]
        z = prob.gamma * (lp[:, x, w] - lp[:, x, lo])
        return _times(expit(dr), _nls(z)) + _times(expit(-dr), _nls(-z)) + kl[:, x]
    return _mean(samples, term)


def reverse_kl(prob, samples: Samples, reward_index: int, beta: float = 0.0) -> np.ndarray:
    """Eqs. (15)/(16): mean over the samples' prompts of -E_pi[R^] - gamma H(pi) + beta KL(pi||pi0)."""
    return _shaped(prob, samples, reward_index, beta, prob.gamma)


def rlhf(prob, samples: Samples, reward_index: int, beta: float) -> np.ndarray:
    """Eq. (1): mean over the samples' prompts of -E_pi[R^] + beta KL(pi||pi0)."""
    return _shaped(prob, samples, reward_index, beta, 0.0)


def _shaped(prob, samples: Samples, reward_index: int, beta: float, gamma: float) -> np.ndarray:
    lp, lref, rewards = _arrays(prob)
    kl = _kl_to_ref(lp, lref, beta)
    ent = -np.sum(np.exp(lp) * lp, -1)
    r = rewards[int(reward_index)]
    return _mean(samples, lambda x, w, lo: -np.exp(lp[:, x]) @ r[x] - gamma * ent[:, x] + kl[:, x])


def dpo(prob, samples: Samples, beta: float) -> np.ndarray:
    """Eq. (6): mean of -ln sigma(beta (ln pi(a+)/pi(a-) - ln pi0(a+)/pi0(a-)))."""
    lp, lref, _ = _arrays(prob)

    def term(x, w, lo):
        return _nls(beta * ((lp[:, x, w] - lp[:, x, lo]) - (lref[x, w] - lref[x, lo])))
    return _mean(samples, term)


def rebel(prob, samples: Samples, reward_index: int, eta: float) -> np.ndarray:
    """Eq. (10): mean of (ln [pi/pi0](a+) / [pi/pi0](a-) - eta (R^(a+) - R^(a-)))^2."""
    lp, lref, rewards = _arrays(prob)
    r = rewards[int(reward_index)]

    def term(x, w, lo):
        margin = (lp[:, x, w] - lp[:, x, lo]) - (lref[x, w] - lref[x, lo])
        return (margin - eta * (r[x, w] - r[x, lo])) ** 2
    return _mean(samples, term)


def ipo(prob, samples: Samples, tau: float) -> np.ndarray:
    """IPO (Azar et al. 2023, eq. 17): mean of (ln pi(a+)/pi0(a+) - ln pi(a-)/pi0(a-) - 1/(2 tau))^2."""
    lp, lref, _ = _arrays(prob)

    def term(x, w, lo):
        return ((lp[:, x, w] - lref[x, w]) - (lp[:, x, lo] - lref[x, lo]) - 0.5 / tau) ** 2
    return _mean(samples, term)


def chipo(prob, samples: Samples, beta: float, r_max: float | None = None) -> np.ndarray:
    """chi-PO (Huang et al. 2024, Alg. 1): mean of -ln sigma(clip_{2 r_max}(beta (phi(z+) - phi(z-)))),
    z = pi/pi0, phi(z) = z + ln z; ``r_max=None`` is 2 gamma R as in the estimator."""
    lp, lref, _ = _arrays(prob)
    cap = 2.0 * (2.0 * prob.gamma * prob.boundedness() if r_max is None else r_max)

    def term(x, w, lo):
        u, v = lp[:, x, w] - lref[x, w], lp[:, x, lo] - lref[x, lo]
        with np.errstate(over="ignore", invalid="ignore"):
            margin = beta * ((np.exp(u) - np.exp(v)) + (u - v))
        margin = np.where(u == v, 0.0, margin)
        return _nls(np.clip(margin, -cap, cap))
    return _mean(samples, term)
