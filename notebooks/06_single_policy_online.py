# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 6. Single-policy coverage and online sampling
#
# **The question.** The paper's bounds (Theorems 4, 6) pay the *class* coverage $C_\Pi$ of
# Definition 3, a worst case over every policy of the class. Offline RL theory often needs only
# the *single-policy* coefficient of $\pi^*$ under $\mu$, e.g. the $\chi^2$ form
# $\mathbb E_{x}\mathbb E_{a\sim\pi^*}[\pi^*(a\mid x)/\mu(a\mid x)] = 1 + \mathbb E_x\chi^2(\pi^*\|\mu)$
# (`prob.single_policy_coverage()`, which also gives the $\ell_\infty$ and pairwise forms). Which one
# predicts the error of the estimators? And does sampling *online*, from the current estimate
# instead of $\mu$ (`finitepref.online`), remove the dependence on $\mu$?
#
# We use the instance of `python -m simulations.coverage_single`: a centred log-linear net and a
# family of data policies $\mu_{a,b}\propto\pi^{*a}e^{bg}$ along which the two coefficients move apart.

# %%
import os

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from IPython.display import display

from finitepref import registry
from finitepref.online import online
from simulations import _families, common, coverage_single, style
from simulations.verdicts import format_verdicts, sign_verdict

FAST = os.environ.get("FAST", "1") != "0"
SEED = 0
TRIALS = 100 if FAST else 1000
N = 300
cfg = coverage_single.Config(seed=SEED, trials=TRIALS, grid=9 if FAST else 21, points=3 if FAST else 6,
                             bootstrap=200 if FAST else 1000)
prob, direction = coverage_single.make_problem(cfg)
print(f"FAST = {FAST}: {prob}; trials = {TRIALS}, n = {N}")

# %% [markdown]
# ## The two coefficients over the family of data policies
#
# Each grey point is one $\mu_{a,b}$. They are correlated (a $\mu$ that misses $\pi^*$'s mass is bad
# for both), but not functions of each other: at a fixed $C_\Pi$ the single-policy coefficient
# ranges over a factor of several, and the other way round.

# %%
grid = coverage_single.coefficient_grid(prob, direction, cfg)
paths = {path: coverage_single.choose_path(grid, *coefs, cfg) for path, coefs in coverage_single.PATHS.items()}
fig, ax = plt.subplots(figsize=(4.5, 3.6))
ax.scatter(grid.C_pi, grid.C_single, s=8, color="0.7", label=r"$\mu_{a,b}$")
for (path, t), m in zip(paths.items(), ("o", "s"), strict=True):
    ax.plot(t.C_pi, t.C_single, marker=m, color="k", mfc="white", label=path.replace("_", " "))
ax.set(xscale="log", yscale="log", xlabel=r"$C_\Pi$ (Definition 3)", ylabel=r"$\mathbb{E}_{\pi^*}[\pi^*/\mu]$")
ax.legend(fontsize=8)
plt.show()
display_cols = ["a", "b", "C_pi", "C_single", "C_single_linf"]
display(pd.concat({k: v[display_cols] for k, v in paths.items()}))

# %% [markdown]
# ## Which coefficient predicts the error?
#
# At each chosen $\mu$ we draw `TRIALS` data sets of $n$ pairs and compute, exactly, the KL of PMLE,
# preference distillation, reverse KL, chi-PO and online PMLE (3 rounds: round 1 from $\mu$, then from
# the current estimate). Along each path we fit the log-log slope of E[KL] on the coefficient that
# varies, with a bootstrap CI over trials.

# %%
cfg_n = coverage_single.Config(**{**cfg.__dict__, "n": N})
seeds = iter(np.random.SeedSequence(SEED).spawn(sum(len(p) for p in paths.values())))
raw, rows = {}, []
for path, points in paths.items():
    for _, point in points.iterrows():
        p = _families.with_mu(prob, coverage_single.mu_family(prob, direction, point.a, point.b))
        for name, err in coverage_single.errors_at(p, cfg_n, next(seeds)).items():
            raw.setdefault((path, name), []).append(err)
            rows.append({"path": path, "C_pi": point.C_pi, "C_single": point.C_single, "estimator": name,
                         "E[KL]": err.mean()})
table = pd.DataFrame(rows)
rng = np.random.default_rng(SEED + 1)
slopes = {(path, name): common.loglog_slope(table[(table.path == path) & (table.estimator == name)][varies].to_numpy(),
                                            np.stack(raw[(path, name)]), rng, resamples=cfg.bootstrap)
          for path, (varies, _) in coverage_single.PATHS.items() for name in coverage_single.ESTIMATORS}
display(pd.DataFrame({k: {"slope": v["slope"], "ci low": v["ci_low"], "ci high": v["ci_high"]} for k, v in slopes.items()}).T)

# %%
fig, axes = plt.subplots(1, 2, figsize=(style.WIDTH, 3.0), layout="constrained")
for ax, (path, (varies, held)) in zip(axes, coverage_single.PATHS.items(), strict=True):
    for name in coverage_single.ESTIMATORS:
        t = table[(table.path == path) & (table.estimator == name)]
        ax.plot(t[varies], t["E[KL]"], marker=style.marker(name), color=style.color(name),
                ls=":" if name == "online_pmle" else "-", label=coverage_single._label(name))
    ax.set(xscale="log", yscale="log", xlabel=varies, ylabel=f"E[KL] at n = {N}", title=f"{held} held fixed")
style.finish(fig, ncol=5)
plt.show()

# %% [markdown]
# **Verdict**, computed by the cell below from the slopes above (the sentence is built from the live
# numbers; nothing in it is typed by hand).

# %%
stated = [sign_verdict(f"{coverage_single._label(name)}: E[KL] grows with {varies} at fixed {held}", s["slope"],
                       None if s["slope"] is None else (s["ci_low"], s["ci_high"]))
          for (path, name), s in slopes.items() for varies, held in [coverage_single.PATHS[path]]]
print(format_verdicts(stated))
summary = {"n": N, "paths": {path: {"slopes": {name: slopes[(path, name)] for name in coverage_single.ESTIMATORS}}
                             for path in coverage_single.PATHS}}
print(coverage_single.verdict_sentence(summary))

# %% [markdown]
# ## Offline against online at equal n
#
# On the $\mu$ with the worst single-policy coverage of the grid, offline PMLE (all $n$ pairs from
# $\mu$) against online PMLE with 1 to 4 rounds (same total $n$).

# %%
worst = grid.loc[grid.C_single.idxmax()]
p_bad = _families.with_mu(prob, coverage_single.mu_family(prob, direction, worst.a, worst.b))
fwd = registry.get("pmle").error_table(p_bad)
online_rows = []
for rounds in (1, 2, 3, 4):
    err = fwd[online(p_bad, "pmle", N, rounds, TRIALS, SEED)]
    lo, hi = common.bootstrap_mean_ci(err, rng, resamples=cfg.bootstrap)
    online_rows.append({"rounds": rounds, "E[KL]": err.mean(), "ci low": lo, "ci high": hi})
by_rounds = pd.DataFrame(online_rows).set_index("rounds")
print(f"mu with C_Pi = {worst.C_pi:.3g}, single-policy chi^2 coefficient = {worst.C_single:.3g}, n = {N}")
display(by_rounds)

# %%
off, best = by_rounds.loc[1], by_rounds["E[KL]"].idxmin()
gain = off["E[KL]"] / by_rounds.loc[best, "E[KL]"]
separated = by_rounds.loc[best, "ci high"] < off["ci low"]
print(f"Online sampling {'lowers' if separated else 'does not significantly lower'} PMLE's error on this mu: "
      f"offline E[KL] {off['E[KL]']:.3g} [{off['ci low']:.3g}, {off['ci high']:.3g}] against {best} rounds "
      f"{by_rounds.loc[best, 'E[KL]']:.3g} [{by_rounds.loc[best, 'ci low']:.3g}, {by_rounds.loc[best, 'ci high']:.3g}] "
      f"(a factor {gain:.3g}), at the same n = {N}.")
