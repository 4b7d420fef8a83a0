r"""Scaling of n E[KL] of the preference MLE with gamma, the coverage C_Pi and the class size |Pi|.

What the paper predicts (Theorem 4, eq. 7): :math:`\mathbb E_x\mathrm{KL}(\pi^*\|\hat\pi) \lesssim
C_\Pi\ln(|\Pi|/\delta)/(\gamma^2 n)`: at fixed n, the error scales like :math:`\gamma^{-2}` (the explicit
constant of Appendix B adds :math:`e^{4\gamma R}`), at most linearly in :math:`C_\Pi` and in
:math:`\ln|\Pi|`. These are upper bounds; for an :math:`\varepsilon`-net of a log-linear family the
classical limit is :math:`n\,\mathbb E[\mathrm{KL}]\to\tfrac12\mathrm{tr}(HI^{-1})`
(:mod:`finitepref.asymptotics`), in which :math:`I\propto\gamma^2` for small :math:`\gamma`, the
coverage enters through :math:`I` (which depends on :math:`\mu`) and :math:`|\Pi|` does not enter.

What this script measures, exactly (exact argmin, exact KL), on nets centred at a fixed
:math:`\theta^*` (same features, prompts and :math:`\theta^*` throughout):

- gamma sweep: :math:`\gamma\in` ``gammas``; fitted exponent of the plateau of n E[KL] on gamma;
- coverage sweep: :math:`\mu_\tau = \mathrm{softmax}(\tau\ell_x)` for ``taus`` (larger tau, larger
  :math:`C_\Pi`); fitted exponent on :math:`C_\Pi`;
- size sweep: net spacing in ``resolutions`` (box fixed); fitted exponent on :math:`\ln(|\Pi|/\delta)`;
- collapse: E[KL] of every run against the bound's shape :math:`C_\Pi\ln(|\Pi|/\delta)/(\gamma^2 n)`.

In each setting, n is chosen so that the estimator's spread :math:`\sqrt{\mathrm{tr}(I^{-1})/n}` takes the
values ``spreads`` (a fine net relative to the spread, and a box of several spreads), so that the
plateau of n E[KL] is the 1/n-regime value; the plateau is the mean of n E[KL] over these n. CIs of
exponents come from resampling trials.

Run ``python -m simulations.scaling`` (about 1-2 minutes on 2 cores) or ``--quick`` (under 30 s).
Outputs in ``--out``: ``scaling.csv``, ``summary.json``, ``config.json``, ``scaling.png``/``.pdf``.
"""

from __future__ import annotations

from dataclasses import dataclass

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

import finitepref as fp  # noqa: E402
from finitepref.asymptotics import preference_fisher, sandwich_constant  # noqa: E402
from simulations import _launch, _runner, common, style  # noqa: E402
from simulations._families import centered_net, tempered_mu  # noqa: E402
from simulations.verdicts import AGREES, DISAGREES, Verdict, interval_verdict, sig  # noqa: E402

NAME = "scaling"
SWEEPS = ("gamma", "coverage", "size")


@dataclass(frozen=True)
class Config(_runner.ScriptConfig):
    """Configuration of the scaling sweeps. Every field is a command-line flag (``--field-name``).

    seed: master seed; every (sweep, setting, n) gets an independent stream via SeedSequence.spawn
    n_prompts: number of prompts X
    n_responses: number of responses A
    dim: dimension d of theta
    gamma: gamma of the coverage and size sweeps
    gammas: gamma values of the gamma sweep
    taus: temperatures of mu = softmax(tau * logits) in the coverage sweep (0 = uniform)
    resolution: net spacing of the gamma and coverage sweeps
    resolutions: net spacings of the size sweep
    radius: the net covers theta* + [-radius, radius]^d
    spreads: target estimator spreads sqrt(tr(I^-1)/n); each gives one n per setting
    trials: independent data sets per (setting, n)
    delta: delta in the bound's shape ln(|Pi|/delta)
    bootstrap: resamples of trials for the exponent CIs
    """

    n_prompts: int = 4
    n_responses: int = 5
    dim: int = 2
    gamma: float = 0.5
    gammas: tuple[float, ...] = (0.25, 0.5, 1.0, 2.0)
    taus: tuple[float, ...] = (0.0, 2.0, 4.0, 6.0)
    resolution: float = 0.01
    resolutions: tuple[float, ...] = (0.16, 0.08, 0.04, 0.02, 0.01)
    radius: float = 0.64
    spreads: tuple[float, ...] = (0.15, 0.1, 0.067)
    trials: int = 1000
    delta: float = 0.05
    bootstrap: int = 500

    NAME = NAME
    SHARD_CELLS = True
    QUICK = {"gammas": (0.25, 1.0, 2.0), "taus": (0.0, 3.0, 6.0), "resolution": 0.02,
             "resolutions": (0.16, 0.04, 0.02), "spreads": (0.15, 0.1), "trials": 200, "bootstrap": 200}
    """Three values per sweep, two n per setting, coarser nets, 200 trials: under 30 s on 2 cores."""
    POSITIVE = ("n_prompts", "n_responses", "dim", "gamma", "gammas", "resolution", "resolutions", "radius", "spreads")

    def check(self) -> None:
        if min(len(self.gammas), len(self.taus), len(self.resolutions)) < 2:
            raise ValueError("gammas, taus, resolutions: need at least two values each to fit an exponent")
        if self.trials < 2 or not self.spreads:
            raise ValueError(f"trials, spreads: need trials >= 2 and a spread, got {self.trials}, {self.spreads}")
        if any(t < 0 for t in self.taus):
            raise ValueError(f"taus: must be >= 0, got {self.taus}")


def settings(cfg: Config):
    """(sweep, value, ToyProblem) for every setting of the three sweeps, all sharing features and theta*."""
    base = fp.ToyProblem.loglinear_grid(n_prompts=cfg.n_prompts, n_responses=cfg.n_responses, dim=cfg.dim,
                                        resolution=0.1, gamma=cfg.gamma, reward_stride=1, seed=cfg.seed)
    feats, theta_star = base.meta["features"], base.meta["theta_star"]
    pp, mu = base.prompt_probs.numpy(), base.mu.numpy()
    logits = np.random.default_rng(np.random.SeedSequence(cfg.seed).spawn(2)[1]).standard_normal(mu.shape)
    out = []
    for g in cfg.gammas:
        out.append(("gamma", g, centered_net(feats, pp, mu, theta_star, g, cfg.resolution, cfg.radius)))
    for tau in cfg.taus:
        out.append(("coverage", tau, centered_net(feats, pp, tempered_mu(logits, tau), theta_star, cfg.gamma,
                                                  cfg.resolution, cfg.radius)))
    for h in cfg.resolutions:
        out.append(("size", h, centered_net(feats, pp, mu, theta_star, cfg.gamma, h, cfg.radius)))
    return out


def sample_sizes(prob: fp.ToyProblem, spreads) -> np.ndarray:
    r"""n with :math:`\sqrt{\mathrm{tr}(I^{-1})/n}` equal to each target spread."""
    m = prob.meta
    info = preference_fisher(m["features"], m["theta_star"], prob.prompt_probs.numpy(), prob.mu.numpy(), prob.gamma)
    tr = float(np.trace(np.linalg.inv(info)))
    return np.maximum(np.round(tr / np.asarray(spreads, dtype=np.float64) ** 2), 1).astype(np.int64)


def sweep(cfg: Config):
    """Run every setting; returns the per-(setting, n) table and the raw errors per setting ``(len(n), trials)``."""
    cases = settings(cfg)
    seeds = np.random.SeedSequence(cfg.seed).spawn(len(cases))
    ci_rng = np.random.default_rng(np.random.SeedSequence(cfg.seed + 1).spawn(1)[0])
    ns = [sample_sizes(prob, cfg.spreads) for _, _, prob in cases]
    cells = [(c, i, s) for c, ss in enumerate(seeds) for i, s in enumerate(ss.spawn(len(cfg.spreads)))]

    def cell(c_i_s) -> np.ndarray:
        c, i, s = c_i_s
        prob = cases[c][2]
        return fp.estimators.pmle(prob, prob.sample(int(ns[c][i]), cfg.trials, seed=np.random.default_rng(s)))

    picks = iter(_launch.map_cells(cell, cells, desc="scaling", unit="run"))
    rows, errors = [], []
    for (name, value, prob), n_c in zip(cases, ns, strict=True):
        m = prob.meta
        asym = sandwich_constant(m["features"], m["theta_star"], prob.prompt_probs.numpy(), prob.mu.numpy(),
                                 prob.gamma)
        C_pi, K = prob.coverage(), prob.n_policies
        fwd = prob.forward_kl_table()
        errs = np.empty((len(n_c), cfg.trials))
        for i, n in enumerate(n_c):
            idx = next(picks)
            errs[i] = fwd[idx]
            lo, hi = common.bootstrap_mean_ci(errs[i], ci_rng, resamples=cfg.bootstrap)
            shape = C_pi * np.log(K / cfg.delta) / (prob.gamma**2 * n)
            rows.append({"sweep": name, "value": value, "gamma": prob.gamma, "C_pi": C_pi, "n_policies": K,
                         "log_class_over_delta": np.log(K / cfg.delta), "R": prob.boundedness(),
                         "spread": cfg.spreads[i], "n": int(n), "trials": cfg.trials,
                         "mean_kl": errs[i].mean(), "ci_low": lo, "ci_high": hi, "n_kl": n * errs[i].mean(),
                         "p_correct": float(np.mean(idx == prob.star)), "asymptotic_constant": asym,
                         "bound_shape": shape})
        errors.append(errs)
    return pd.DataFrame(rows), errors


def fit_exponent(x: np.ndarray, ns: list[np.ndarray], errs: list[np.ndarray], rng: np.random.Generator,
                 resamples: int) -> dict:
    """OLS slope of log(plateau of n E[KL]) on log x, CI from resampling trials within every (setting, n)."""
    def plateau(e, n):
        return np.mean(n * e.mean(axis=1))

    lx = np.log(np.asarray(x, dtype=np.float64))
    y = np.log([plateau(e, n) for e, n in zip(errs, ns, strict=True)])
    slope = float(np.polyfit(lx, y, 1)[0])
    boots = np.empty(resamples)
    for b in range(resamples):
        yb = []
        for e, n in zip(errs, ns, strict=True):
            idx = rng.integers(e.shape[1], size=e.shape)
            yb.append(plateau(np.take_along_axis(e, idx, axis=1), n))
        boots[b] = np.polyfit(lx, np.log(np.maximum(yb, np.finfo(float).tiny)), 1)[0]
    return {"exponent": slope, "ci_low": float(np.quantile(boots, 0.025)), "ci_high": float(np.quantile(boots, 0.975))}


def summarize(cfg: Config, table: pd.DataFrame, errors: list[np.ndarray]) -> dict:
    rng = np.random.default_rng(np.random.SeedSequence(cfg.seed + 2).spawn(1)[0])
    groups = list(table.groupby(["sweep", "value"], sort=False))
    out: dict = {"delta": cfg.delta, "sweeps": {}}
    regressor = {"gamma": "gamma", "coverage": "C_pi", "size": "log_class_over_delta"}
    predicted = {"gamma": -2.0, "coverage": 1.0, "size": 1.0}
    for name in SWEEPS:
        sel = [(i, t) for i, ((sw, _), t) in enumerate(groups) if sw == name]
        x = np.array([t[regressor[name]].iloc[0] for _, t in sel])
        ns = [t.n.to_numpy() for _, t in sel]
        errs = [errors[i] for i, _ in sel]
        plateaus = [float(np.mean(t.n_kl)) for _, t in sel]
        asym = np.array([t.asymptotic_constant.iloc[0] for _, t in sel])
        fit = fit_exponent(x, ns, errs, rng, cfg.bootstrap)
        asym_exp = float(np.polyfit(np.log(x), np.log(asym), 1)[0]) if np.ptp(x) > 0 else None
        out["sweeps"][name] = {
            "regressor": regressor[name], "x": x.tolist(), "values": [t.value.iloc[0] for _, t in sel],
            "plateau_n_kl": plateaus, "asymptotic_constant": asym.tolist(),
            "ratio_plateau_over_asymptotic": (np.array(plateaus) / asym).tolist(),
            "fitted_exponent": fit, "bound_exponent": predicted[name], "asymptotic_exponent": asym_exp,
            "n_policies": [int(t.n_policies.iloc[0]) for _, t in sel], "C_pi": [float(t.C_pi.iloc[0]) for _, t in sel],
        }
    ratio = table.mean_kl / table.bound_shape
    pos = table.mean_kl > 0
    out["collapse"] = {"ratio_min": float(ratio.min()), "ratio_max": float(ratio.max()),
                       "loglog_slope": float(np.polyfit(np.log(table.bound_shape[pos]), np.log(table.mean_kl[pos]), 1)[0])}
    return out


def plot(outcome: _runner.Outcome, cfg: Config):
    """One panel per sweep (n E[KL] against its regressor, with the bound's and the classical exponents), and the collapse."""
    table, summary = outcome.table, outcome.summary
    fig, axes = plt.subplots(2, 2, figsize=(style.WIDTH, 5.8), layout="constrained")
    axes = axes.ravel()
    xlabels = {"gamma": r"$\gamma$", "coverage": r"$C_\Pi$ (varying $\mu$)", "size": r"$\ln(|\Pi|/\delta)$"}
    for ax, name in zip(axes[:3], SWEEPS, strict=True):
        s = summary["sweeps"][name]
        t = table[table.sweep == name]
        x = np.array(s["x"])
        for j, spread in enumerate(cfg.spreads):
            tj = t[t.spread == spread]
            ax.errorbar(x, tj.n_kl, yerr=[tj.n_kl - tj.n * tj.ci_low, tj.n * tj.ci_high - tj.n_kl], fmt="o",
                        ms=4, color=f"C{j}", capsize=2, label=f"n E[KL], spread {spread:g}")
        ax.plot(x, s["plateau_n_kl"], "k-", lw=1.5, label="plateau (mean over n)")
        ax.plot(x, s["asymptotic_constant"], "k:", lw=1.5, label=r"$\frac{1}{2}\mathrm{tr}(HI^{-1})$")
        ref = np.array(s["plateau_n_kl"])[0] * (x / x[0]) ** s["bound_exponent"]
        ax.plot(x, ref, "r--", lw=1, label=f"bound's shape: exponent {s['bound_exponent']:+g}")
        f = s["fitted_exponent"]
        ax.set(xscale="log", yscale="log", xlabel=xlabels[name], ylabel="n E[KL]",
               title=f"{name}: fitted exponent {f['exponent']:+.2f} [{f['ci_low']:+.2f}, {f['ci_high']:+.2f}]")
        ax.grid(True, which="both", alpha=0.3)
    ax = axes[3]
    for j, name in enumerate(SWEEPS):
        t = table[(table.sweep == name) & (table.mean_kl > 0)]
        ax.plot(t.bound_shape, t.mean_kl, "o", color=f"C{j + 3}", ms=4, label=f"{name} sweep")
    lims = np.array([table.bound_shape.min(), table.bound_shape.max()])
    ax.plot(lims, lims, "k--", lw=1, label="E[KL] = shape")
    c = summary["collapse"]
    ax.set(xscale="log", yscale="log", xlabel=r"$C_\Pi\ln(|\Pi|/\delta)/(\gamma^2 n)$", ylabel="E[KL] (exact)",
           title=f"Collapse: E[KL]/shape in [{c['ratio_min']:.2g}, {c['ratio_max']:.2g}]")
    return style.finish(fig, f"PMLE on centred log-linear nets (X={cfg.n_prompts}, A={cfg.n_responses}, d={cfg.dim}, "
                             f"radius={cfg.radius}); trials={cfg.trials}, seed={cfg.seed}; bars: 95% bootstrap CI")


def sweep_verdict(name: str, s: dict) -> list:
    """One sweep's fitted exponent against the bound's (and, for gamma, the sandwich constants') exponent."""
    f = s["fitted_exponent"]
    ci = (f["ci_low"], f["ci_high"])
    note = f"plateau/asymptotic {np.round(s['ratio_plateau_over_asymptotic'], 3).tolist()}"
    if name == "gamma":  # two claims: the bound's gamma^-2 and the classical (sandwich) exponent
        return [interval_verdict("n E[KL] ~ gamma^-2 (the bound's exponent)", f["exponent"], ci, s["bound_exponent"],
                                 note=note),
                interval_verdict("n E[KL] exponent in gamma = the sandwich constants'", f["exponent"], ci,
                                 s["asymptotic_exponent"], note=note)]
    ok = f["ci_low"] <= s["bound_exponent"]  # the bound is an upper bound: growth at most linear
    return [Verdict(f"n E[KL] grows at most linearly in {s['regressor']} (exponent <= {s['bound_exponent']:g})",
                    f["exponent"], f["ci_low"], f["ci_high"], s["bound_exponent"], AGREES if ok else DISAGREES,
                    f"{note}; sandwich constants' exponent {sig(s['asymptotic_exponent'])}")]


def verdicts(outcome: _runner.Outcome, cfg: Config) -> list:
    """One verdict per sweep (exponent against the bound's and the sandwich constants') and one for the collapse."""
    c = outcome.summary["collapse"]
    out = [v for name, s in outcome.summary["sweeps"].items() for v in sweep_verdict(name, s)]
    out.append(Verdict("collapse: E[KL] <= C_Pi ln(|Pi|/delta)/(gamma^2 n) (the shape alone bounds every run)",
                       c["ratio_max"], c["ratio_min"], c["ratio_max"], 1.0, AGREES if c["ratio_max"] < 1 else DISAGREES,
                       f"max ratio (range as CI); log-log slope {c['loglog_slope']:.3f}"))
    return out


main = _runner.entry(Config, __doc__, run=_runner.sweep_then_summarize(sweep, summarize), plot=plot,
                     verdicts=verdicts)


if __name__ == "__main__":
    main()
