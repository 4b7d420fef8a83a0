"""Statistics shared by the simulation scripts (and, re-exported, their config and output plumbing).

The command line, config base classes, atomic output writing and the one ``main`` flow live in
:mod:`simulations._runner`; :func:`parse_config`, :func:`write_outputs`, :func:`versions` and
:func:`to_jsonable` are re-exported here under their old names.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import stats

from simulations._runner import parse_config, to_jsonable, versions, write_outputs

__all__ = [
    "parse_config", "versions", "write_outputs", "bootstrap_mean_ci", "loglog_slope", "clopper_pearson_upper",
    "log_grid", "to_jsonable",
]


# ---------------------------------------------------------------------- statistics
def log_grid(n_min: float, n_max: float, points: int) -> np.ndarray:
    """``points`` integers log-spaced from ``n_min`` to ``n_max`` (inclusive, deduplicated)."""
    return np.unique(np.round(np.logspace(np.log10(n_min), np.log10(n_max), points)).astype(np.int64))


def bootstrap_mean_ci(values: np.ndarray, rng: np.random.Generator, level: float = 0.95,
                      resamples: int = 2000) -> tuple[float, float]:
    """Percentile bootstrap CI of the mean (``scipy.stats.bootstrap``); a constant sample gives a point."""
    values = np.asarray(values, dtype=np.float64)
    if np.all(values == values[0]):
        return float(values[0]), float(values[0])
    res = stats.bootstrap((values,), np.mean, confidence_level=level, n_resamples=resamples,
                          method="percentile", vectorized=True, random_state=rng)
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


def loglog_slope(n: np.ndarray, errors: np.ndarray, rng: np.random.Generator, resamples: int = 1000,
                 level: float = 0.95) -> dict[str, Any]:
    """OLS slope of log E[err] on log n, with a CI from resampling trials at each n.

    ``errors`` has shape ``(len(n), trials)``. Returns ``slope``, ``ci_low``, ``ci_high`` (None
    with a ``reason`` when some mean is 0, i.e. the estimator recovered pi* exactly in every trial).
    """
    n = np.asarray(n, dtype=np.float64)
    means = errors.mean(axis=1)
    if len(n) < 2:
        return {"slope": None, "ci_low": None, "ci_high": None, "reason": "fewer than two n in the window"}
    if np.any(means <= 0):
        return {"slope": None, "ci_low": None, "ci_high": None,
                "reason": "E[KL] = 0 at some n of the window (exact recovery: the finite-class regime)"}
    x = np.log(n)
    slope = float(np.polyfit(x, np.log(means), 1)[0])
    trials = errors.shape[1]
    boots = np.empty(resamples)
    for b in range(resamples):
        idx = rng.integers(trials, size=(len(n), trials))
        m = np.take_along_axis(errors, idx, axis=1).mean(axis=1)
        boots[b] = np.polyfit(x, np.log(np.maximum(m, np.finfo(float).tiny)), 1)[0]
    alpha = (1 - level) / 2
    return {"slope": slope, "ci_low": float(np.quantile(boots, alpha)), "ci_high": float(np.quantile(boots, 1 - alpha))}


def clopper_pearson_upper(k: int, trials: int, level: float = 0.95) -> float:
    """Upper limit of the exact (Clopper-Pearson) two-sided ``level`` CI for a binomial proportion."""
    return float(stats.binomtest(int(k), int(trials)).proportion_ci(confidence_level=level, method="exact").high)


# ---------------------------------------------------------------------- estimators (from finitepref.registry)
def check_names(field: str, given, known) -> None:
    """``given`` must be a non-empty subset of ``known``; raise ``ValueError('field: ...')`` if not."""
    unknown = sorted(set(given) - set(known))
    if unknown or not given:
        raise ValueError(f"{field}: unknown {unknown}; choose from {', '.join(known)}" if unknown
                         else f"{field}: choose at least one of {', '.join(known)}")


def fit_estimators(prob, data, names, params: dict[str, dict[str, float]] | None = None,
                   aliases: dict[str, str] | None = None) -> dict[str, np.ndarray]:
    """Chosen policy index per trial for every name, by :mod:`finitepref.registry`.

    One reward model (eq. 9) is fitted when some estimator needs it and shared. ``params`` gives
    each name's hyperparameters (``{"dpo": {"beta": 0.5}}``); ``aliases`` maps a name used as a
    column value to its registry name (``{"pmle_kl": "pmle"}``).
    """
    from finitepref import estimators, registry

    entries = {name: registry.get((aliases or {}).get(name, name)) for name in names}
    reward = estimators.fit_reward(prob, data) if any(e.needs_reward for e in entries.values()) else None
    return {name: e.fit(prob, data, reward if e.needs_reward else None, **(params or {}).get(name, {}))
            for name, e in entries.items()}


def clopper_pearson(k: int, trials: int, level: float = 0.95) -> tuple[float, float]:
    """The exact (Clopper-Pearson) two-sided ``level`` CI ``(low, high)`` for ``k`` successes in ``trials``."""
    ci = stats.binomtest(int(k), int(trials)).proportion_ci(confidence_level=level, method="exact")
    return float(ci.low), float(ci.high)
