"""The pilot on held-out seeds: each algorithm's learning rate (interior to its grid) and its budget.

For each algorithm, every learning rate of the grid (``lr_factors`` times the stored centre) trains for
``max_steps`` on each pilot seed and is evaluated every ``eval_every`` steps. Among the rates whose mean
curves of KL(pi*||pi-hat) and win-rate both converged (:func:`training.budget_from_curves`; else among
those whose win-rate converged; else among all), the one with the lowest mean final KL(pi*||pi-hat) is
chosen; at an edge of the grid the grid is extended on that side by ``lr_extend`` (at most
``lr_extensions`` times). A choice still at the lower edge while KL keeps falling with the rate is
reported as a finding: the algorithm does best by not moving from pi0. The budget is the first step at
which the chosen rate's curves have converged (:func:`training.budget_from_curves`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from .config import NO_RM, Config, needs_reward_model
from .training import (
    Replicate,
    budget_from_curves,
    build_reward_models,
    converged_at,
    make_replicate,
    train_curve,
)
from .world import World


def _curves(world: World, cfg: Config, reps: list[tuple[Replicate, dict]], algo: str, lr: float) -> list[dict]:
    rows = []
    kind = cfg.pilot_reward_model if needs_reward_model(algo) else NO_RM
    at = list(range(cfg.eval_every, cfg.max_steps + 1, cfg.eval_every))
    for rep, rms in reps:
        for r in train_curve(world, rep, algo, lr, cfg.max_steps, at, rms.get(kind)):
            rows.append({"algorithm": algo, "reward_model": kind, "lr": lr, "seed": rep.label, **r})
    return rows


def assess(cfg: Config, df: pd.DataFrame) -> pd.DataFrame:
    """Per learning rate of a sweep: the mean KL(pi*||pi) at ``max_steps`` and :func:`budget_from_curves`."""
    rows = []
    for lr, g in df.groupby("lr"):
        T, met, change, spread = budget_from_curves(cfg, g)
        rows.append({"lr": float(lr), "final": float(g[g["step"] == cfg.max_steps]["kl_star_pi"].mean()),
                     "budget": T, "converged": met, "change": change, "spread": spread,
                     "win_converged": converged_at(cfg, g, "win_rate_exact")[0] is not None})
    return pd.DataFrame(rows).set_index("lr").sort_index()


def choose_lr(table: pd.DataFrame) -> tuple[float, str]:
    """The rate with the lowest mean final KL among the rates whose curves converged in KL(pi*||pi) and
    win-rate (else among those converged in win-rate, else among all: an algorithm at its lowest KL on
    the way to a biased limit is not converged training), and where it lies in the grid: ``interior``,
    ``lower edge`` or ``upper edge``."""
    pool = table
    for flag in ("win_converged", "converged"):
        pool = pool[pool[flag]] if pool[flag].any() else pool
    best = float(pool["final"].idxmin())
    grid = list(table.index)
    where = "interior" if grid[0] < best < grid[-1] else ("lower edge" if best == grid[0] else "upper edge")
    return best, where


def sweep_algorithm(world: World, cfg: Config, reps, algo: str, bar=None) -> tuple[list[dict], dict]:
    """The extended learning-rate sweep and the budget of one algorithm."""
    grid = [float(cfg.lrs.get(algo)) * f for f in cfg.lr_factors]
    rows: list[dict] = []
    done: set[float] = set()
    for extension in range(cfg.lr_extensions + 1):
        for lr in grid:
            if lr not in done:
                rows += _curves(world, cfg, reps, algo, lr)
                done.add(lr)
                if bar is not None:
                    bar.update(1)
        table = assess(cfg, pd.DataFrame(rows))
        lr, where = choose_lr(table)
        if where == "interior" or extension == cfg.lr_extensions:
            break
        grid = [min(done) / cfg.lr_extend] if where == "lower edge" else [max(done) * cfg.lr_extend]
    chosen = table.loc[lr]
    not_moving = where == "lower edge" and bool(np.all(np.diff(table["final"].to_numpy()) > 0))
    return rows, {"lr": lr, "where": where, "grid": sorted(done), "extensions": extension,
                  "budget": int(chosen["budget"]), "pilot_converged": bool(chosen["converged"]),
                  "pilot_change": float(chosen["change"]), "pilot_spread": float(chosen["spread"]),
                  "converged_rates": int(table["converged"].sum()), "best_by_not_moving": not_moving}


def run_pilot(world: World, cfg: Config, root: Path, bar=None) -> tuple[dict, dict, pd.DataFrame, dict]:
    """Learning rates, budgets, the sweep's curves (every rate, step and pilot seed) and the per-algorithm choices."""
    seqs = np.random.SeedSequence(cfg.seed + cfg.pilot_seed_offset).spawn(cfg.pilot_seeds)
    reps = []
    for s, ss in enumerate(seqs):
        rep = make_replicate(world, cfg.pilot_n, ss, root / "pilot", cfg.pilot_seed_offset + s)
        kinds = [cfg.pilot_reward_model] if any(needs_reward_model(a) for a in cfg.algorithms) else []
        reps.append((rep, build_reward_models(world, rep, kinds)))
    rows, choice = [], {}
    for algo in cfg.algorithms:
        if bar is not None:
            bar.set_postfix_str(f"pilot {algo} n={cfg.pilot_n}")
        r, choice[algo] = sweep_algorithm(world, cfg, reps, algo, bar)
        rows += r
    lrs = {a: c["lr"] for a, c in choice.items()}
    budgets = {a: c["budget"] for a, c in choice.items()}
    return lrs, budgets, pd.DataFrame(rows), choice
