"""Paired statistics of the oracle-LM benchmark: differences over seeds, slopes, the convergence check.

Within a seed every algorithm reads the same preference data and reward models, so a claim "A beats
B" is the mean over seeds of the per-seed difference A - B, with a 95% t-interval over seeds. Slopes
of log mean KL(pi*||pi-hat) on log n get a 95% percentile bootstrap interval that resamples seeds (the
same seeds for both algorithms of a paired slope difference).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

from .config import Config


def t_interval(values: np.ndarray, level: float = 0.95) -> tuple[float, float | None, float | None]:
    """Mean and its t-interval over seeds (None, None with fewer than two values)."""
    values = np.asarray(values, dtype=np.float64)
    mean = float(values.mean()) if len(values) else float("nan")
    if len(values) < 2:
        return mean, None, None
    half = float(stats.t.ppf(0.5 + level / 2, len(values) - 1) * values.std(ddof=1) / np.sqrt(len(values)))
    return mean, mean - half, mean + half


def _cell(table: pd.DataFrame, algo: str, kind: str, n: int) -> pd.Series:
    return table[(table["algorithm"] == algo) & (table["reward_model"] == kind) & (table["n"] == n)].set_index("seed")


def paired(table: pd.DataFrame, a: tuple[str, str], b: tuple[str, str], metric: str, n: int):
    """Mean over seeds of metric(a) - metric(b) at n, its t-interval and the number of seeds; a, b: (algorithm, rm)."""
    x, y = _cell(table, *a, n)[metric], _cell(table, *b, n)[metric]
    d = (x - y).dropna()
    return (*t_interval(d.to_numpy()), len(d))


def _errors(table: pd.DataFrame, algo: str, kind: str, ns: np.ndarray) -> np.ndarray:
    g = table[(table["algorithm"] == algo) & (table["reward_model"] == kind)]
    return np.stack([g[g["n"] == n].sort_values("seed")["kl_star_pi"].to_numpy() for n in ns])


def _slope(ns: np.ndarray, means: np.ndarray) -> np.ndarray:
    """OLS slopes of log means on log n; means (..., len(ns))."""
    x = np.log(ns) - np.log(ns).mean()
    y = np.log(means)
    return (y - y.mean(-1, keepdims=True)) @ x / (x @ x)


def slopes(table: pd.DataFrame, a: tuple[str, str], b: tuple[str, str] | None, rng: np.random.Generator,
           resamples: int = 2000) -> dict:
    """Slope of log mean KL(pi*||pi) on log n for ``a`` (and ``b`` and a - b), with seed-bootstrap CIs."""
    ns = np.array(sorted(table["n"].unique()), dtype=np.float64)
    out: dict = {}
    if len(ns) < 2:
        return out
    ea = _errors(table, *a, ns)
    eb = _errors(table, *b, ns) if b is not None else ea
    S = ea.shape[1]
    idx = rng.integers(S, size=(resamples, len(ns), S))
    ba = _slope(ns, np.take_along_axis(ea[None], idx, 2).mean(-1))
    bb = _slope(ns, np.take_along_axis(eb[None], idx, 2).mean(-1))
    for name, point, boot in (("a", _slope(ns, ea.mean(1)), ba), ("b", _slope(ns, eb.mean(1)), bb),
                              ("diff", _slope(ns, ea.mean(1)) - _slope(ns, eb.mean(1)), ba - bb)):
        lo, hi = np.percentile(boot, [2.5, 97.5])
        out[name] = (float(point), float(lo), float(hi))
    return out


METRICS = {"kl_star_pi": "converge_floor", "win_rate_exact": "converge_floor_win", "kl_pi_pi0": "converge_floor"}
"""Metrics whose convergence is checked, each with the Config field of its absolute floor. A verdict reads
one metric (claims 1-3: the win-rate, claim 3's second part KL(pi||pi0), claim 4 KL(pi*||pi)) and excludes
only the cells where that metric has not converged: an RLHF policy whose win-rate has settled while it
keeps sharpening (KL(pi*||pi) still rising) can be compared in win-rate, not in KL."""


def threshold(cfg: Config, spread: float, metric: str = "kl_star_pi") -> float:
    """The largest change of ``metric`` over the last ~20% of a budget that counts as converged:
    ``max(converge_fraction x spread, floor)`` (spread: the across-seed std at the budget; floor:
    ``converge_floor`` for the KLs, ``converge_floor_win`` for the win-rate)."""
    return max(cfg.converge_fraction * spread, getattr(cfg, METRICS[metric]))


def convergence_check(table: pd.DataFrame, cfg: Config) -> pd.DataFrame:
    """Per (algorithm, reward model, n, metric): the drift of the seed-mean metric over the last ~20% of the budget,
    |mean over seeds of (value at T - value at T - window)|, against :func:`threshold` of the across-seed std at
    T; ``converged`` when within. This is the pilot's criterion (:func:`training.budget_from_curves`) on the main
    seeds: the seed-mean curve's change, so that sampling noise that averages out over seeds is not taken for
    drift (``abs_change``, the mean per-seed |change|, is reported beside it)."""
    rows = []
    for (algo, kind, n), g in table.groupby(["algorithm", "reward_model", "n"], sort=False):
        for metric in METRICS:
            delta = g[metric] - g[f"{metric}_early"]
            change = float(abs(delta.mean()))
            spread = float(g[metric].std(ddof=1)) if len(g) > 1 else 0.0
            limit = threshold(cfg, spread, metric)
            rows.append({"algorithm": algo, "reward_model": kind, "n": int(n), "metric": metric,
                         "steps": int(g["steps"].iloc[0]), "change": change, "abs_change": float(delta.abs().mean()),
                         "spread": spread, "threshold": limit, "converged": bool(change <= limit)})
    return pd.DataFrame(rows)
