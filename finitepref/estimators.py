r"""Every estimator of the paper as an exact argmin over a finite class, batched over trials.

Each objective is linear in the data's sufficient statistics: for a policy :math:`\pi_k`,

.. math:: n\,\mathcal L(\pi_k) = \sum_{x,w,l} c_{xwl}\,\ell_k(x,w,l) + \sum_x m_x\,g_k(x),

with :math:`c` the counts of :math:`(x, a^+, a^-)`, :math:`m_x` the prompt counts, :math:`\ell`
a per-pair loss of :mod:`finitepref.losses` and :math:`g` a per-prompt term (a KL regularizer
or, for eqs. 1/16, the whole objective), evaluated exactly over responses. So an estimator is:
build the table ``[ell | g]`` of shape ``(K, X*A*A + X)`` once from :mod:`finitepref.losses`,
multiply by all trials' statistics ``(trials, X*A*A + X)`` in one matrix product, take the argmin
over ``K``. Chunked over ``K`` (memory stays bounded for :math:`|\Pi| = 10^6`); the cost per trial
is free of ``n``.

Estimators that take a fitted reward per trial (eqs. 10, 11, 16, 1) stay one matrix product for
all trials, whatever the rewards: eq. (11) is affine in its synthetic label, eq. (10) quadratic
in the reward gap and eqs. (1)/(16) affine in the reward, so the reward moves into the
statistics while the policy tables (built once from :mod:`finitepref.losses`) are shared.

The same table builders give differentiable objectives of one policy's log-probabilities
(:func:`pmle_objective`, :func:`distill_objective`), which the language-model trainer's bridge
test compares with its sampled losses.

Ties and totality: see :mod:`finitepref._argmin` (the lowest index within 1e-12 relative of the global
minimum; 0 * inf = 0; NaN is a ``ValueError``). The brute-force reference of each estimator is in
:mod:`finitepref._brute`, its record (label, parameters, population limit) in :mod:`finitepref.registry`.

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
.. [6] J. Schulman. "Approximating KL Divergence." Blog post, 2020. http://joschu.net/blog/kl-approx.html
"""

from __future__ import annotations

import numpy as np
import torch

from . import _brute, losses
from ._argmin import TIE_RTOL, argmin_rows, check_stats
from ._tablecache import table_key
from ._validate import as_float64, check_positive
from .preference import PreferenceData
from .problem import ToyProblem
from .registry import Estimator, register

Tensor = torch.Tensor

__all__ = [
    "pmle", "fit_reward", "distill", "reverse_kl", "dpo", "rlhf", "rebel",
    "pmle_objective", "distill_objective", "objective_values",
]

_TIE_RTOL = TIE_RTOL  # kept for one release; the tie rule lives in finitepref._argmin


# ---------------------------------------------------------------------- table builders
def _pairs(v: Tensor) -> tuple[Tensor, Tensor]:
    """Broadcast a per-response tensor (..., X, A) to winners/losers (..., X, A, A)."""
    return v[..., :, :, None], v[..., :, None, :]


def _rows_inner(rows: Tensor) -> Tensor:
    """A chunk of the class, ``(rows, X, A)``, copied with the row index innermost in memory (strides
    ``(1, A * rows, rows)``; the same values and shape). The broadcasts of :func:`_pairs` over response pairs
    then run along contiguous rows, vectorised, instead of along the ``A`` responses; the elementwise losses are
    exact per element, so the table is the same bit for bit (the argmin makes it contiguous)."""
    return rows.permute(1, 2, 0).contiguous().permute(2, 0, 1)


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
    win, lose = _pairs(log_pi)
    pair = _flat_pairs(losses.pmle_loss(win, lose, gamma))
    return torch.cat([pair, _kl_term(log_pi, log_ref, beta)], -1)


def _distill_table(log_pi: Tensor, reward: Tensor, gamma: float, beta: float, log_ref: Tensor | None) -> Tensor:
    win, lose = _pairs(log_pi)
    rw, rl = _pairs(reward)
    pair = _flat_pairs(losses.distill_loss(win, lose, rw, rl, gamma))
    return torch.cat([pair, _kl_term(log_pi, log_ref, beta)], -1)


def _distill_label_tables(log_pi: Tensor, gamma: float, beta: float, log_ref: Tensor | None) -> Tensor:
    r"""Eq. (11) is affine in the synthetic label :math:`\tilde p`:
    :math:`\ell(\tilde p) = (1-\tilde p)\,\ell(0) + \tilde p\,\ell(1)`. Returns ``[l(0) | l(1) | beta KL]``,
    with :math:`\ell(0), \ell(1)` read off :func:`losses.distill_loss` at reward gaps of :math:`\mp\infty`."""
    win, lose = _pairs(log_pi)
    zero = torch.zeros_like(win)
    inf = torch.full_like(lose, float("inf"))
    loss0 = _flat_pairs(losses.distill_loss(win, lose, zero, inf, gamma))
    loss1 = _flat_pairs(losses.distill_loss(win, lose, inf, zero, gamma))
    return torch.cat([loss0, loss1, _kl_term(log_pi, log_ref, beta)], -1)


def _dpo_table(log_pi: Tensor, log_ref: Tensor, beta: float) -> Tensor:
    win, lose = _pairs(log_pi)
    rw, rl = _pairs(log_ref)
    return _flat_pairs(losses.dpo_loss(win, lose, rw, rl, beta))


def _rebel_node_tables(log_pi: Tensor, log_ref: Tensor) -> Tensor:
    r"""Eq. (10) is quadratic in the scaled reward gap :math:`u = \eta(\hat R(x,a^+) - \hat R(x,a^-))`, so it is
    fixed by its values at :math:`u\in\{0, 1, -1\}` (Lagrange interpolation, exact):
    :math:`\ell(u) = (1-u^2)\ell(0) + \tfrac{u+u^2}{2}\ell(1) + \tfrac{u^2-u}{2}\ell(-1)`. Returns the three
    node tables. The statistics carry :math:`\eta` (not the table), so rewards of 1e155 with
    :math:`\eta = 10^{-155}` stay in range."""
    win, lose = _pairs(log_pi)
    fw, fl = _pairs(log_ref)
    zero = torch.zeros_like(win + lose)
    nodes = [losses.rebel_loss(win, lose, fw, fl, zero + gap, zero, 1.0) for gap in (0.0, 1.0, -1.0)]
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


def _shaped_stats(prob: ToyProblem, data: PreferenceData, reward_index, name: str) -> Tensor:
    """Statistics matching :func:`_shaped_reward_tables`: ``[-m_x R_t(x, a) | m_x]``."""
    m = _prompt_stats(data, prob.device)
    reward = _trial_rewards(prob, reward_index, data.trials)
    stats = torch.cat([(-m[:, :, None] * reward).reshape(data.trials, -1), m], 1)
    return check_stats(name, stats, "rewards x prompt counts")


def _key(prob: ToyProblem, name: str, params: tuple, log_ref: Tensor | None):
    """Cache key of an estimator's loss table (:mod:`finitepref._tablecache`): it depends on the class, the
    reference, gamma and the parameters, never on the data."""
    return table_key(name, params, prob.gamma, prob.log_policies, log_ref)


def objective_values(table: Tensor, stats: Tensor) -> Tensor:
    """Objective ``n * L`` of every table row for every trial, ``(K, trials)`` (for inspection and tests)."""
    return table @ stats.T


# ---------------------------------------------------------------------- argument checks
def _check_data(prob: ToyProblem, data: PreferenceData) -> None:
    if not isinstance(data, PreferenceData):
        raise ValueError(f"data: expected a PreferenceData, got {type(data).__name__}")
    if (data.n_prompts, data.n_responses) != (prob.n_prompts, prob.n_responses):
        raise ValueError(f"data: expected counts for X={prob.n_prompts}, A={prob.n_responses} (the problem's), "
                         f"got X={data.n_prompts}, A={data.n_responses}")


def _trial_rewards(prob: ToyProblem, reward_index, trials: int) -> Tensor:
    """The reward table of each trial, ``(trials, X, A)``, from one index or one per trial."""
    rewards = prob.require_rewards()
    idx = np.asarray(reward_index)
    if not np.issubdtype(idx.dtype, np.integer):
        raise ValueError(f"reward_index: expected integer indices, got dtype {idx.dtype}")
    if idx.ndim == 0:
        idx = np.full(trials, int(idx))
    if idx.shape != (trials,):
        raise ValueError(f"reward_index: expected one index or one per trial ({trials}), got shape {idx.shape}")
    if idx.min() < 0 or idx.max() >= rewards.shape[0]:
        bad = idx[(idx < 0) | (idx >= rewards.shape[0])][0]
        raise ValueError(f"reward_index: expected indices in [0, {rewards.shape[0]}), got {int(bad)}")
    return rewards[torch.as_tensor(idx, device=rewards.device)]


def _reward_gaps(reward: Tensor, scale: float = 1.0) -> Tensor:
    """Reward gap ``scale * R(x, a+) - scale * R(x, a-)`` per trial, ``(trials, X*A*A)``."""
    rw, rl = _pairs(reward * scale if scale != 1.0 else reward)
    return _flat_pairs(losses.preference_logit(rw, rl, 1.0))


# ---------------------------------------------------------------------- records: population limits, registration
def _normalised(log_w: Tensor) -> Tensor:
    return torch.log_softmax(log_w, dim=-1)


def _pi_star_limit(name: str):
    def limit(prob: ToyProblem, beta: float = 0.0) -> Tensor:
        if beta != 0:
            raise ValueError(f"{name}: expected beta = 0 for a closed-form population limit, got {beta!r}")
        return prob.log_pi_star
    limit.__doc__ = f"Population limit of {name} at beta = 0: pi* itself."
    return limit


def _reverse_kl_limit(prob: ToyProblem, beta: float = 0.0) -> Tensor:
    r""":math:`\pi_0^{\beta/(\beta+\gamma)}\pi^{*\gamma/(\beta+\gamma)}` (Section 5, prior smoothing); :math:`\pi^*` at beta = 0."""
    if beta == 0:
        return prob.log_pi_star
    total = beta + prob.gamma
    return _normalised((beta * prob.require_reference() + prob.gamma * prob.log_pi_star) / total)


def _tilted_reference_limit(prob: ToyProblem, beta: float) -> Tensor:
    r""":math:`\pi_0\,\pi^{*\gamma/\beta}`: DPO's limit and RLHF's Gibbs policy :math:`\pi_0 e^{R^*/\beta}`, :math:`R^* = \gamma\ln\pi^*`."""
    return _normalised(prob.require_reference() + prob.gamma / beta * prob.log_pi_star)


def _rebel_limit(prob: ToyProblem, eta: float) -> Tensor:
    r""":math:`\pi_0 e^{\eta R^*} = \pi_0\,\pi^{*\eta\gamma}` (zero squared loss on every pair)."""
    return _normalised(prob.require_reference() + eta * prob.gamma * prob.log_pi_star)


def registered(label: str, divergence: str, params: tuple[str, ...], *, equation: str, needs_reward: bool = False,
               learns_pi_star: bool = True, population_limit=None, reference=None, test_params=()):
    """Declare the decorated exact-argmin function in :data:`finitepref.registry.ESTIMATORS` (its name is the key)."""
    def wrap(function):
        register(Estimator(function.__name__, label, function, divergence, params, needs_reward, learns_pi_star,
                           equation, population_limit, reference, test_params))
        return function
    return wrap


# ---------------------------------------------------------------------- the estimators
def _regularizer_reference(prob: ToyProblem, beta: float) -> Tensor | None:
    return prob.require_reference() if beta > 0 else None


@registered("PMLE (eq. 4)", "forward", ("beta",), equation="4", population_limit=_pi_star_limit("pmle"),
            reference=_brute.pmle)
def pmle(prob: ToyProblem, data: PreferenceData, beta: float = 0.0, *, chunk_size: int | None = None) -> np.ndarray:
    r"""Preference MLE, eq. (4), with the KL regularizer of eq. (5) when ``beta > 0``.

    .. math:: \hat\pi = \arg\min_{\pi\in\Pi} \frac1n\sum_{(x,a^+,a^-)\in D_n}
              -\ln\sigma\Bigl(\gamma\ln\frac{\pi(a^+\mid x)}{\pi(a^-\mid x)}\Bigr)
              + \beta\,\frac1n\sum_{(x,\cdot,\cdot)\in D_n}\mathrm{KL}(\pi(x)\|\pi_0(x)).

    Returns the chosen policy index per trial, ``(trials,)`` int64 (Theorem 4's estimator at
    ``beta = 0``). Needs ``prob.reference`` when ``beta > 0``. Ties: the rule of :mod:`finitepref._argmin`.

    Examples
    --------
    >>> prob = ToyProblem.random(n_policies=30, seed=0)
    >>> data = prob.sample(20_000, trials=3, seed=1)
    >>> bool((pmle(prob, data) == prob.star).all())
    True
    """
    _check_data(prob, data)
    beta = check_positive("beta", beta, allow_zero=True)
    log_ref = _regularizer_reference(prob, beta)
    stats = _pair_and_prompt_stats(data, prob.device)
    return argmin_rows(lambda s: _pmle_table(_rows_inner(prob.log_policies[s]), prob.gamma, beta, log_ref),
                       prob.n_policies, stats, chunk_size, name="pmle", key=_key(prob, "pmle", (beta,), log_ref))


def fit_reward(prob: ToyProblem, data: PreferenceData, *, chunk_size: int | None = None) -> np.ndarray:
    r"""Bradley-Terry reward model [5]_, eq. (9): :math:`\hat R = \arg\min_{R\in\mathcal R}\frac1n\sum -\ln\sigma(R(x,a^+) - R(x,a^-))`.

    Returns reward-class indices ``(trials,)``.

    Examples
    --------
    >>> prob = ToyProblem.random(n_policies=30, n_rewards=4, seed=0)
    >>> data = prob.sample(20_000, trials=2, seed=1)
    >>> fit_reward(prob, data).tolist()  # reward 0 induces pi* (ToyProblem.random)
    [0, 0]
    """
    _check_data(prob, data)
    rewards = prob.require_rewards()
    stats = _pair_stats(data, prob.device)
    return argmin_rows(lambda s: _bt_table(_rows_inner(rewards[s])), rewards.shape[0], stats, chunk_size, name="fit_reward",
                       key=table_key("fit_reward", (), 1.0, rewards))


@registered("Preference distillation (eq. 11)", "forward", ("beta",), equation="11", needs_reward=True,
            population_limit=_pi_star_limit("distill"), reference=_brute.distill)
def distill(prob: ToyProblem, data: PreferenceData, reward_index, beta: float = 0.0, *,
            chunk_size: int | None = None) -> np.ndarray:
    r"""Preference distillation, eq. (11), with the KL regularizer of eq. (12) when ``beta > 0``.

    .. math:: \hat\pi = \arg\min_{\pi\in\Pi}\frac1n\sum_{D_n} -\tilde p\ln\mathbb P_\pi(a^+\succ a^-\mid x)
              - (1-\tilde p)\ln\mathbb P_\pi(a^-\succ a^+\mid x) + \beta\,\mathrm{KL}(\pi(x)\|\pi_0(x)),
              \quad \tilde p = \sigma(\hat R(x,a^+) - \hat R(x,a^-)).

    ``reward_index`` picks :math:`\hat R` in the reward class: one index, or one per trial (e.g. the
    output of :func:`fit_reward`). Theorem 6's estimator at ``beta = 0``.

    Examples
    --------
    >>> prob = ToyProblem.random(n_policies=30, n_rewards=4, seed=0)
    >>> data = prob.sample(100, trials=2, seed=1)
    >>> bool((distill(prob, data, reward_index=0) == prob.star).all())  # the true reward distils pi*
    True
    """
    _check_data(prob, data)
    beta = check_positive("beta", beta, allow_zero=True)
    log_ref = _regularizer_reference(prob, beta)
    gap = _reward_gaps(_trial_rewards(prob, reward_index, data.trials))
    counts = _pair_stats(data, prob.device)
    stats = torch.cat([counts * torch.sigmoid(-gap), counts * torch.sigmoid(gap), _prompt_stats(data, prob.device)], 1)
    return argmin_rows(lambda s: _distill_label_tables(_rows_inner(prob.log_policies[s]), prob.gamma, beta, log_ref),
                       prob.n_policies, stats, chunk_size, name="distill", key=_key(prob, "distill", (beta,), log_ref))


@registered("Reverse KL (eq. 15)", "reverse", ("beta",), equation="15", needs_reward=True,
            population_limit=_reverse_kl_limit, reference=_brute.reverse_kl)
def reverse_kl(prob: ToyProblem, data: PreferenceData, reward_index, beta: float = 0.0, *,
               chunk_size: int | None = None) -> np.ndarray:
    r"""Reverse-KL estimator, eq. (16) (eq. 15 at ``beta = 0``).

    .. math:: \hat\pi = \arg\min_{\pi\in\Pi}\frac1n\sum_{(x,\cdot,\cdot)\in D_n}
              -\mathbb E_{a\sim\pi(x)}[\hat R(x,a)] - \gamma H(\pi(x)) + \beta\,\mathrm{KL}(\pi(x)\|\pi_0(x)),

    computed exactly over responses from the shaped reward of :func:`finitepref.losses.shaped_reward`.
    Only the prompts of the data set enter (Theorem 7's estimator at ``beta = 0``).

    Examples
    --------
    >>> prob = ToyProblem.random(n_policies=30, n_rewards=4, seed=0)
    >>> data = prob.sample(100, trials=2, seed=1)
    >>> bool((reverse_kl(prob, data, reward_index=0) == prob.star).all())
    True
    """
    _check_data(prob, data)
    beta = check_positive("beta", beta, allow_zero=True)
    log_ref = _regularizer_reference(prob, beta)
    stats = _shaped_stats(prob, data, reward_index, "reverse_kl")
    return argmin_rows(lambda s: _shaped_reward_tables(prob.log_policies[s], log_ref, beta, prob.gamma),
                       prob.n_policies, stats, chunk_size, name="reverse_kl",
                       key=_key(prob, "reverse_kl", (beta,), log_ref))


@registered("DPO (eq. 6)", "forward", ("beta",), equation="6", learns_pi_star=False,
            population_limit=_tilted_reference_limit, reference=_brute.dpo, test_params=({"beta": 0.1}, {"beta": 2.0}))
def dpo(prob: ToyProblem, data: PreferenceData, beta: float, *, chunk_size: int | None = None) -> np.ndarray:
    r"""DPO baseline [2]_, eq. (6), with inverse temperature ``beta > 0`` against ``prob.reference``.

    .. math:: \hat\pi = \arg\min_{\pi\in\Pi}\frac1n\sum_{D_n}-\ln\sigma\Bigl(\beta\ln\frac{\pi(a^+\mid x)}{\pi(a^-\mid x)}
              - \beta\ln\frac{\pi_0(a^+\mid x)}{\pi_0(a^-\mid x)}\Bigr).

    Its population limit is :math:`\pi_0\,\pi^{*\gamma/\beta}` (normalised), not :math:`\pi^*`.

    Examples
    --------
    >>> prob = ToyProblem.random(n_policies=30, seed=0)
    >>> data = prob.sample(1_000, trials=2, seed=1)
    >>> dpo(prob, data, beta=1.0).shape
    (2,)
    """
    _check_data(prob, data)
    beta = check_positive("beta", beta)
    log_ref = prob.require_reference()
    stats = _pair_stats(data, prob.device)
    return argmin_rows(lambda s: _dpo_table(_rows_inner(prob.log_policies[s]), log_ref, beta), prob.n_policies, stats,
                       chunk_size, name="dpo", key=_key(prob, "dpo", (beta,), log_ref))


@registered("RLHF (eq. 1)", "forward", ("beta",), equation="1", needs_reward=True, learns_pi_star=False,
            population_limit=_tilted_reference_limit, reference=_brute.rlhf)
def rlhf(prob: ToyProblem, data: PreferenceData, reward_index, beta: float, *,
         chunk_size: int | None = None) -> np.ndarray:
    r"""RLHF baseline [4]_, eq. (1), over the data set's prompts, computed exactly over responses.

    .. math:: \hat\pi = \arg\min_{\pi\in\Pi}\frac1n\sum_{(x,\cdot,\cdot)\in D_n}
              -\mathbb E_{a\sim\pi(x)}[\hat R(x,a)] + \beta\,\mathrm{KL}(\pi(x)\|\pi_0(x)).

    Needs ``prob.reference`` when ``beta > 0``.

    Examples
    --------
    >>> prob = ToyProblem.random(n_policies=30, n_rewards=4, seed=0)
    >>> data = prob.sample(100, trials=2, seed=1)
    >>> rlhf(prob, data, reward_index=0, beta=0.5).shape
    (2,)
    """
    _check_data(prob, data)
    beta = check_positive("beta", beta, allow_zero=True)
    log_ref = _regularizer_reference(prob, beta)
    stats = _shaped_stats(prob, data, reward_index, "rlhf")
    return argmin_rows(lambda s: _shaped_reward_tables(prob.log_policies[s], log_ref, beta, 0.0),
                       prob.n_policies, stats, chunk_size, name="rlhf", key=_key(prob, "rlhf", (beta,), log_ref))


@registered("REBEL (eq. 10)", "forward", ("eta",), equation="10", needs_reward=True, learns_pi_star=False,
            population_limit=_rebel_limit, reference=_brute.rebel, test_params=({"eta": 0.1}, {"eta": 2.0}))
def rebel(prob: ToyProblem, data: PreferenceData, reward_index, eta: float, *,
          chunk_size: int | None = None) -> np.ndarray:
    r"""REBEL baseline [3]_, eq. (10): least squares of the reference-relative log-ratio on :math:`\eta\Delta\hat R`.

    .. math:: \hat\pi = \arg\min_{\pi\in\Pi}\frac1n\sum_{D_n}\Bigl(\ln\frac{\pi(a^+\mid x)/\pi_0(a^+\mid x)}
              {\pi(a^-\mid x)/\pi_0(a^-\mid x)} - \eta\bigl(\hat R(x,a^+) - \hat R(x,a^-)\bigr)\Bigr)^2.

    Section 4 notes that :math:`\eta = 1/\gamma` (and :math:`\pi_0` uniform) recovers :math:`\pi^*`.
    The objective depends on the rewards only through :math:`\eta\hat R`.

    Examples
    --------
    >>> prob = ToyProblem.random(n_policies=30, n_rewards=4, seed=0)
    >>> rebel(prob, prob.sample(100, trials=2, seed=1), reward_index=[0, 1], eta=1.0).tolist()  # one reward per trial
    [20, 26]
    """
    _check_data(prob, data)
    eta = check_positive("eta", eta)
    log_ref = prob.require_reference()
    u = _reward_gaps(_trial_rewards(prob, reward_index, data.trials), eta)
    counts = _pair_stats(data, prob.device)
    sq = u * u
    stats = torch.cat([counts * (1 - sq), counts * (u + sq) / 2, counts * (sq - u) / 2], 1)
    stats = check_stats("rebel", stats, "eta x reward gaps, squared, x counts")
    return argmin_rows(lambda s: _rebel_node_tables(_rows_inner(prob.log_policies[s]), log_ref), prob.n_policies, stats,
                       chunk_size, name="rebel", key=_key(prob, "rebel", (), log_ref))


# ---------------------------------------------------------------------- differentiable objectives
def _objective(table: Tensor, counts) -> Tensor:
    """``(table . [c | m]) / n`` with ``0 * inf = 0``: a table entry counts only where its statistic is non-zero."""
    counts = as_float64("counts", counts, np.ndim(counts) if not isinstance(counts, Tensor) else counts.ndim,
                        table.device).to(table.dtype)
    if counts.ndim != 3 or counts.shape[-1] != counts.shape[-2]:
        raise ValueError(f"counts: expected shape (X, A, A), got {tuple(counts.shape)}")
    if not torch.isfinite(counts).all() or (counts < 0).any():
        raise ValueError("counts: expected finite non-negative counts, got a negative or non-finite entry")
    total = counts.sum()
    if total <= 0:
        raise ValueError(f"counts: expected at least one sample, got a total of {float(total)}")
    stats = torch.cat([counts.reshape(-1), counts.sum((-2, -1))])
    masked = torch.where(stats != 0, table, torch.zeros_like(table))
    return (masked @ stats) / total


def pmle_objective(log_probs: Tensor, counts, gamma: float, beta: float = 0.0,
                   ref_log_probs: Tensor | None = None) -> Tensor:
    r""":math:`\mathcal L_{\mathrm{PMLE},\beta}(\pi)` of eq. (5) for one data set, differentiable in ``log_probs``.

    Parameters
    ----------
    log_probs : Tensor (..., X, A)
        :math:`\ln\pi(a\mid x)` over an enumerated response set.
    counts : array (X, A, A)
        ``counts[x, w, l]`` samples with prompt x, preferred w, dispreferred l (at least one sample).
    gamma : float
        The tilt :math:`\gamma > 0`.
    beta : float
        KL weight :math:`\beta \ge 0`; ``ref_log_probs`` is required when positive.

    Examples
    --------
    >>> lp = torch.log(torch.tensor([[0.5, 0.5]], dtype=torch.float64))
    >>> counts = np.array([[[0, 1], [0, 0]]])
    >>> round(float(pmle_objective(lp, counts, gamma=1.0)), 6)  # -ln sigma(0) = ln 2
    0.693147
    """
    gamma = check_positive("gamma", gamma)
    beta = check_positive("beta", beta, allow_zero=True)
    return _objective(_pmle_table(log_probs, gamma, beta, ref_log_probs), counts)


def distill_objective(log_probs: Tensor, counts, rewards: Tensor, gamma: float, beta: float = 0.0,
                      ref_log_probs: Tensor | None = None) -> Tensor:
    r""":math:`\mathcal L_{\mathrm{Distill},\beta}(\pi)` of eqs. (11)-(12) for one data set, differentiable in ``log_probs``.

    ``rewards`` is :math:`\hat R(x, a)` with shape (X, A); other arguments as :func:`pmle_objective`.

    Examples
    --------
    >>> lp = torch.log(torch.tensor([[0.5, 0.5]], dtype=torch.float64))
    >>> counts = np.array([[[0, 1], [0, 0]]])
    >>> round(float(distill_objective(lp, counts, torch.zeros(1, 2), gamma=1.0)), 6)
    0.693147
    """
    gamma = check_positive("gamma", gamma)
    beta = check_positive("beta", beta, allow_zero=True)
    rewards = torch.as_tensor(rewards, dtype=log_probs.dtype, device=log_probs.device)
    return _objective(_distill_table(log_probs, rewards, gamma, beta, ref_log_probs), counts)


# ---------------------------------------------------------------------- beyond the paper (issue 14)
__all__ += ["ipo", "chipo", "chipo_default_r_max", "ipo_population_limit", "chipo_population_limit"]
# (the two decorated functions below are registered after their population limits are defined)


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

    Examples
    --------
    >>> prob = ToyProblem.random(n_policies=30, seed=0)
    >>> bool(chipo_default_r_max(prob) == 2 * prob.gamma * prob.boundedness())
    True
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

    Examples
    --------
    >>> prob = ToyProblem.random(n_policies=30, seed=0)
    >>> ipo(prob, prob.sample(20_000, trials=3, seed=1), tau=0.5).tolist()
    [24, 24, 24]
    """
    _check_data(prob, data)
    tau = check_positive("tau", tau)
    log_ref = prob.require_reference()
    stats = _pair_stats(data, prob.device)
    return argmin_rows(lambda s: _ipo_table(_rows_inner(prob.log_policies[s]), log_ref, tau), prob.n_policies, stats, chunk_size,
                       name="ipo", key=_key(prob, "ipo", (tau,), log_ref))


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

    Examples
    --------
    >>> prob = ToyProblem.random(n_policies=30, seed=0)
    >>> data = prob.sample(20_000, trials=3, seed=1)
    >>> default = chipo(prob, data, beta=0.5)  # r_max = 2 gamma R
    >>> bool((default == chipo(prob, data, beta=0.5, r_max=chipo_default_r_max(prob))).all()), default.tolist()
    (True, [24, 24, 24])
    """
    _check_data(prob, data)
    beta = check_positive("beta", beta)
    r_max = chipo_default_r_max(prob) if r_max is None else check_positive("r_max", r_max)
    log_ref = prob.require_reference()
    stats = _pair_stats(data, prob.device)
    return argmin_rows(lambda s: _chipo_table(_rows_inner(prob.log_policies[s]), log_ref, beta, r_max), prob.n_policies, stats,
                       chunk_size, name="chipo", key=_key(prob, "chipo", (beta, r_max), log_ref))


def ipo_population_limit(prob: ToyProblem, tau: float) -> Tensor:
    r"""Log-probabilities ``(X, A)`` of IPO's population minimiser over all policies (see :func:`ipo`):
    :math:`\ln\pi_0 + p^*(a\succ\mu)/\tau`, normalised per prompt.    Examples
    --------
    >>> prob = ToyProblem.random(n_policies=30, seed=0)
    >>> limit = ipo_population_limit(prob, tau=0.5)  # a policy: rows sum to 1
    >>> bool(torch.allclose(limit.exp().sum(-1), torch.ones(prob.n_prompts, dtype=torch.float64)))
    True
    """
    from .preference import preference_probs

    tau = check_positive("tau", tau)
    log_ref = prob.require_reference()
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

    Examples
    --------
    >>> prob = ToyProblem.random(n_policies=30, seed=0)
    >>> limit = chipo_population_limit(prob, beta=0.5)
    >>> bool(torch.allclose(limit.exp().sum(-1), torch.ones(prob.n_prompts, dtype=torch.float64)))
    True
    """
    from scipy.optimize import brentq
    from scipy.special import logsumexp

    beta = check_positive("beta", beta)
    r_max = chipo_default_r_max(prob) if r_max is None else check_positive("r_max", r_max)
    log_ref = prob.require_reference().cpu().numpy()
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


registered("IPO (Azar et al. 2023)", "forward", ("tau",), equation="", learns_pi_star=False,
           population_limit=ipo_population_limit, reference=_brute.ipo,
           test_params=({"tau": 0.1}, {"tau": 2.0}))(ipo)
registered("χPO (Huang et al. 2024)", "forward", ("beta", "r_max"), equation="",
           learns_pi_star=False, population_limit=chipo_population_limit, reference=_brute.chipo,
           test_params=({"beta": 0.1, "r_max": None}, {"beta": 2.0, "r_max": 0.5}))(chipo)
