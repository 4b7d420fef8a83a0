r"""Asymptotics: the plateau of n E[KL] against the sandwich constant 1/2 tr(H I^-1), across gamma.

What theory predicts (:mod:`finitepref.asymptotics`; the 1/n regime of Theorem 4): for the
preference MLE over a log-linear family :math:`\pi_\theta\propto\exp(\theta\cdot\phi)`,
:math:`n\,\mathbb E[\mathrm{KL}(\pi^*\|\hat\pi)]\to\tfrac12\mathrm{tr}(HI^{-1})` (H: Fisher information of
the policy, I: per-sample Fisher information of the preference likelihood). A fine
:math:`\varepsilon`-net follows this limit while its spacing h is small against the estimator's
spread :math:`\sqrt{\mathrm{tr}(I^{-1})/n}` and its box is wide against it. With a reward class equal
to :math:`\{\gamma\ln\pi:\pi\in\Pi\}` (reward stride 1), the reward model (eq. 9) *is* the PMLE, and
preference distillation (eq. 11) and reverse KL (eq. 15) return the same policy, so they share the
limit (for reverse KL, the reverse KL has the same Hessian at :math:`\theta^*`).

What this script measures, exactly: for each gamma a net :math:`\theta^* + [-\rho,\rho]^2` of spacing h
centred at :math:`\theta^*` (fixed features and :math:`\theta^*`), n chosen so that the spread takes the
values ``spread_over_h`` times h, ``trials`` data sets per n, the exact KL of PMLE, distillation and
reverse KL, the plateau (mean of n E[KL] over these n) with a bootstrap CI, the ratio
plateau / constant, and how often distill and reverse KL coincide with PMLE.

Run ``python -m simulations.asymptotics`` (about 2 minutes on 2 cores) or ``--quick`` (under 30 s).
Outputs in ``--out``: ``asymptotics.csv``, ``summary.json``, ``config.json``, ``asymptotics.png``/``.pdf``.
"""

from __future__ import annotations

from dataclasses import dataclass

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

import finitepref as fp  # noqa: E402
from finitepref import registry  # noqa: E402
from finitepref.asymptotics import preference_fisher, sandwich_constant  # noqa: E402
from simulations import _launch, _runner, common, style  # noqa: E402
from simulations._families import centered_net  # noqa: E402
from simulations.verdicts import interval_verdict  # noqa: E402

NAME = "asymptotics"
ESTIMATORS = registry.names(learns_pi_star=True)


@dataclass(frozen=True)
class Config(_runner.ScriptConfig):
    """Configuration of the asymptotic check. Every field is a command-line flag (``--field-name``).

    seed: master seed; every (gamma, n) gets an independent stream via SeedSequence.spawn
    n_prompts: number of prompts X
    n_responses: number of responses A
    dim: dimension d of theta
    gammas: gamma values
    radius: the net covers theta* + [-radius, radius]^d
    resolution: net spacing h
    spread_over_h: target ratios sqrt(tr(I^-1)/n) / h; each gives one n per gamma
    trials: independent data sets per (gamma, n)
    estimators: which estimators to run (pmle always)
    bootstrap: bootstrap resamples for CIs
    """

    n_prompts: int = 4
    n_responses: int = 5
    dim: int = 2
    gammas: tuple[float, ...] = (0.25, 0.5, 1.0, 2.0)
    radius: float = 0.3
    resolution: float = 0.005
    spread_over_h: tuple[float, ...] = (12.0, 8.0, 5.0)
    trials: int = 1000
    estimators: tuple[str, ...] = ESTIMATORS
    bootstrap: int = 1000

    NAME = NAME
    SHARD_CELLS = True
    QUICK = {"gammas": (0.5, 2.0), "resolution": 0.01, "spread_over_h": (8.0, 5.0), "trials": 200, "bootstrap": 200}
    """A coarser net, two gammas and n, 200 trials: under 30 s on 2 cores."""
    POSITIVE = ("n_prompts", "n_responses", "dim", "gammas", "radius", "resolution", "spread_over_h")

    def check(self) -> None:
        common.check_names("estimators", self.estimators, ESTIMATORS)
        if "pmle" not in self.estimators:
            raise ValueError(f"estimators: must include 'pmle' (the others are compared with it), got {self.estimators}")
        if self.trials < 2:
            raise ValueError(f"trials: must be >= 2, got {self.trials}")


def _setting(cfg: Config, base: fp.ToyProblem, g: float) -> dict:
    """The net at one gamma, its Fisher information, sandwich constant, sample sizes and error tables."""
    feats, theta_star = base.meta["features"], base.meta["theta_star"]
    pp, mu = base.prompt_probs.numpy(), base.mu.numpy()
    prob = centered_net(feats, pp, mu, theta_star, g, cfg.resolution, cfg.radius, rewards=True)
    inv = np.linalg.inv(preference_fisher(feats, theta_star, pp, mu, g))
    tr = float(np.trace(inv))
    return {"prob": prob, "inv": inv, "tr": tr, "const": sandwich_constant(feats, theta_star, pp, mu, g),
            "ns": np.maximum(np.round(tr / (np.asarray(cfg.spread_over_h) * cfg.resolution) ** 2), 1).astype(np.int64),
            "tables": {name: registry.get(name).error_table(prob) for name in cfg.estimators}}


def sweep(cfg: Config) -> tuple[pd.DataFrame, dict]:
    """Every estimator at every (gamma, n): the table of n E[KL] with CIs, and the raw n KL per (gamma, n, estimator)."""
    base = fp.ToyProblem.loglinear_grid(n_prompts=cfg.n_prompts, n_responses=cfg.n_responses, dim=cfg.dim,
                                        resolution=0.1, reward_stride=1, seed=cfg.seed)
    theta_star = base.meta["theta_star"]
    seeds = np.random.SeedSequence(cfg.seed).spawn(len(cfg.gammas) + 1)
    rng = np.random.default_rng(seeds[-1])
    sets = [_setting(cfg, base, g) for g in cfg.gammas]
    cells = [(k, n, s) for k, st in enumerate(sets) for n, s in zip(st["ns"], seeds[k].spawn(len(st["ns"])), strict=True)]

    def cell(k_n_s) -> dict[str, np.ndarray]:
        k, n, s = k_n_s
        data = sets[k]["prob"].sample(int(n), cfg.trials, seed=np.random.default_rng(s))
        return common.fit_estimators(sets[k]["prob"], data, [e for e in ESTIMATORS if e in cfg.estimators])

    rows, raw = [], {}
    for (k, n, _), chosen in zip(cells, _launch.map_cells(cell, cells, desc="asymptotics", unit="run"), strict=True):
        g, st = cfg.gammas[k], sets[k]
        prob, inv, tr = st["prob"], st["inv"], st["tr"]
        for name, idx in chosen.items():
            e = st["tables"][name][idx]
            raw[(g, int(n), name)] = n * e
            lo, hi = common.bootstrap_mean_ci(n * e, rng, resamples=cfg.bootstrap)
            on_edge = np.any(np.abs(prob.meta["thetas"][idx] - theta_star) >= cfg.radius - 1e-12, axis=1)
            rows.append({"gamma": g, "estimator": name, "n": int(n), "trials": cfg.trials,
                         "spread": float(np.sqrt(tr / n)), "spread_max_axis": float(np.sqrt(
                             np.linalg.eigvalsh(inv).max() / n)), "resolution": cfg.resolution,
                         "n_kl": n * e.mean(), "ci_low": lo, "ci_high": hi, "mean_kl": e.mean(),
                         "asymptotic_constant": st["const"], "p_correct": float(np.mean(idx == prob.star)),
                         "same_as_pmle": float(np.mean(idx == chosen["pmle"])),
                         "frac_on_box_edge": float(np.mean(on_edge)), "n_policies": prob.n_policies})
    return pd.DataFrame(rows), raw


def summarize(cfg: Config, table: pd.DataFrame, raw: dict) -> dict:
    rng = np.random.default_rng(np.random.SeedSequence(cfg.seed + 1).spawn(1)[0])
    out: dict = {"per_gamma": {}}
    for g, tg in table.groupby("gamma"):
        entry = {"asymptotic_constant": float(tg.asymptotic_constant.iloc[0]), "n": sorted(tg.n.unique().tolist())}
        for name, t in tg.groupby("estimator", sort=False):
            vals = [raw[(g, int(n), name)] for n in t.n]
            plateau = float(np.mean([v.mean() for v in vals]))
            boots = np.array([np.mean([v[rng.integers(len(v), size=len(v))].mean() for v in vals])
                              for _ in range(cfg.bootstrap)])
            const = entry["asymptotic_constant"]
            entry[name] = {"plateau": plateau, "ci_low": float(np.quantile(boots, 0.025)),
                           "ci_high": float(np.quantile(boots, 0.975)), "ratio": plateau / const,
                           "ratio_ci": [float(np.quantile(boots, 0.025)) / const, float(np.quantile(boots, 0.975)) / const],
                           "same_as_pmle": float(t.same_as_pmle.mean()), "frac_on_box_edge": float(t.frac_on_box_edge.max())}
        out["per_gamma"][float(g)] = entry
    return out


def plot(outcome: _runner.Outcome, cfg: Config):
    """Plateaus of every estimator against the sandwich constant across gamma; PMLE's ratio at each n."""
    table, summary = outcome.table, outcome.summary
    fig, axes = plt.subplots(1, 2, figsize=(style.WIDTH, 3.3), layout="constrained")
    ax = axes[0]
    gs = np.array(sorted(summary["per_gamma"]))
    consts = np.array([summary["per_gamma"][g]["asymptotic_constant"] for g in gs])
    ax.plot(gs, consts, "k-", lw=1.5, label=r"$\frac{1}{2}\mathrm{tr}(HI^{-1})$")
    for j, name in enumerate(cfg.estimators):
        line = style.line(name)
        p = np.array([summary["per_gamma"][g][name]["plateau"] for g in gs])
        lo = np.array([summary["per_gamma"][g][name]["ci_low"] for g in gs])
        hi = np.array([summary["per_gamma"][g][name]["ci_high"] for g in gs])
        x = gs * (1 + 0.04 * (j - 1))
        ax.errorbar(x, p, yerr=[p - lo, hi - p], fmt=line["marker"], color=line["color"], ms=5, capsize=3,
                    label=f"{line['label']} plateau")
    ax.set(xscale="log", yscale="log", xlabel=r"$\gamma$", ylabel="n E[KL]", title="Plateau vs sandwich constant")
    ax.grid(True, which="both", alpha=0.3)
    ax = axes[1]
    for i, (g, tg) in enumerate(table[table.estimator == "pmle"].groupby("gamma")):
        ax.errorbar(tg.spread / tg.resolution, tg.n_kl / tg.asymptotic_constant,
                    yerr=[(tg.n_kl - tg.ci_low) / tg.asymptotic_constant, (tg.ci_high - tg.n_kl) / tg.asymptotic_constant],
                    fmt="o-", color=f"C{i}", ms=4, capsize=2, label=f"gamma = {g:g}")
    ax.axhline(1, color="k", lw=1)
    ax.set(xlabel="spread / net spacing  (larger: finer net relative to the estimator)",
           ylabel="n E[KL] / (1/2 tr(H I^-1))", title="PMLE: ratio to the constant at each n (95% bootstrap CI)")
    return style.finish(fig, f"Centred nets: radius {cfg.radius}, spacing {cfg.resolution} (|Pi| = {int(table.n_policies.iloc[0])}), "
                             f"reward stride 1; trials={cfg.trials}, seed={cfg.seed}")


def verdicts(outcome: _runner.Outcome, cfg: Config) -> list:
    """Per gamma: PMLE's plateau against 1/2 tr(H I^-1) (within 10%), and how often the others coincide with PMLE."""
    out: list = []
    for g, e in outcome.summary["per_gamma"].items():
        p = e["pmle"]
        same = ", ".join(f"{k} = PMLE in {100 * e[k]['same_as_pmle']:.1f}% of trials" for k in ("distill", "reverse_kl")
                         if k in e)
        out.append(interval_verdict(f"gamma {g:g}: PMLE plateau n E[KL] = 1/2 tr(H I^-1)", p["plateau"],
                                    (p["ci_low"], p["ci_high"]), e["asymptotic_constant"], tolerance=0.1,
                                    relative=True, note=f"n = {e['n']}, within 10%; {same}"))
    return out


main = _runner.entry(Config, __doc__, run=_runner.sweep_then_summarize(sweep, summarize), plot=plot,
                     verdicts=verdicts)


if __name__ == "__main__":
    main()
