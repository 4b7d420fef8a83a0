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


def convergence_check(table: pd.DataFrame, cfg: Config) -> pd.DataFrame:
    """Per (algorithm, reward model, n): mean |change of KL(pi*||pi) over the last ~20% of the budget| over
    seeds against ``converge_fraction`` x the across-seed std of the final KL; ``converged`` when within."""
    rows = []
    for (algo, kind, n), g in table.groupby(["algorithm", "reward_model", "n"], sort=False):
        change = float((g["kl_star_pi"] - g["kl_star_pi_early"]).abs().mean())
        spread = float(g["kl_star_pi"].std(ddof=1)) if len(g) > 1 else float("nan")
        rows.append({"algorithm": algo, "reward_model": kind, "n": int(n), "steps": int(g["steps"].iloc[0]),
                     "change": change, "spread": spread, "threshold": cfg.converge_fraction * spread,
                     "converged": bool(change <= cfg.converge_fraction * spread)})
    return pd.DataFrame(rows)
