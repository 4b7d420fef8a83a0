r"""Every estimator of the paper as an exact argmin over a finite class, batched over trials.

Each objective is linear in the data's sufficient statistics: for a policy :math:`\pi_k`,

.. math:: n\,\mathcal L(\pi_k) = \sum_{x,w,l} c_{xwl}\,\ell_k(x,w,l) + \sum_x m_x\,g_k(x),

with :math:`c` the counts of :math:`(x, a^+, a^-)`, :math:`m_x` the prompt counts, :math:`\ell`
a per-pair loss of :mod:`finitepref.losses` and :math:`g` a per-prompt term (a KL regularizer
or, for eqs. 1/16, the whole objective), evaluated exactly over responses. So an estimator is:
build the table ``[ell | g]`` of shape ``(K, X*A*A + X)`` once from :mod:`finitepref.losses`,
multiply by all trials' statistics ``(trials, X*A*A + X)`` in one matrix product, take the argmin
over ``K``. Chunked over ``K`` (memory stays bounded for :math:`|\Pi| = 10^6`); the cost per trial
is free of ``n``. Ties go to the lowest policy index (objective values equal to 1e-12 relative, the
rounding of the matrix product, count as ties).

Estimators that take a fitted reward per trial (eqs. 10, 11, 16, 1) stay one matrix product for
all trials, whatever the rewards: eq. (11) is affine in its synthetic label, eq. (10) quadratic
in the reward gap and eqs. (1)/(16) affine in the reward, so the reward moves into the
statistics while the policy tables (built once from :mod:`finitepref.losses`) are shared.

The same table builders give differentiable objectives of one policy's log-probabilities
(:func:`pmle_objective`, :func:`distill_objective`), which the language-model trainer's bridge
test compares with its sampled losses.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from . import losses
from ._validate import check_positive
from .preference import PreferenceData
from .problem import ToyProblem

Tensor = torch.Tensor

__all__ = [
    "pmle", "fit_reward", "distill", "reverse_kl", "dpo", "rlhf", "rebel",
    "pmle_objective", "distill_objective", "objective_values",
]

_TARGET_BYTES = 256 * 2**20
_TIE_RTOL = 1e-12


# ---------------------------------------------------------------------- table builders
def _pairs(v: Tensor) -> tuple[Tensor, Tensor]:
    """Broadcast a per-response tensor (..., X, A) to winners/losers (..., X, A, A)."""
    return v[..., :, :, None], v[..., :, None, :]


def _flat_pairs(table: Tensor) -> Tensor:
    return table.reshape(*table.shape[:-3], -1)


def _expect(log_pi: Tensor, values: Tensor) -> Tensor:
    r""":math:`\sum_a \pi(a\mid x)\,v(a)` over the last axis, with :math:`0\cdot v = 0`."""
    p = torch.exp(log_pi)
    return torch.where(p > 0, p * values, torch.zeros_like(values)).sum(-1)


def _kl_term(log_pi: Tensor, log_ref: Tensor | None, beta: float) -> Tensor:
    r"""Per-prompt regularizer :math:`\beta\,\mathrm{KL}(\pi(x)\|\pi_0(x)) = -\mathbb E_\pi[\tilde r]` with
    :math:`\tilde r` the shaped reward of eq. (1) at :math:`R = 0`, shape (..., X)."""
    if beta == 0:
        return torch.zeros(log_pi.shape[:-1], dtype=log_pi.dtype, device=log_pi.device)
    zero = torch.zeros_like(log_pi)
    return -_expect(log_pi, losses.shaped_reward(zero, log_pi, log_ref, beta, 0.0))


def _pmle_table(log_pi: Tensor, gamma: float, beta: float, log_ref: Tensor | None) -> Tensor:
    w, l = _pairs(log_pi)
    pair = _flat_pairs(losses.pmle_loss(w, l, gamma))
    return torch.cat([pair, _kl_term(log_pi, log_ref, beta)], -1)


def _distill_table(log_pi: Tensor, reward: Tensor, gamma: float, beta: float, log_ref: Tensor | None) -> Tensor:
    w, l = _pairs(log_pi)
    rw, rl = _pairs(reward)
    pair = _flat_pairs(losses.distill_loss(w, l, rw, rl, gamma))
    return torch.cat([pair, _kl_term(log_pi, log_ref, beta)], -1)


def _distill_label_tables(log_pi: Tensor, gamma: float, beta: float, log_ref: Tensor | None) -> Tensor:
    r"""Eq. (11) is affine in the synthetic label :math:`\tilde p`:
    :math:`\ell(\tilde p) = (1-\tilde p)\,\ell(0) + \tilde p\,\ell(1)`. Returns ``[l(0) | l(1) | beta KL]``,
    with :math:`\ell(0), \ell(1)` read off :func:`losses.distill_loss` at reward gaps of :math:`\mp\infty`."""
    w, l = _pairs(log_pi)
    zero = torch.zeros_like(w)
    inf = torch.full_like(l, float("inf"))
    loss0 = _flat_pairs(losses.distill_loss(w, l, zero, inf, gamma))
    loss1 = _flat_pairs(losses.distill_loss(w, l, inf, zero, gamma))
    return torch.cat([loss0, loss1, _kl_term(log_pi, log_ref, beta)], -1)


def _dpo_table(log_pi: Tensor, log_ref: Tensor, beta: float) -> Tensor:
    w, l = _pairs(log_pi)
    rw, rl = _pairs(log_ref)
    return _flat_pairs(losses.dpo_loss(w, l, rw, rl, beta))


def _rebel_node_tables(log_pi: Tensor, log_ref: Tensor, eta: float) -> Tensor:
    r"""Eq. (10) is quadratic in the reward gap :math:`s = \hat R(x,a^+) - \hat R(x,a^-)`, so it is fixed by its
    values at :math:`s\in\{0, 1, -1\}` (Lagrange interpolation, exact):
    :math:`\ell(s) = (1-s^2)\ell(0) + \tfrac{s+s^2}{2}\ell(1) + \tfrac{s^2-s}{2}\ell(-1)`. Returns the three node tables."""
    w, l = _pairs(log_pi)
    fw, fl = _pairs(log_ref)
    zero = torch.zeros_like(w + l)
    nodes = [losses.rebel_loss(w, l, fw, fl, zero + gap, zero, eta) for gap in (0.0, 1.0, -1.0)]
    return torch.cat([_flat_pairs(t) for t in nodes], -1)


def _bt_table(reward: Tensor) -> Tensor:
    rw, rl = _pairs(reward)
    return _flat_pairs(losses.bradley_terry_loss(rw, rl))


def _shaped_table(log_pi: Tensor, reward: Tensor, log_ref: Tensor | None, beta: float, gamma: float) -> Tensor:
    r"""Per-prompt :math:`-\mathbb E_{a\sim\pi(x)}[\tilde r(x,a)]`, the objective of eq. (16) (eq. 1 at gamma = 0)."""
    return -_expect(log_pi, losses.shaped_reward(reward, log_pi, log_ref, beta, gamma))


def _shaped_reward_tables(log_pi: Tensor, log_ref: Tensor | None, beta: float, gamma: float) -> Tensor:
    r"""Eq. (16) is affine in :math:`\hat R`: :math:`-\mathbb E_\pi[\tilde r] = -\sum_a\pi(a\mid x)\hat R(x,a)
    - \mathbb E_\pi[\tilde r|_{\hat R=0}]`. Returns ``[pi (X*A) | reward-free part (X)]``."""
    reward_free = _shaped_table(log_pi, torch.zeros_like(log_pi), log_ref, beta, gamma)
    return torch.cat([torch.exp(log_pi).reshape(*log_pi.shape[:-2], -1), reward_free], -1)


# ---------------------------------------------------------------------- statistics and argmin
def _pair_stats(data: PreferenceData, device: torch.device) -> Tensor:
    return torch.as_tensor(data.flat, dtype=torch.float64, device=device)


def _pair_and_prompt_stats(data: PreferenceData, device: torch.device) -> Tensor:
    stats = np.concatenate([data.flat, data.prompt_counts], axis=1)
    return torch.as_tensor(stats, dtype=torch.float64, device=device)


def _prompt_stats(data: PreferenceData, device: torch.device) -> Tensor:
    return torch.as_tensor(data.prompt_counts, dtype=torch.float64, device=device)


def _shaped_stats(prob: ToyProblem, data: PreferenceData, reward_index) -> Tensor:
    """Statistics matching :func:`_shaped_reward_tables`: ``[-m_x R_t(x, a) | m_x]``."""
    m = _prompt_stats(data, prob.device)
    reward = _trial_rewards(prob, reward_index, data.trials)
    return torch.cat([(-m[:, :, None] * reward).reshape(data.trials, -1), m], 1)


def _chunk_size(n_columns: int, n_trials: int, chunk_size: int | None) -> int:
    if chunk_size is not None:
        if chunk_size < 1:
            raise ValueError(f"chunk_size: must be >= 1, got {chunk_size}")
        return int(chunk_size)
    return max(1024, _TARGET_BYTES // (8 * max(n_columns, n_trials, 1)))


def _argmin(build: Callable[[slice], Tensor], n_rows: int, stats: Tensor, chunk_size: int | None) -> np.ndarray:
    """Row index minimising ``build(rows) @ stats.T`` for every trial; the lowest index wins ties.

    A matrix product may round two identical rows differently (their position changes the summation
    order), so values within ``_TIE_RTOL`` (relative) of the minimum count as ties.
    """
    chunk = _chunk_size(stats.shape[1], stats.shape[0], chunk_size)
    best_val = torch.full((stats.shape[0],), float("inf"), dtype=torch.float64, device=stats.device)
    best_idx = torch.zeros(stats.shape[0], dtype=torch.int64, device=stats.device)
    for start in range(0, n_rows, chunk):
        # (trials, rows): the reductions below then run along contiguous memory
        values = stats @ build(slice(start, min(start + chunk, n_rows))).T
        val = values.min(dim=1).values
        first = (values <= (val + _TIE_RTOL * val.abs())[:, None]).to(torch.uint8).argmax(dim=1)
        margin = torch.where(torch.isinf(best_val), torch.zeros_like(best_val), _TIE_RTOL * best_val.abs())
        better = val < best_val - margin
        best_val = torch.where(better, val, best_val)
        best_idx = torch.where(better, first + start, best_idx)
    return best_idx.cpu().numpy()


def objective_values(table: Tensor, stats: Tensor) -> Tensor:
    """Objective ``n * L`` of every table row for every trial, ``(K, trials)`` (for inspection and tests)."""
    return table @ stats.T


# ---------------------------------------------------------------------- argument checks
def _check_data(prob: ToyProblem, data: PreferenceData) -> None:
    if not isinstance(data, PreferenceData):
        raise ValueError(f"data: expected a PreferenceData, got {type(data).__name__}")
    if (data.n_prompts, data.n_responses) != (prob.n_prompts, prob.n_responses):
        raise ValueError(f"data: counts are for X={data.n_prompts}, A={data.n_responses} but the problem has "
                         f"X={prob.n_prompts}, A={prob.n_responses}")


def _trial_rewards(prob: ToyProblem, reward_index, trials: int) -> Tensor:
    """The reward table of each trial, ``(trials, X, A)``, from one index or one per trial."""
    rewards = prob._need_rewards()
    idx = np.asarray(reward_index)
    if not np.issubdtype(idx.dtype, np.integer):
        raise ValueError(f"reward_index: expected integer indices, got dtype {idx.dtype}")
    if idx.ndim == 0:
        idx = np.full(trials, int(idx))
    if idx.shape != (trials,):
        raise ValueError(f"reward_index: expected one index or one per trial ({trials}), got shape {idx.shape}")
    if idx.min() < 0 or idx.max() >= rewards.shape[0]:
        raise ValueError(f"reward_index: index outside the reward class [0, {rewards.shape[0]})")
    return rewards[torch.as_tensor(idx, device=rewards.device)]


def _reward_gaps(reward: Tensor) -> Tensor:
    """Reward gap ``R(x, w) - R(x, l)`` per trial, ``(trials, X*A*A)``."""
    rw, rl = _pairs(reward)
    return _flat_pairs(losses.preference_logit(rw, rl, 1.0))


# ---------------------------------------------------------------------- the estimators
def pmle(prob: ToyProblem, data: PreferenceData, beta: float = 0.0, *, chunk_size: int | None = None) -> np.ndarray:
    r"""Preference MLE, eq. (4), with the KL regularizer of eq. (5) when ``beta > 0``.

    .. math:: \hat\pi = \arg\min_{\pi\in\Pi} \frac1n\sum_{(x,a^+,a^-)\in D_n}
              -\ln\sigma\Bigl(\gamma\ln\frac{\pi(a^+\mid x)}{\pi(a^-\mid x)}\Bigr)
              + \beta\,\frac1n\sum_{(x,\cdot,\cdot)\in D_n}\mathrm{KL}(\pi(x)\|\pi_0(x)).

    Returns the chosen policy index per trial, ``(trials,)`` int64 (Theorem 4's estimator at
    ``beta = 0``). Needs ``prob.reference`` when ``beta > 0``.
    """
    _check_data(prob, data)
    beta = check_positive("beta", beta, allow_zero=True)
    log_ref = prob._need_reference() if beta > 0 else None
    stats = _pair_and_prompt_stats(data, prob.device)
    return _argmin(lambda s: _pmle_table(prob.log_policies[s], prob.gamma, beta, log_ref),
                   prob.n_policies, stats, chunk_size)


def fit_reward(prob: ToyProblem, data: PreferenceData, *, chunk_size: int | None = None) -> np.ndarray:
    r"""Bradley-Terry reward model, eq. (9): :math:`\hat R = \arg\min_{R\in\mathcal R}\frac1n\sum -\ln\sigma(R(x,a^+) - R(x,a^-))`.

    Returns reward-class indices ``(trials,)``.
    """
    _check_data(prob, data)
    rewards = prob._need_rewards()
    stats = _pair_stats(data, prob.device)
    return _argmin(lambda s: _bt_table(rewards[s]), rewards.shape[0], stats, chunk_size)


def distill(prob: ToyProblem, data: PreferenceData, reward_index, beta: float = 0.0, *,
            chunk_size: int | None = None) -> np.ndarray:
    r"""Preference distillation, eq. (11), with the KL regularizer of eq. (12) when ``beta > 0``.

    .. math:: \hat\pi = \arg\min_{\pi\in\Pi}\frac1n\sum_{D_n} -\tilde p\ln\mathbb P_\pi(a^+\succ a^-\mid x)
              - (1-\tilde p)\ln\mathbb P_\pi(a^-\succ a^+\mid x) + \beta\,\mathrm{KL}(\pi(x)\|\pi_0(x)),
              \quad \tilde p = \sigma(\hat R(x,a^+) - \hat R(x,a^-)).

    ``reward_index`` picks :math:`\hat R` in the reward class: one index, or one per trial (e.g. the
    output of :func:`fit_reward`). Theorem 6's estimator at ``beta = 0``.
    """
    _check_data(prob, data)
    beta = check_positive("beta", beta, allow_zero=True)
    log_ref = prob._need_reference() if beta > 0 else None
    gap = _reward_gaps(_trial_rewards(prob, reward_index, data.trials))
    counts = _pair_stats(data, prob.device)
    stats = torch.cat([counts * torch.sigmoid(-gap), counts * torch.sigmoid(gap), _prompt_stats(data, prob.device)], 1)
    return _argmin(lambda s: _distill_label_tables(prob.log_policies[s], prob.gamma, beta, log_ref),
                   prob.n_policies, stats, chunk_size)


def reverse_kl(prob: ToyProblem, data: PreferenceData, reward_index, beta: float = 0.0, *,
               chunk_size: int | None = None) -> np.ndarray:
    r"""Reverse-KL estimator, eq. (16) (eq. 15 at ``beta = 0``).

    .. math:: \hat\pi = \arg\min_{\pi\in\Pi}\frac1n\sum_{(x,\cdot,\cdot)\in D_n}
              -\mathbb E_{a\sim\pi(x)}[\hat R(x,a)] - \gamma H(\pi(x)) + \beta\,\mathrm{KL}(\pi(x)\|\pi_0(x)),

    computed exactly over responses from the shaped reward of :func:`finitepref.losses.shaped_reward`.
    Only the prompts of the data set enter (Theorem 7's estimator at ``beta = 0``).
    """
    _check_data(prob, data)
    beta = check_positive("beta", beta, allow_zero=True)
    log_ref = prob._need_reference() if beta > 0 else None
    stats = _shaped_stats(prob, data, reward_index)
    return _argmin(lambda s: _shaped_reward_tables(prob.log_policies[s], log_ref, beta, prob.gamma),
                   prob.n_policies, stats, chunk_size)


def dpo(prob: ToyProblem, data: PreferenceData, beta: float, *, chunk_size: int | None = None) -> np.ndarray:
    r"""DPO baseline, eq. (6), with inverse temperature ``beta > 0`` against ``prob.reference``.

    .. math:: \hat\pi = \arg\min_{\pi\in\Pi}\frac1n\sum_{D_n}-\ln\sigma\Bigl(\beta\ln\frac{\pi(a^+\mid x)}{\pi(a^-\mid x)}
              - \beta\ln\frac{\pi_0(a^+\mid x)}{\pi_0(a^-\mid x)}\Bigr).
    """
    _check_data(prob, data)
    beta = check_positive("beta", beta)
    log_ref = prob._need_reference()
    stats = _pair_stats(data, prob.device)
    return _argmin(lambda s: _dpo_table(prob.log_policies[s], log_ref, beta), prob.n_policies, stats, chunk_size)


def rlhf(prob: ToyProblem, data: PreferenceData, reward_index, beta: float, *,
         chunk_size: int | None = None) -> np.ndarray:
    r"""RLHF baseline, eq. (1), over the data set's prompts, computed exactly over responses.

    .. math:: \hat\pi = \arg\min_{\pi\in\Pi}\frac1n\sum_{(x,\cdot,\cdot)\in D_n}
              -\mathbb E_{a\sim\pi(x)}[\hat R(x,a)] + \beta\,\mathrm{KL}(\pi(x)\|\pi_0(x)).

    Needs ``prob.reference`` when ``beta > 0``.
    """
    _check_data(prob, data)
    beta = check_positive("beta", beta, allow_zero=True)
    log_ref = prob._need_reference() if beta > 0 else None
    stats = _shaped_stats(prob, data, reward_index)
    return _argmin(lambda s: _shaped_reward_tables(prob.log_policies[s], log_ref, beta, 0.0),
                   prob.n_policies, stats, chunk_size)


def rebel(prob: ToyProblem, data: PreferenceData, reward_index, eta: float, *,
          chunk_size: int | None = None) -> np.ndarray:
    r"""REBEL baseline, eq. (10): least squares of the reference-relative log-ratio on :math:`\eta\Delta\hat R`.

    .. math:: \hat\pi = \arg\min_{\pi\in\Pi}\frac1n\sum_{D_n}\Bigl(\ln\frac{\pi(a^+\mid x)/\pi_0(a^+\mid x)}
              {\pi(a^-\mid x)/\pi_0(a^-\mid x)} - \eta\bigl(\hat R(x,a^+) - \hat R(x,a^-)\bigr)\Bigr)^2.

    Section 4 notes that :math:`\eta = 1/\gamma` (and :math:`\pi_0` uniform) recovers :math:`\pi^*`.
    """
    _check_data(prob, data)
    eta = check_positive("eta", eta)
    log_ref = prob._need_reference()
    gap = _reward_gaps(_trial_rewards(prob, reward_index, data.trials))
    counts = _pair_stats(data, prob.device)
    sq = gap * gap
    stats = torch.cat([counts * (1 - sq), counts * (gap + sq) / 2, counts * (sq - gap) / 2], 1)
    return _argmin(lambda s: _rebel_node_tables(prob.log_policies[s], log_ref, eta), prob.n_policies, stats,
                   chunk_size)


# ---------------------------------------------------------------------- differentiable objectives
def _objective(table: Tensor, counts: Tensor) -> Tensor:
    counts = torch.as_tensor(counts, dtype=table.dtype, device=table.device)
    stats = torch.cat([counts.reshape(-1), counts.sum((-2, -1))])
    return (table @ stats) / counts.sum()


def pmle_objective(log_probs: Tensor, counts, gamma: float, beta: float = 0.0,
                   ref_log_probs: Tensor | None = None) -> Tensor:
    r""":math:`\mathcal L_{\mathrm{PMLE},\beta}(\pi)` of eq. (5) for one data set, differentiable in ``log_probs``.

    Parameters
    ----------
    log_probs : Tensor (..., X, A)
        :math:`\ln\pi(a\mid x)` over an enumerated response set.
    counts : array (X, A, A)
        ``counts[x, w, l]`` samples with prompt x, preferred w, dispreferred l.
    """
    return _objective(_pmle_table(log_probs, gamma, beta, ref_log_probs), counts)


def distill_objective(log_probs: Tensor, counts, rewards: Tensor, gamma: float, beta: float = 0.0,
                      ref_log_probs: Tensor | None = None) -> Tensor:
    r""":math:`\mathcal L_{\mathrm{Distill},\beta}(\pi)` of eqs. (11)-(12) for one data set, differentiable in ``log_probs``.

    ``rewards`` is :math:`\hat R(x, a)` with shape (X, A).
    """
    rewards = torch.as_tensor(rewards, dtype=log_probs.dtype, device=log_probs.device)
    return _objective(_distill_table(log_probs, rewards, gamma, beta, ref_log_probs), counts)


# ---------------------------------------------------------------------- beyond the paper (issue 14)
__all__ += ["ipo", "chipo", "chipo_default_r_max", "ipo_population_limit", "chipo_population_limit"]


def _ipo_table(log_pi: Tensor, log_ref: Tensor, tau: float) -> Tensor:
    win, lose = _pairs(log_pi)
    ref_win, ref_lose = _pairs(log_ref)
    return _flat_pairs(losses.ipo_loss(win, lose, ref_win, ref_lose, tau))


def _chipo_table(log_pi: Tensor, log_ref: Tensor, beta: float, r_max: float) -> Tensor:
    win, lose = _pairs(log_pi)
    ref_win, ref_lose = _pairs(log_ref)
    return _flat_pairs(losses.chipo_loss(win, lose, ref_win, ref_lose, beta, r_max))


def chipo_default_r_max(prob: ToyProblem) -> float:
    r"""Default :math:`R_{\max}` of :func:`chipo`: :math:`2\gamma R`, with R of Assumption 2.

    Huang et al. (2024) assume rewards :math:`r^*(x,a)\in[0, R_{\max}]`. The Bradley-Terry reward
    of eq. (2) is :math:`\gamma\ln\pi^*` up to a per-prompt shift, and its centered version
    satisfies :math:`|\bar R_*(x,a)|\le\gamma R` (Assumption 2, ``prob.boundedness()``), so
    :math:`\bar R_* + \gamma R\in[0, 2\gamma R]`: :math:`R_{\max} = 2\gamma R` is the paper's
    reward range for this problem (every reward difference is at most :math:`R_{\max}`, well inside
    the clip at :math:`2R_{\max}`).
    """
    return 2.0 * prob.gamma * prob.boundedness()


def ipo(prob: ToyProblem, data: PreferenceData, tau: float, *, chunk_size: int | None = None) -> np.ndarray:
    r"""IPO (Azar et al. 2023, eq. 17) with regularisation ``tau > 0`` against ``prob.reference``.

    .. math:: \hat\pi = \arg\min_{\pi\in\Pi}\frac1n\sum_{D_n}\Bigl(\ln\frac{\pi(a^+\mid x)\,\pi_0(a^-\mid x)}
              {\pi(a^-\mid x)\,\pi_0(a^+\mid x)} - \frac{1}{2\tau}\Bigr)^2.

    Population limit (exact, tabular): with :math:`g = \ln(\pi/\pi_0)` and
    :math:`d = g(a) - g(b)`, the expected loss per prompt is
    :math:`\mathbb E_{a,b\sim\mu}[d^2] - \tfrac1\tau\mathbb E[d\,(2\mathbb P_*(a\succ b) - 1)] + \tfrac1{4\tau^2}`;
    its stationarity condition is :math:`g(a) - \mathbb E_\mu g = \tfrac1\tau(p^*(a\succ\mu) - \tfrac12)`, so

    .. math:: \pi_{\mathrm{IPO}}(a\mid x)\propto\pi_0(a\mid x)\exp\bigl(p^*(a\succ\mu\mid x)/\tau\bigr),\qquad
              p^*(a\succ\mu\mid x) = \mathbb E_{b\sim\mu(x)}\sigma\bigl(\gamma\ln\tfrac{\pi^*(a\mid x)}{\pi^*(b\mid x)}\bigr),

    the maximiser of :math:`\mathbb E_\pi[p^*(a\succ\mu)] - \tau\mathrm{KL}(\pi\|\pi_0)` (the
    :math:`\Psi`-PO optimum of Azar et al. with :math:`\Psi` the identity), unique where :math:`\mu(x)`
    has full support (:func:`ipo_population_limit`; off the support of :math:`\mu` the loss does not
    constrain :math:`\pi`).
    The tilt :math:`p^*/\tau` is bounded in :math:`[0, 1/\tau]` and depends on :math:`\mu`, so the
    limit is not :math:`\pi^*` (except by coincidence); on a finite class the estimator converges to
    the class member minimising the population loss.
    """
    _check_data(prob, data)
    tau = check_positive("tau", tau)
    log_ref = prob._need_reference()
    stats = _pair_stats(data, prob.device)
    return _argmin(lambda s: _ipo_table(prob.log_policies[s], log_ref, tau), prob.n_policies, stats, chunk_size)


def chipo(prob: ToyProblem, data: PreferenceData, beta: float, r_max: float | None = None, *,
          chunk_size: int | None = None) -> np.ndarray:
    r"""chi-PO (Huang et al. 2024, Algorithm 1) with coefficient ``beta > 0`` against ``prob.reference``.

    .. math:: \hat\pi = \arg\min_{\pi\in\Pi}\frac1n\sum_{D_n}-\ln\sigma\Bigl(\mathrm{clip}_{2R_{\max}}
              \Bigl[\beta\phi\Bigl(\frac{\pi(a^+\mid x)}{\pi_0(a^+\mid x)}\Bigr)
              - \beta\phi\Bigl(\frac{\pi(a^-\mid x)}{\pi_0(a^-\mid x)}\Bigr)\Bigr]\Bigr),\quad \phi(z) = z + \ln z.

    ``r_max`` is :math:`R_{\max}` (finite, > 0); ``None`` takes :func:`chipo_default_r_max`,
    :math:`2\gamma R`.

    Population limit: the Bradley-Terry cross-entropy is strictly proper in its logit, so when every
    true reward difference :math:`\gamma\ln(\pi^*(a)/\pi^*(b))` lies inside the clip (true for the
    default) the population loss over all policies is minimised exactly when
    :math:`\beta\phi(\pi(a\mid x)/\pi_0(a\mid x)) = \gamma\ln\pi^*(a\mid x) + c(x)` on the support of
    :math:`\mu(x)`. With the Wright omega function :math:`\omega` (:math:`\omega + \ln\omega = s`),

    .. math:: \pi_{\chi\mathrm{PO}}(a\mid x) = \pi_0(a\mid x)\,\omega\bigl((\gamma\ln\pi^*(a\mid x) + c(x))/\beta\bigr),

    with :math:`c(x)` the unique normaliser (:func:`chipo_population_limit`), unique where :math:`\mu(x)`
    has full support: the maximiser of :math:`\mathbb E_\pi[r^*] - \beta D_f(\pi\|\pi_0)` with
    :math:`f(z) = z\ln z + (z-1)^2/2` (KL plus half the :math:`\chi^2`-divergence, the mixed
    regulariser of Huang et al.; :math:`f' = \phi`). It is not :math:`\pi^*`: where
    :math:`\pi/\pi_0` is large it is affine in :math:`\gamma\ln\pi^*/\beta`; where it is small it
    approaches DPO's :math:`\pi_0\,\pi^{*\gamma/\beta}`.
    """
    _check_data(prob, data)
    beta = check_positive("beta", beta)
    r_max = chipo_default_r_max(prob) if r_max is None else check_positive("r_max", r_max)
    log_ref = prob._need_reference()
    stats = _pair_stats(data, prob.device)
    return _argmin(lambda s: _chipo_table(prob.log_policies[s], log_ref, beta, r_max), prob.n_policies, stats,
                   chunk_size)


def ipo_population_limit(prob: ToyProblem, tau: float) -> Tensor:
    r"""Log-probabilities ``(X, A)`` of IPO's population minimiser over all policies (see :func:`ipo`):
    :math:`\ln\pi_0 + p^*(a\succ\mu)/\tau`, normalised per prompt."""
    from .preference import preference_probs

    tau = check_positive("tau", tau)
    log_ref = prob._need_reference()
    win_vs_mu = (preference_probs(prob.log_pi_star, prob.gamma) * prob.mu[:, None, :]).sum(-1)
    return torch.log_softmax(log_ref + win_vs_mu / tau, -1)


def _chipo_log_ratio(reward: np.ndarray, c: float, beta: float) -> np.ndarray:
    r""":math:`\ln\omega(s) = s - \omega(s)` with :math:`s = (r + c)/\beta`: exact also where :math:`\omega` underflows."""
    from scipy.special import wrightomega

    s = (reward + c) / beta
    return s - np.real(wrightomega(s))


def chipo_population_limit(prob: ToyProblem, beta: float, r_max: float | None = None) -> Tensor:
    r"""Log-probabilities ``(X, A)`` of chi-PO's population minimiser over all policies (see :func:`chipo`).

    Per prompt, :math:`\ln\pi = \ln\pi_0 + \ln\omega((\gamma\ln\pi^* + c)/\beta)` with :math:`c` found by
    Brent's method: the total mass is increasing in :math:`c` and equals 1 somewhere in
    :math:`[\beta - \gamma\max_a\ln\pi^*, \beta - \gamma\min_a\ln\pi^*]` (:math:`\omega(1) = 1`).
    Raises ``ValueError`` when the clip :math:`2R_{\max}` cuts a true reward difference on the support
    of :math:`\mu` (then the population loss has no unique minimiser).
    """
    from scipy.optimize import brentq
    from scipy.special import logsumexp

    beta = check_positive("beta", beta)
    r_max = chipo_default_r_max(prob) if r_max is None else check_positive("r_max", r_max)
    log_ref = prob._need_reference().cpu().numpy()
    reward = prob.gamma * prob.log_pi_star.cpu().numpy()
    mu = prob.mu.cpu().numpy()
    out = np.empty_like(reward)
    for x in range(reward.shape[0]):
        support = reward[x][mu[x] > 0]
        if support.max() - support.min() >= 2.0 * r_max:
            raise ValueError(f"r_max: the clip 2*r_max = {2 * r_max:g} cuts a reward difference of prompt {x}")
        def log_mass(c, x=x):
            return logsumexp(log_ref[x] + _chipo_log_ratio(reward[x], c, beta))
        lo, hi = beta - reward[x].max(), beta - reward[x].min()
        c = lo if lo == hi else brentq(log_mass, lo, hi, xtol=1e-15, rtol=4 * np.finfo(float).eps, maxiter=500)
        out[x] = log_ref[x] + _chipo_log_ratio(reward[x], c, beta)
    return torch.log_softmax(torch.as_tensor(out, device=prob.device), -1)
