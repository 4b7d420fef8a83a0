r"""A finite alignment problem: prompts, data policy, a finite class of categorical LMs, and pi*.

The setting of Section 2: prompts :math:`x\sim\mathcal D` (``prompt_probs``), responses for the
pairs drawn from :math:`\mu(x)` (``mu``), a finite policy class :math:`\Pi` containing the target
:math:`\pi^*` (Assumption 1; ``policies[star]``), the tilt :math:`\gamma`, optionally a finite
reward class :math:`\mathcal R` (Section 4) and a reference :math:`\pi_0` (eqs. 1, 5, 6, 10, 12, 16).

Policies are stored as float64 log-probabilities, so probabilities that underflow (logits of
-700, probabilities of 1e-300) stay exact. Every derived quantity (R, C_Pi, exact KL tables) is
computed once and cached.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from . import coverage as _coverage
from . import distributed as _distributed
from ._validate import (
    as_float64,
    check_count,
    check_device,
    check_distribution,
    check_log_distribution,
    check_positive,
    input_eps,
)
from .divergences import kl
from .preference import PreferenceData, pair_law, sample_counts
from .streamed import InducedClass, LogLinearClass, StreamedClass

__all__ = ["ToyProblem"]

_CHUNK = 65_536


class ToyProblem:
    r"""A finite instance of the paper's setting, with every quantity computable exactly.

    Parameters
    ----------
    prompt_probs : array (X,)
        The prompt distribution :math:`\mathcal D`.
    mu : array (X, A)
        The response distribution :math:`\mu(\cdot\mid x)` that generates the pairs (Section 2).
        Zeros are allowed (they make coverage infinite for some classes).
    policies : array (K, X, A)
        The finite class :math:`\Pi` as probabilities. Every policy needs full support: with a zero,
        the boundedness constant R of Assumption 2 is infinite.
    star : int
        Index of :math:`\pi^*` in :math:`\Pi` (realizability, Assumption 1).
    gamma : float
        Tilt :math:`\gamma > 0` of the preference model, eq. (2).
    rewards : array (M, X, A) or StreamedClass, optional
        A finite reward class :math:`\mathcal R` (eq. 9); a :class:`finitepref.streamed.StreamedClass` of
        reward rows is read chunk by chunk like a streamed policy class.
    reference : array (X, A), optional
        The reference policy :math:`\pi_0`, with full support.
    device : str or torch.device
        Where tensors live and estimators run (CPU by default).
    log_space : bool
        If True, ``policies`` and ``reference`` are given as log-probabilities.
    meta : dict, optional
        Free-form description (e.g. the grid of a log-linear class), carried into results files.

    Arrays may be numpy arrays, torch tensors or nested lists; they are stored as float64 tensors.
    """

    def __init__(
        self,
        prompt_probs,
        mu,
        policies,
        star: int,
        gamma: float,
        rewards=None,
        reference=None,
        *,
        device: str | torch.device = "cpu",
        log_space: bool = False,
        meta: dict[str, Any] | None = None,
    ) -> None:
        self.device = check_device(device)
        self.prompt_probs = as_float64("prompt_probs", prompt_probs, 1, self.device)
        check_distribution("prompt_probs", self.prompt_probs, input_eps(prompt_probs))
        self.mu = as_float64("mu", mu, 2, self.device)
        check_distribution("mu", self.mu, input_eps(mu))
        n_prompts, n_responses = self.mu.shape
        if self.prompt_probs.shape[0] != n_prompts:
            raise ValueError(f"mu: expected {self.prompt_probs.shape[0]} prompts (as prompt_probs), got {n_prompts}")
        if n_responses < 2:
            raise ValueError(f"mu: expected at least 2 responses for pairwise preferences, got {n_responses}")
        self.log_policies = self._read_policies("policies", policies, 3, log_space)
        if tuple(self.log_policies.shape[1:]) != (n_prompts, n_responses):
            raise ValueError(f"policies: expected shape (K, {n_prompts}, {n_responses}), "
                             f"got {tuple(self.log_policies.shape)}")
        if isinstance(star, bool) or not isinstance(star, (int, np.integer)):
            raise ValueError(f"star: expected an integer index, got {star!r}")
        if not 0 <= int(star) < self.log_policies.shape[0]:
            raise ValueError(f"star: expected an index in [0, {self.log_policies.shape[0]}), got {star}")
        self.star = int(star)
        self.gamma = check_positive("gamma", gamma)
        self.rewards = None if rewards is None else self._read_rewards(rewards)
        self.log_reference = None
        if reference is not None:
            ref = self._read_policies("reference", reference, 2, log_space)
            if tuple(ref.shape) != (n_prompts, n_responses):
                raise ValueError(f"reference: expected shape ({n_prompts}, {n_responses}), got {tuple(ref.shape)}")
            self.log_reference = ref
        self.meta: dict[str, Any] = dict(meta or {})

    # ------------------------------------------------------------------ validation helpers
    def _read_policies(self, name: str, value, ndim: int, log_space: bool) -> torch.Tensor:
        """Policies (``ndim = 3``) or the reference (``ndim = 2``) as full-support float64 log-probabilities."""
        if isinstance(value, StreamedClass):  # generated on demand (finite by construction); see finitepref.streamed
            if ndim != 3:
                raise ValueError(f"{name}: expected a tensor, got a streamed class")
            return value.to(self.device)
        t = as_float64(name, value, ndim, self.device)
        batch = t if ndim == 3 else t[None]
        if log_space:
            check_log_distribution(name, t, input_eps(value))
            self._require_full_support(name, batch)
            return t
        out = self._log_full_support(name, batch, input_eps(value))
        return out if ndim == 3 else out[0]

    def _read_rewards(self, rewards) -> torch.Tensor:
        if isinstance(rewards, StreamedClass):  # e.g. gamma ln Pi of a streamed class (finitepref.hypercube)
            if tuple(rewards.shape[1:]) != (self.n_prompts, self.n_responses):
                raise ValueError(f"rewards: expected shape (M, {self.n_prompts}, {self.n_responses}), "
                                 f"got {tuple(rewards.shape)}")
            return rewards.to(self.device)
        r = as_float64("rewards", rewards, 3, self.device)
        if tuple(r.shape[1:]) != (self.n_prompts, self.n_responses) or r.shape[0] < 1:
            raise ValueError(f"rewards: expected shape (M, {self.n_prompts}, {self.n_responses}), got {tuple(r.shape)}")
        if not torch.isfinite(r).all():
            raise ValueError("rewards: expected finite rewards, got +-inf")
        return r

    @staticmethod
    def _require_full_support(name: str, log_p: torch.Tensor) -> None:
        bad = torch.isneginf(log_p)
        if bad.any():
            k, x, a = (int(i) for i in torch.nonzero(bad)[0])
            label = f"{name}[{k}]" if name == "policies" else name
            raise ValueError(
                f"{label}: zero probability at prompt {x}, response {a}; the boundedness constant R of "
                "Assumption 2 needs every policy to have full support"
            )

    @classmethod
    def _log_full_support(cls, name: str, p: torch.Tensor, eps: float | None = None) -> torch.Tensor:
        check_distribution(name, p, eps)
        cls._require_full_support(name, torch.log(p))
        return torch.log(p)

    # ------------------------------------------------------------------ sizes and views
    @property
    def n_prompts(self) -> int:
        return int(self.mu.shape[0])

    @property
    def n_responses(self) -> int:
        return int(self.mu.shape[1])

    @property
    def n_policies(self) -> int:
        """|Pi|."""
        return int(self.log_policies.shape[0])

    @property
    def n_rewards(self) -> int:
        """|R| (0 without a reward class)."""
        return 0 if self.rewards is None else int(self.rewards.shape[0])

    @property
    def policies(self) -> torch.Tensor:
        """The class as probabilities ``(K, X, A)`` (materialised, also for a streamed class)."""
        return torch.exp(self.log_policies[:])

    @property
    def log_pi_star(self) -> torch.Tensor:
        r""":math:`\ln\pi^*`, shape ``(X, A)``."""
        return self.log_policies[self.star]

    @property
    def reference(self) -> torch.Tensor | None:
        r""":math:`\pi_0` as probabilities, or None."""
        return None if self.log_reference is None else torch.exp(self.log_reference)

    def induced_log_policies(self, rewards: torch.Tensor | None = None) -> torch.Tensor:
        r"""Log-probabilities of :math:`\mathcal P_\gamma(\mathcal R)`: :math:`\pi_R\propto\exp(R/\gamma)`, eq. (8)."""
        r = self.require_rewards() if rewards is None else rewards
        if isinstance(r, StreamedClass):
            return InducedClass(r, self.gamma)
        return torch.log_softmax(r / self.gamma, dim=-1)

    def to(self, device: str | torch.device) -> ToyProblem:
        """A copy of the problem on another device (e.g. ``"cuda"``)."""
        out = object.__new__(ToyProblem)
        out.__dict__.update({k: v for k, v in self.__dict__.items() if not k.startswith("_cache")})
        out.device = check_device(device)
        for name in ("prompt_probs", "mu", "log_policies", "rewards", "log_reference"):
            value = getattr(self, name)
            setattr(out, name, None if value is None else value.to(out.device))
        return out

    def require_rewards(self) -> torch.Tensor:
        """The reward class ``(M, X, A)``, or a ``ValueError`` saying how to supply one."""
        if self.rewards is None:
            raise ValueError("rewards: expected a reward class, got None; pass rewards=... to ToyProblem")
        return self.rewards

    def require_reference(self) -> torch.Tensor:
        r"""The reference :math:`\ln\pi_0` ``(X, A)``, or a ``ValueError`` saying how to supply one."""
        if self.log_reference is None:
            raise ValueError("reference: expected a reference policy pi0, got None; pass reference=... to ToyProblem")
        return self.log_reference

    def _need_rewards(self) -> torch.Tensor:
        """Deprecated alias of :meth:`require_rewards` (kept for one release)."""
        warnings.warn("ToyProblem._need_rewards is deprecated; use require_rewards", DeprecationWarning, stacklevel=2)
        return self.require_rewards()

    def _need_reference(self) -> torch.Tensor:
        """Deprecated alias of :meth:`require_reference` (kept for one release)."""
        warnings.warn("ToyProblem._need_reference is deprecated; use require_reference", DeprecationWarning,
                      stacklevel=2)
        return self.require_reference()

    # ------------------------------------------------------------------ data
    def law(self) -> np.ndarray:
        r"""Exact law of :math:`(x, a^+, a^-)` as a numpy array ``(X, A, A)`` (see :mod:`finitepref.preference`)."""
        return pair_law(self.prompt_probs, self.mu, self.log_pi_star, self.gamma).cpu().numpy()

    def sample(self, n: int, trials: int = 1, seed: int | np.random.SeedSequence | np.random.Generator | None = None
               ) -> PreferenceData:
        r"""Draw ``trials`` independent data sets of ``n`` preference samples, as in Section 2.

        Returns the sufficient statistics (counts per (x, a+, a-)); the cost is one multinomial
        draw per trial, independent of ``n``. The same ``seed`` gives identical counts.
        """
        n = check_count("n", n)
        trials = check_count("trials", trials, upper=2**31)
        rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
        return PreferenceData(sample_counts(self.law(), n, trials, rng))

    # ------------------------------------------------------------------ constants of the theory
    @functools.cached_property
    def _cache_boundedness(self) -> float:
        return _coverage.boundedness(self.log_policies, self.mu)

    def boundedness(self) -> float:
        r"""R of Assumption 2: :math:`\max_{\pi,x,a}|\ln\pi(a\mid x) - \mathbb E_{\mu(x)}\ln\pi|`."""
        return self._cache_boundedness

    @functools.cached_property
    def _cache_coverage(self) -> float:
        return _coverage.coverage(self.log_policies, self.log_pi_star, self.prompt_probs, self.mu)

    def coverage(self) -> float:
        r"""Generalized coverage :math:`C_\Pi` of Definition 3 (exact; ``inf`` possible)."""
        return self._cache_coverage

    def reward_coverage(self) -> float:
        r""":math:`C_{\mathcal R} = C_{\mathcal P_\gamma(\mathcal R)}`, the coverage of the reward-induced class (Section 4)."""
        return _coverage.coverage(self.induced_log_policies(), self.log_pi_star, self.prompt_probs, self.mu)

    def concentrability(self) -> float:
        r""":math:`\ell_\infty` concentrability :math:`\sup_\pi\max_{x,a}\pi(a\mid x)/\mu(a\mid x)` (Munos, 2003)."""
        return _coverage.concentrability(self.log_policies, self.prompt_probs, self.mu)

    # ------------------------------------------------------------------ exact errors
    def _kl_table(self, reverse: bool) -> torch.Tensor:
        out = torch.empty(self.n_policies, dtype=torch.float64, device=self.device)
        star = self.log_pi_star

        def rows_kl(rows: slice) -> torch.Tensor:
            chunk = self.log_policies[rows]
            per_prompt = kl(chunk, star) if reverse else kl(star, chunk)
            # 0 * inf = 0: a prompt of probability 0 contributes nothing, even with an overflowed KL
            per_prompt = torch.where(self.prompt_probs > 0, per_prompt, torch.zeros_like(per_prompt))
            return per_prompt @ self.prompt_probs

        return _distributed.table_over_rows(out, _CHUNK, rows_kl)

    @functools.cached_property
    def _cache_forward_kl(self) -> torch.Tensor:
        return self._kl_table(reverse=False)

    @functools.cached_property
    def _cache_reverse_kl(self) -> torch.Tensor:
        return self._kl_table(reverse=True)

    def forward_kl_table(self) -> np.ndarray:
        r""":math:`\mathbb E_{x\sim\mathcal D}\mathrm{KL}(\pi^*(x)\|\pi_k(x))` for every policy, ``(K,)``."""
        return self._cache_forward_kl.cpu().numpy()

    def reverse_kl_table(self) -> np.ndarray:
        r""":math:`\mathbb E_{x\sim\mathcal D}\mathrm{KL}(\pi_k(x)\|\pi^*(x))` for every policy, ``(K,)``."""
        return self._cache_reverse_kl.cpu().numpy()

    def _gather(self, table: np.ndarray, index) -> np.ndarray | float:
        idx = np.asarray(index)
        if not np.issubdtype(idx.dtype, np.integer):
            raise ValueError(f"index: expected integer policy indices, got dtype {idx.dtype}")
        if idx.size and (idx.min() < 0 or idx.max() >= self.n_policies):
            bad = idx[(idx < 0) | (idx >= self.n_policies)].flat[0]
            raise ValueError(f"index: expected policy indices in [0, {self.n_policies}), got {int(bad)}")
        out = table[idx]
        return float(out) if np.ndim(out) == 0 else out

    def forward_kl(self, index: int | Sequence[int] | np.ndarray) -> np.ndarray | float:
        r"""Exact :math:`\mathbb E_{x\sim\mathcal D}\mathrm{KL}(\pi^*(x)\|\pi_{\mathrm{index}}(x))`, vectorised over indices.

        The left-hand side of Theorems 4 and 6.
        """
        return self._gather(self.forward_kl_table(), index)

    def reverse_kl(self, index: int | Sequence[int] | np.ndarray) -> np.ndarray | float:
        r"""Exact :math:`\mathbb E_{x\sim\mathcal D}\mathrm{KL}(\pi_{\mathrm{index}}(x)\|\pi^*(x))`; the left-hand side of Theorem 7."""
        return self._gather(self.reverse_kl_table(), index)

    # ------------------------------------------------------------------ constructors
    @classmethod
    def random(
        cls,
        n_prompts: int = 3,
        n_responses: int = 4,
        n_policies: int = 50,
        gamma: float = 1.0,
        *,
        spread: float = 1.0,
        n_rewards: int = 0,
        reference: bool = True,
        mu: str = "random",
        seed: int = 0,
        device: str | torch.device = "cpu",
    ) -> ToyProblem:
        r"""A random finite class: :math:`\pi^*` plus ``n_policies - 1`` perturbations of it.

        Logits of :math:`\pi^*` are standard normal; each other policy adds ``spread`` times fresh
        normal noise to them, so a small class has a positive KL gap to :math:`\pi^*`. The index of
        :math:`\pi^*` is random. With ``n_rewards > 0``, the reward class is
        :math:`R_m = \gamma\ln\pi_{k_m} + c_m(x)` for ``n_rewards`` distinct policies
        :math:`k_0 = \mathrm{star}, k_1, \dots` and arbitrary per-prompt shifts :math:`c_m(x)`, so
        :math:`\mathcal P_\gamma(\mathcal R)\subseteq\Pi` (Assumption 5) holds exactly; the indices
        :math:`k_m` are in ``meta["reward_policy_index"]``. ``mu`` is ``"random"`` (Dirichlet(2))
        or ``"uniform"``; the reference (if asked for) is a random full-support policy.
        """
        n_prompts = check_count("n_prompts", n_prompts)
        n_responses = check_count("n_responses", n_responses)
        n_policies = check_count("n_policies", n_policies)
        check_positive("spread", spread, allow_zero=True)
        device = check_device(device)
        if n_rewards < 0 or n_rewards > n_policies:
            raise ValueError(f"n_rewards: expected an integer in [0, n_policies = {n_policies}], got {n_rewards!r}")
        rng = np.random.default_rng(seed)
        prompt_probs = rng.dirichlet(np.full(n_prompts, 5.0))
        mu_arr = cls._make_mu(mu, rng, n_prompts, n_responses)
        star_logits = rng.standard_normal((n_prompts, n_responses))
        logits = star_logits + spread * rng.standard_normal((n_policies, n_prompts, n_responses))
        star = int(rng.integers(n_policies))
        logits[star] = star_logits
        log_policies = torch.log_softmax(torch.as_tensor(logits), -1)
        rewards, reward_index = None, []
        if n_rewards:
            others = np.setdiff1d(np.arange(n_policies), [star])
            reward_index = [star, *rng.choice(others, size=n_rewards - 1, replace=False).tolist()]
            shifts = torch.as_tensor(rng.standard_normal((n_rewards, n_prompts, 1)))
            rewards = gamma * log_policies[reward_index] + shifts
        ref = torch.log_softmax(torch.as_tensor(rng.standard_normal((n_prompts, n_responses))), -1) if reference else None
        meta = {"kind": "random", "spread": spread, "seed": seed, "reward_policy_index": reward_index, "mu": mu}
        return cls(prompt_probs, mu_arr, log_policies, star, gamma,
                   rewards=rewards, reference=ref, device=device, log_space=True, meta=meta)

    @staticmethod
    def _grid_class(features: np.ndarray, thetas: np.ndarray, radius: float, resolution: float, stream: bool,
                    device) -> torch.Tensor | LogLinearClass:
        """The net's log-probabilities ``(K, X, A)``: materialised, or streamed chunk by chunk."""
        feat_t = torch.as_tensor(features, device=device)
        if stream:
            return LogLinearClass(feat_t, int(round(radius / resolution)), resolution)
        theta_t = torch.as_tensor(thetas, device=device)
        return torch.log_softmax(torch.einsum("kd,xad->kxa", theta_t, feat_t), -1)

    @staticmethod
    def _make_mu(mu, rng: np.random.Generator, n_prompts: int, n_responses: int) -> np.ndarray:
        if isinstance(mu, str):
            if mu == "uniform":
                return np.full((n_prompts, n_responses), 1.0 / n_responses)
            if mu == "random":
                return rng.dirichlet(np.full(n_responses, 2.0), size=n_prompts)
            raise ValueError(f"mu: expected 'uniform', 'random' or an (X, A) array, got {mu!r}")
        return np.asarray(mu, dtype=np.float64)

    @classmethod
    def loglinear_grid(
        cls,
        n_prompts: int = 4,
        n_responses: int = 5,
        dim: int = 2,
        resolution: float = 0.01,
        gamma: float = 0.5,
        *,
        radius: float = 1.0,
        reward_stride: int = 10,
        feature_scale: float = 1.0,
        mu: str | np.ndarray = "random",
        reference: bool = True,
        seed: int = 0,
        device: str | torch.device = "cpu",
        stream: bool = False,
    ) -> ToyProblem:
        r"""An :math:`\varepsilon`-net of a log-linear family, :math:`\pi_\theta(a\mid x)\propto\exp(\theta\cdot\phi(x,a))`.

        :math:`\theta` ranges over the grid :math:`\{-\rho, -\rho+h, \dots, \rho\}^d` with
        :math:`h` = ``resolution`` and :math:`\rho` = ``radius`` (so ``dim=2``, ``resolution=0.01``,
        ``radius=1`` gives :math:`201^2 = 40{,}401` policies). Features :math:`\phi(x,a)` are i.i.d.
        normal times ``feature_scale``. :math:`\theta^*` is a random point of the coarse sub-grid
        (every ``reward_stride``-th point) with :math:`\|\theta^*\|_\infty\le\rho/2`.

        The reward class is :math:`\mathcal R = \{\gamma\,\theta\cdot\phi : \theta \text{ on the coarse
        sub-grid}\}` (written as :math:`\gamma\ln\pi_\theta`, an equivalent shift), so
        :math:`\mathcal P_\gamma(\mathcal R)\subseteq\Pi` (Assumption 5) with
        :math:`|\mathcal R| \ll |\Pi|`. ``meta`` records ``thetas``, ``features``, ``theta_star`` and
        ``reward_policy_index`` for the asymptotic analysis (:mod:`finitepref.asymptotics`).

        ``stream=True``: the same problem as a :class:`finitepref.streamed.LogLinearClass`, rows computed
        when read (a :math:`10^7` net in a few GiB); ``meta["thetas"]`` is then omitted.
        """
        n_prompts, n_responses, dim, reward_stride = (check_count(name, value) for name, value in (
            ("n_prompts", n_prompts), ("n_responses", n_responses), ("dim", dim), ("reward_stride", reward_stride)))
        for name, value in (("resolution", resolution), ("radius", radius)):
            check_positive(name, value)
        check_positive("feature_scale", feature_scale, allow_zero=True)
        device = check_device(device)
        rng = np.random.default_rng(seed)
        features = feature_scale * rng.standard_normal((n_prompts, n_responses, dim))
        prompt_probs = rng.dirichlet(np.full(n_prompts, 5.0))
        mu_arr = cls._make_mu(mu, rng, n_prompts, n_responses)
        thetas, star, reward_index = cls._theta_grid(dim, resolution, radius, reward_stride, rng)

        log_policies = cls._grid_class(features, thetas, radius, resolution, stream, device)
        ref = None
        if reference:
            theta0 = 0.5 * rng.standard_normal(dim)
            ref = torch.log_softmax(torch.as_tensor(features @ theta0), -1)
        rewards = gamma * log_policies[torch.as_tensor(reward_index, device=device)]
        meta = {
            "kind": "loglinear_grid", "dim": dim, "resolution": resolution, "radius": radius,
            "reward_stride": reward_stride, "feature_scale": feature_scale, "seed": seed,
            "thetas": None if stream else thetas, "features": features, "theta_star": thetas[star],
            "reward_policy_index": reward_index.tolist(), "mu": mu if isinstance(mu, str) else "array",
        }
        return cls(prompt_probs, mu_arr, log_policies, star, gamma, rewards=rewards, reference=ref,
                   device=device, log_space=True, meta=meta)

    @staticmethod
    def _theta_grid(dim: int, resolution: float, radius: float, reward_stride: int,
                    rng: np.random.Generator) -> tuple[np.ndarray, int, np.ndarray]:
        """The grid of :meth:`loglinear_grid`: thetas ``(K, dim)``, the index of theta*, the coarse sub-grid."""
        ratio = radius / resolution
        if not np.isfinite(ratio) or ratio > 2e7:
            raise ValueError(f"resolution: expected radius / resolution <= 2e7, got {radius} / {resolution}")
        half = int(round(ratio))
        if half < 1:
            raise ValueError(f"resolution: expected a value smaller than radius ({radius}), got {resolution}")
        if (2 * half + 1) ** dim > 20_000_000:
            raise ValueError(f"resolution: expected a grid of at most 2e7 policies, got {(2 * half + 1) ** dim}")
        steps = np.arange(-half, half + 1)
        grid_steps = np.stack(np.meshgrid(*([steps] * dim), indexing="ij"), -1).reshape(-1, dim)
        coarse = np.all(np.mod(grid_steps, reward_stride) == 0, axis=1)
        inner = np.all(np.abs(grid_steps) <= half // 2, axis=1)
        candidates = np.flatnonzero(coarse & inner)
        if candidates.size == 0:
            candidates = np.flatnonzero(coarse)
        star = int(rng.choice(candidates))
        return grid_steps * resolution, star, np.flatnonzero(coarse)

    def describe(self) -> dict[str, Any]:
        """A JSON-serialisable summary (sizes, gamma, R, C_Pi, C_R) for results files."""
        out: dict[str, Any] = {
            "n_prompts": self.n_prompts, "n_responses": self.n_responses, "n_policies": self.n_policies,
            "n_rewards": self.n_rewards, "star": self.star, "gamma": self.gamma,
            "R": self.boundedness(), "C_pi": self.coverage(),
            "has_reference": self.log_reference is not None,
        }
        if self.rewards is not None:
            out["C_r"] = self.reward_coverage()
        out.update({k: v for k, v in self.meta.items() if isinstance(v, (int, float, str, bool))})
        return out

    def __repr__(self) -> str:
        return (f"ToyProblem(X={self.n_prompts}, A={self.n_responses}, |Pi|={self.n_policies}, "
                f"|R|={self.n_rewards}, gamma={self.gamma}, star={self.star})")

    # ------------------------------------------------------------------ single-policy coverage (issue 14)
    def single_policy_coverage(self) -> _coverage.SinglePolicyCoverage:
        r"""Single-policy concentrability of :math:`\pi^*` under :math:`\mu` (a property of :math:`\mathcal D, \mu, \pi^*`).

        :math:`\ell_\infty` form :math:`\max_{x,a}\pi^*(a\mid x)/\mu(a\mid x)`, :math:`\chi^2` form
        :math:`\mathbb E_{x\sim\mathcal D}\mathbb E_{\pi^*}[\pi^*/\mu] = 1 + \mathbb E_x\chi^2(\pi^*\|\mu)`, and their
        pairwise versions; definitions and citations in :class:`finitepref.coverage.SinglePolicyCoverage`.
        ``inf`` where :math:`\mu(a\mid x) = 0 < \pi^*(a\mid x)` on a prompt of positive probability.
        """
        return _coverage.single_policy_coverage(self.log_pi_star, self.prompt_probs, self.mu)
