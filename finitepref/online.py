r"""Online (on-policy) preference estimators, exact in the toy, batched over trials.

Round 1 draws :math:`n_1` pairs from the offline law of Section 2 (both responses from
:math:`\mu(x)`). Every later round :math:`t` draws :math:`n_t` pairs with :math:`\mu` replaced by the
trial's current estimate :math:`\pi_t = \hat\pi_{t-1}`: :math:`x\sim\mathcal D`,
:math:`a, b\sim\pi_t(x)` i.i.d., labelled by the true preference law of eq. (2),

.. math:: \mathbb P_t(x, w, l) = 2\,\mathcal D(x)\,\pi_t(w\mid x)\,\pi_t(l\mid x)\,\mathbb P_*(w\succ l\mid x),

(the law of :func:`finitepref.preference.pair_law` with :math:`\mu = \pi_t`); the estimator is then
refit on all pairs so far. The objectives are linear in the counts, so the counts of the rounds add
up to the sufficient statistics of the pooled data set and each refit is one exact argmin for all
trials (:mod:`finitepref.estimators`). Each trial has its own :math:`\pi_t`, hence its own law in
round :math:`t`; its counts are one multinomial draw from that law, so the cost is free of ``n``.

Published variants. Iterative / online DPO with the reference held at :math:`\pi_0` while the
pairs are sampled from the current policy: Guo et al. (2024, "Direct Language Model Alignment from
Online AI Feedback", OAIF) and the KL-constrained iterative DPO of Xiong et al. (2024, "Iterative
Preference Learning from Human Feedback: Bridging Theory and Practice for RLHF under
KL-Constraint"), whose target is the KL-regularised optimum against the fixed :math:`\pi_0`; this
is the default here. Variants that move the reference to the previous iterate (as in Yuan et al.
2024, "Self-Rewarding Language Models", and Pang et al. 2024, "Iterative Reasoning Preference
Optimization", which initialise each iteration from, and regularise towards, the model of the
previous iteration) are ``update_reference=True``. (These attributions are from the papers' method
sections as we read them; they are not checked by code.)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from . import registry
from ._validate import check_count
from .estimators import fit_reward
from .preference import PreferenceData, pair_law
from .problem import ToyProblem

__all__ = ["OnlineResult", "online", "policy_pair_law", "round_sizes"]


@dataclass(frozen=True)
class OnlineResult:
    """What :func:`online` did, trial by trial.

    Attributes
    ----------
    index : ndarray of int64, shape (trials,)
        The final estimate (after the last round).
    path : ndarray of int64, shape (rounds, trials)
        The estimate after each round; ``path[t - 1]`` is the policy that samples round ``t + 1``.
    round_counts : ndarray of int64, shape (rounds, trials, X, A, A)
        The counts drawn in each round.
    """

    index: np.ndarray
    path: np.ndarray
    round_counts: np.ndarray

    @property
    def data(self) -> PreferenceData:
        """All rounds pooled: the data the last refit saw."""
        return PreferenceData(self.round_counts.sum(axis=0))


def round_sizes(n: int, rounds: int) -> np.ndarray:
    """Samples per round: ``n // rounds`` each, the remainder one each to the first rounds."""
    n = check_count("n", n)
    rounds = check_count("rounds", rounds)
    if n < rounds:
        raise ValueError(f"n: need at least one sample per round ({rounds} rounds), got n={n}")
    sizes = np.full(rounds, n // rounds, dtype=np.int64)
    sizes[: n % rounds] += 1
    return sizes


def policy_pair_law(prob: ToyProblem, index) -> np.ndarray:
    r"""Exact law of :math:`(x, a^+, a^-)` when both responses are drawn from :math:`\pi_k` instead of :math:`\mu`.

    Returns ``(len(index), X, A, A)`` for the policy indices ``index``: :func:`finitepref.preference.pair_law`
    with :math:`\mu = \pi_k` (probabilities from the stored log-probabilities, so a tiny
    :math:`\pi_k(a\mid x)` gives an exactly tiny, possibly zero, cell).
    """
    idx = np.atleast_1d(np.asarray(index))
    if not np.issubdtype(idx.dtype, np.integer) or idx.min() < 0 or idx.max() >= prob.n_policies:
        raise ValueError(f"index: expected policy indices in [0, {prob.n_policies})")
    laws = [pair_law(prob.prompt_probs, torch.exp(prob.log_policies[int(k)]), prob.log_pi_star, prob.gamma)
            for k in idx]
    return torch.stack(laws).cpu().numpy()


def _with_reference(prob: ToyProblem, log_ref: torch.Tensor) -> ToyProblem:
    """A shallow copy of ``prob`` whose reference is ``log_ref`` (cached R, C, KL tables are kept: none uses pi0)."""
    out = object.__new__(ToyProblem)
    out.__dict__.update(prob.__dict__)
    out.log_reference = log_ref
    return out


def _fit(entry: registry.Estimator, prob: ToyProblem, counts: np.ndarray, params: dict) -> np.ndarray:
    data = PreferenceData(counts)
    reward_index = fit_reward(prob, data) if entry.needs_reward else None
    return entry.fit(prob, data, reward_index, **params)


def _refit(entry, prob: ToyProblem, counts: np.ndarray, current: np.ndarray | None, update_reference: bool,
           params: dict) -> np.ndarray:
    """Refit on the pooled counts; with ``update_reference`` each trial's reference is its current estimate."""
    if not update_reference or current is None:
        return _fit(entry, prob, counts, params)
    out = np.empty(counts.shape[0], dtype=np.int64)
    for k in np.unique(current):
        rows = current == k
        out[rows] = _fit(entry, _with_reference(prob, prob.log_policies[int(k)]), counts[rows], params)
    return out


def _on_policy_counts(prob: ToyProblem, current: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """One multinomial draw per trial from the pair law of that trial's current policy, ``(trials, X, A, A)``."""
    unique, inverse = np.unique(current, return_inverse=True)
    laws = policy_pair_law(prob, unique).reshape(len(unique), -1)
    laws = np.clip(laws, 0.0, None)
    laws = laws / laws.sum(axis=1, keepdims=True)
    counts = rng.multinomial(size, laws[inverse.reshape(-1)])
    return counts.reshape(len(current), prob.n_prompts, prob.n_responses, prob.n_responses).astype(np.int64)


def online(prob: ToyProblem, estimator: str | registry.Estimator, n: int, rounds: int, trials: int = 1,
           seed: int | np.random.SeedSequence | None = None, *, update_reference: bool = False,
           return_details: bool = False, **params) -> np.ndarray | OnlineResult:
    r"""Online (on-policy) version of a registered estimator: ``rounds`` refits on all data so far.

    Parameters
    ----------
    prob : ToyProblem
    estimator : str or Estimator
        A name of :data:`finitepref.registry.ESTIMATORS` (``"pmle"``, ``"dpo"``, ``"ipo"``,
        ``"chipo"``, ...). Reward-based estimators (``needs_reward``) refit the Bradley-Terry reward
        (eq. 9) on all data so far before each refit.
    n : int
        Total pairs per trial; round ``t`` gets ``round_sizes(n, rounds)[t - 1]``.
    rounds : int
        Number of rounds :math:`T`; ``rounds=1`` is the offline estimator on :math:`\mu`'s data.
    trials : int
        Independent repetitions, each with its own sequence :math:`\pi_1, \pi_2, \dots`.
    seed : int, SeedSequence or None
        Round :math:`t` draws from the generator of ``SeedSequence(seed).spawn(rounds)[t - 1]``, so
        the same ``seed`` gives the same result, and round 1 is the same for every ``rounds``.
    update_reference : bool
        Use each trial's current estimate as :math:`\pi_0` in rounds :math:`t > 1` (see the module
        docstring for which published methods do which). Default: the reference stays ``prob.reference``.
    return_details : bool
        Return an :class:`OnlineResult` (final index, per-round path, per-round counts) instead of
        the final indices.
    **params
        The estimator's hyperparameters (``beta``, ``tau``, ...), as for ``registry.fit``.

    Returns
    -------
    ndarray of int64, shape (trials,), or OnlineResult
    """
    entry = registry.get(estimator) if isinstance(estimator, str) else estimator
    if not isinstance(entry, registry.Estimator):
        raise ValueError(f"estimator: expected a registry name or Estimator, got {type(estimator).__name__}")
    sizes = round_sizes(n, rounds)
    trials = check_count("trials", trials)
    if isinstance(seed, bool) or not (seed is None or isinstance(seed, (int, np.integer, np.random.SeedSequence))):
        raise ValueError(f"seed: expected an int, a SeedSequence or None, got {seed!r}")
    root = seed if isinstance(seed, np.random.SeedSequence) else np.random.SeedSequence(seed)
    rngs = [np.random.default_rng(child) for child in root.spawn(len(sizes))]
    round_counts = np.empty((len(sizes), trials, prob.n_prompts, prob.n_responses, prob.n_responses), np.int64)
    path = np.empty((len(sizes), trials), dtype=np.int64)
    current = None
    for t, (size, rng) in enumerate(zip(sizes, rngs, strict=True)):
        if current is None:
            round_counts[t] = prob.sample(int(size), trials, seed=rng).counts
        else:
            round_counts[t] = _on_policy_counts(prob, current, int(size), rng)
        current = _refit(entry, prob, round_counts[: t + 1].sum(axis=0), current, update_reference, params)
        path[t] = current
    result = OnlineResult(index=path[-1].copy(), path=path, round_counts=round_counts)
    return result if return_details else result.index
