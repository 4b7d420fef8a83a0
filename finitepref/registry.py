r"""The one home of every toy-core estimator: what it is called, what it takes, how it is judged.

Each :class:`Estimator` record names an exact-argmin function of :mod:`finitepref.estimators`,
its label (one wording, with the paper's equation), the divergence in which the paper measures its
error, and the arguments it takes. Simulations, notebooks and tests take their estimator lists,
labels and error tables from here; no script compares estimator names to decide what to do.

Adding an estimator: its loss in :mod:`finitepref.losses`; its table builder, exact-argmin function
and record (the ``@registered(...)`` decorator, which calls :func:`register`) in
:mod:`finitepref.estimators`; its brute-force reference in :mod:`finitepref._brute`; its tests.
See ``docs/core.md``.

Population limits (``population_limit``) are the minimisers of the population objective over all
policies when the fitted reward is the true one, :math:`\hat R = R^* = \gamma\ln\pi^*` (eq. 2; any
per-prompt shift cancels): :math:`\pi^*` for PMLE, distillation and reverse KL at ``beta = 0``;
:math:`\pi_0^{\beta/(\beta+\gamma)}\pi^{*\gamma/(\beta+\gamma)}` for reverse KL at ``beta > 0`` (Section 5);
:math:`\pi_0\,\pi^{*\gamma/\beta}` for DPO (Rafailov et al., 2023) and for RLHF (the Gibbs policy
:math:`\pi_0 e^{R^*/\beta}`); :math:`\pi_0\,\pi^{*\eta\gamma}` for REBEL (:math:`\pi_0 e^{\eta R^*}`). Every
limit is normalised per prompt and given as log-probabilities ``(X, A)``. They assume :math:`\mu` has full
support (otherwise pair-based objectives do not identify the policy off the support).

Examples
--------
>>> from finitepref.registry import ESTIMATORS
>>> ESTIMATORS["pmle"].label
'PMLE (eq. 4)'
>>> ESTIMATORS["reverse_kl"].divergence
'reverse'
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from .preference import PreferenceData
from .problem import ToyProblem

__all__ = ["Estimator", "ESTIMATORS", "register", "get", "names", "fit", "error_table"]

Divergence = Literal["forward", "reverse"]


@dataclass(frozen=True)
class Estimator:
    r"""One estimator of the toy core.

    Attributes
    ----------
    name : str
        Registry key and column value in every results file (``"pmle"``).
    label : str
        Human label with the paper's equation, used in every figure and table (``"PMLE (eq. 4)"``).
    function : callable
        The exact-argmin function ``function(prob, data, [reward_index,] **params) -> (trials,) int64``.
    divergence : {"forward", "reverse"}
        The error the paper bounds: ``"forward"`` is :math:`\mathbb E_x\mathrm{KL}(\pi^*\|\hat\pi)`
        (Theorems 4, 6), ``"reverse"`` is :math:`\mathbb E_x\mathrm{KL}(\hat\pi\|\pi^*)` (Theorem 7).
    params : tuple of str
        The hyperparameters the function takes by keyword (``"beta"``, ``"eta"``, ``"tau"``).
    needs_reward : bool
        Whether the function takes a fitted reward (``reward_index``, eq. 9) as its third argument.
    learns_pi_star : bool
        Whether the population minimiser is :math:`\pi^*` (the paper's distribution-learning
        estimators) or a biased limit (the baselines, e.g. DPO's :math:`\pi_0\,\pi^{*\gamma/\beta}`).
    equation : str
        The paper's equation number(s), e.g. ``"4"`` or ``"6"``.
    population_limit : callable, optional
        ``population_limit(prob, **params) -> (X, A)`` log-probabilities of the estimator's
        population minimiser over all policies (not only the class), where a closed form is known
        (with the true reward as the fitted one; see the module docstring). Raises ``ValueError``
        for parameters without a known closed form (PMLE and distillation at ``beta > 0``).
    reference : callable, optional
        Brute-force reference of the empirical objective, ``reference(prob, samples, [reward_index,]
        **params) -> (K,)``, evaluated sample by sample (:mod:`finitepref._brute`); the tests check the
        estimator's choice attains its minimum.
    test_params : tuple of dict
        Parameter settings the registry-parametrised tests run (default: each parameter at 0 and at
        0.4; an estimator whose parameter must be positive, like DPO's beta, lists its own).
    """

    name: str
    label: str
    function: Callable[..., np.ndarray]
    divergence: Divergence
    params: tuple[str, ...] = ()
    needs_reward: bool = False
    learns_pi_star: bool = True
    equation: str = ""
    population_limit: Callable[..., Any] | None = field(default=None, compare=False)
    reference: Callable[..., np.ndarray] | None = field(default=None, compare=False)
    test_params: tuple[dict[str, float], ...] = field(default=(), compare=False)

    def __post_init__(self) -> None:
        if not self.test_params:  # every parameter at 0 (unregularised) and at a moderate value
            object.__setattr__(self, "test_params", ({p: 0.0 for p in self.params}, {p: 0.4 for p in self.params}))

    def objective(self, prob: ToyProblem, samples, reward_index=None, **params) -> np.ndarray:
        """The brute-force empirical objective of every policy for an explicit sample list, ``(K,)``."""
        if self.reference is None:
            raise ValueError(f"{self.name}: expected a registered brute-force reference, got None")
        if self.needs_reward:
            return self.reference(prob, samples, reward_index, **params)
        return self.reference(prob, samples, **params)

    def fit(self, prob: ToyProblem, data: PreferenceData, reward_index=None, **params) -> np.ndarray:
        """Call the estimator with the arguments it takes (extra ``params`` it does not take are an error)."""
        unknown = set(params) - set(self.params)
        if unknown:
            raise TypeError(f"{self.name}: does not take {sorted(unknown)}; it takes {list(self.params)}")
        if self.needs_reward:
            if reward_index is None:
                raise ValueError(f"reward_index: {self.name} expected a fitted reward index (e.g. from "
                                 "estimators.fit_reward), got None")
            return self.function(prob, data, reward_index, **params)
        return self.function(prob, data, **params)

    def error_table(self, prob: ToyProblem) -> np.ndarray:
        """Exact error of every policy of the class in this estimator's divergence, ``(K,)``."""
        return prob.reverse_kl_table() if self.divergence == "reverse" else prob.forward_kl_table()


ESTIMATORS: dict[str, Estimator] = {}


def register(entry: Estimator) -> Estimator:
    """Add ``entry`` to :data:`ESTIMATORS` (names are unique)."""
    if entry.name in ESTIMATORS:
        raise ValueError(f"name: expected a new estimator name, got {entry.name!r} (already registered)")
    ESTIMATORS[entry.name] = entry
    return entry


def get(name: str) -> Estimator:
    """The record of ``name``, with a clear error listing the known names."""
    try:
        return ESTIMATORS[name]
    except KeyError:
        raise ValueError(f"name: expected one of {', '.join(ESTIMATORS)}, got {name!r}") from None


def names(*, learns_pi_star: bool | None = None) -> tuple[str, ...]:
    """Registered names in registration order, optionally only the (non-)distribution-learning ones."""
    return tuple(n for n, e in ESTIMATORS.items() if learns_pi_star is None or e.learns_pi_star == learns_pi_star)


def fit(name: str, prob: ToyProblem, data: PreferenceData, reward_index=None, **params) -> np.ndarray:
    """``get(name).fit(prob, data, reward_index, **params)``."""
    return get(name).fit(prob, data, reward_index, **params)


def error_table(name: str, prob: ToyProblem) -> np.ndarray:
    """``get(name).error_table(prob)``."""
    return get(name).error_table(prob)


# The records are declared beside their functions (``@registered`` in :mod:`finitepref.estimators`), so an
# estimator's table, argmin and record live in one file; importing that module fills ESTIMATORS.
from . import estimators as _estimators  # noqa: E402, F401
