r"""The main job: exact KL of every estimator against the sample size n, with the paper's bounds.

What the paper predicts (Theorems 4, 6, 7): with probability :math:`1-\delta`, the preference MLE
and preference distillation have :math:`\mathbb E_x\mathrm{KL}(\pi^*\|\hat\pi) = O(C_\Pi\ln(|\Pi|/\delta)/(\gamma^2 n))`
and the reverse-KL estimator :math:`\mathbb E_x\mathrm{KL}(\hat\pi\|\pi^*) = O(\ln(|\Pi|/\delta)/n + C_{\mathcal R}\ln(|\mathcal R|/\delta)/(\gamma^2 n))`:
a 1/n rate, with explicit constants in Appendix B. The baselines DPO (eq. 6), RLHF (eq. 1) and
REBEL (eq. 10) carry no such guarantee: against a non-uniform :math:`\pi_0` they converge to a
policy other than :math:`\pi^*`.

What this script measures, exactly (no Monte Carlo in any KL): on an :math:`\varepsilon`-net of a
log-linear family (default: 40,401 policies, 4 prompts, 5 responses, 2 parameters) it draws
``trials`` independent data sets at each n of a log grid, computes every estimator by exact argmin,
and records the exact KL of each choice. It reports mean KL with bootstrap CIs, the OLS slope of
log E[KL] on log n over a declared window with a CI from resampling trials, the plateau of
n E[KL] against the asymptotic constant 1/2 tr(H I^-1) (:mod:`finitepref.asymptotics`), and the
(1-delta) quantile against each theorem's bound (the paper's constants and the corrected ones of
``bounds/FINDINGS.md``).

Run ``python -m simulations.kl_vs_n`` (about 2 minutes on 2 cores) or ``--quick`` (under 30 s).
Outputs in ``--out``: ``kl_vs_n.csv``, ``summary.json``, ``config.json``, ``kl_vs_n.png``/``.pdf``.
"""

from __future__ import annotations

from dataclasses import dataclass

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from tqdm.auto import tqdm  # noqa: E402

import bounds  # noqa: E402
import finitepref as fp  # noqa: E402
from finitepref import registry  # noqa: E402
from finitepref.asymptotics import sandwich_constant  # noqa: E402
from simulations import _runner, common, style  # noqa: E402

NAME = "kl_vs_n"
ESTIMATORS = registry.names()


@dataclass(frozen=True)
class Config(_runner.SweepConfig):
    """Configuration of the KL-vs-n sweep. Every field is a command-line flag (``--field-name``).

    seed: master seed; every n gets an independent stream via SeedSequence.spawn
    n_prompts: number of prompts X
    n_responses: number of responses A per prompt
    dim: dimension d of the log-linear parameter theta
    resolution: grid spacing of the epsilon-net over theta
    radius: the net covers [-radius, radius]^d
    reward_stride: the reward class is every reward_stride-th point of the net (Assumption 5 holds)
    gamma: tilt of the preference model, eq. (2)
    estimators: which estimators to run (names of finitepref.registry)
    dpo_beta: DPO inverse temperature; gamma makes eq. (6) the DPO of the paper's remark
    rlhf_beta: RLHF KL coefficient; with R = gamma ln pi*, beta = gamma is the natural scale
    rebel_eta: REBEL reward scale; Section 4 suggests eta = 1/gamma (negative: use 1/gamma)
    delta: confidence level of the bounds (quantile 1-delta is compared with them)
    window_min: smallest n of the declared asymptotic window for the slope fit
    window_max: largest n of the declared asymptotic window for the slope fit
    """

    n_min: float = 10
    n_max: float = 1e6
    n_points: int = 13
    n_prompts: int = 4
    n_responses: int = 5
    dim: int = 2
    resolution: float = 0.01
    radius: float = 1.0
    reward_stride: int = 5
    gamma: float = 0.5
    estimators: tuple[str, ...] = registry.names()
    dpo_beta: float = 0.5
    rlhf_beta: float = 0.5
    rebel_eta: float = -1.0
    delta: float = 0.05
    window_min: float = 100
    window_max: float = 1e4

    NAME = NAME
    QUICK = {"n_min": 10, "n_max": 1e5, "n_points": 5, "trials": 200, "bootstrap": 200}
    """Same problem, fewer trials and n: under 30 s on 2 cores, three n >= 1000 kept."""
    POSITIVE = ("n_prompts", "n_responses", "dim", "resolution", "radius", "reward_stride", "gamma", "dpo_beta",
                "rlhf_beta", "window_min", "window_max")

    def check(self) -> None:
        common.check_names("estimators", self.estimators, ESTIMATORS)
        if self.window_min > self.window_max:
            raise ValueError(f"window_min: must be <= window_max={self.window_max}, got {self.window_min}")


def make_problem(cfg: Config) -> fp.ToyProblem:
    """The embedded default problem: an epsilon-net of a log-linear family with a coarser reward net."""
    return fp.ToyProblem.loglinear_grid(
        n_prompts=cfg.n_prompts, n_responses=cfg.n_responses, dim=cfg.dim, resolution=cfg.resolution,
        gamma=cfg.gamma, radius=cfg.radius, reward_stride=cfg.reward_stride, seed=cfg.seed)


def run_estimators(prob: fp.ToyProblem, data: fp.PreferenceData, cfg: Config) -> dict[str, np.ndarray]:
    """Chosen policy index per trial for every estimator; one reward model (eq. 9) shared by those that need it."""
    params = {"dpo": {"beta": cfg.dpo_beta}, "rlhf": {"beta": cfg.rlhf_beta},
              "rebel": {"eta": cfg.rebel_eta if cfg.rebel_eta > 0 else 1.0 / cfg.gamma}}
    return common.fit_estimators(prob, data, cfg.estimators, params)


def theory_bounds(prob: fp.ToyProblem, n: np.ndarray, delta: float) -> dict[str, dict[str, np.ndarray]]:
    """Each estimator's bound at every n: the paper's constants and the corrected ones."""
    R, g, C_pi, C_r = prob.boundedness(), prob.gamma, prob.coverage(), prob.reward_coverage()
    K, M = prob.n_policies, prob.n_rewards
    return {
        "pmle": {"paper": bounds.theorem4(C_pi, R, g, K, n, delta),
                 "corrected": bounds.theorem4_corrected(C_pi, R, g, K, n, delta)},
        "distill": {"paper": bounds.theorem6(C_pi, R, g, K, M, n, delta),
                    "corrected": bounds.theorem6_corrected(C_pi, R, g, K, M, n, delta)},
        "reverse_kl": {"paper": bounds.theorem7(C_r, R, g, K, M, n, delta),
                       "corrected": bounds.theorem7_corrected(C_r, R, g, K, M, n, delta)},
    }


def sweep(prob: fp.ToyProblem, cfg: Config) -> tuple[pd.DataFrame, dict[str, np.ndarray]]:
    """Run the sweep; returns the per-(estimator, n) table and the raw errors ``(n_points, trials)``."""
    ns = common.log_grid(cfg.n_min, cfg.n_max, cfg.n_points)
    seeds = np.random.SeedSequence(cfg.seed).spawn(len(ns))
    tables = {name: registry.get(name).error_table(prob) for name in cfg.estimators}
    errors = {name: np.empty((len(ns), cfg.trials)) for name in cfg.estimators}
    correct = {name: np.empty(len(ns)) for name in cfg.estimators}
    for i, n in enumerate(tqdm(ns, desc="KL vs n", unit="n")):
        data = prob.sample(int(n), cfg.trials, seed=np.random.default_rng(seeds[i]))
        for name, idx in run_estimators(prob, data, cfg).items():
            errors[name][i] = tables[name][idx]
            correct[name][i] = np.mean(idx == prob.star)
    bound = theory_bounds(prob, ns.astype(np.float64), cfg.delta)
    ci_rng = np.random.default_rng(np.random.SeedSequence(cfg.seed).spawn(len(ns) + 1)[-1])
    rows = []
    for name in cfg.estimators:
        for i, n in enumerate(ns):
            e = errors[name][i]
            lo, hi = common.bootstrap_mean_ci(e, ci_rng, resamples=cfg.bootstrap)
            b = bound.get(name)
            rows.append({
                "estimator": name, "divergence": registry.get(name).divergence,
                "n": int(n), "trials": cfg.trials, "mean_kl": e.mean(), "ci_low": lo, "ci_high": hi,
                "quantile": np.quantile(e, 1 - cfg.delta), "bound": b["paper"][i] if b else np.nan,
                "bound_corrected": b["corrected"][i] if b else np.nan, "p_correct": correct[name][i],
            })
    return pd.DataFrame(rows), errors


def summarize(prob: fp.ToyProblem, cfg: Config, table: pd.DataFrame, errors: dict[str, np.ndarray]) -> dict:
    """Slopes with CIs over the declared window, n E[KL] plateaus, asymptotic and bound constants."""
    meta = prob.meta
    asym = sandwich_constant(meta["features"], meta["theta_star"], prob.prompt_probs.numpy(), prob.mu.numpy(),
                             prob.gamma)
    rng = np.random.default_rng(np.random.SeedSequence(cfg.seed).spawn(len(cfg.estimators) + 2)[-1])
    out = {"problem": prob.describe(), "window": [cfg.window_min, cfg.window_max], "delta": cfg.delta,
           "asymptotic_constant": asym, "estimators": {}}
    for name in cfg.estimators:
        t = table[table.estimator == name].reset_index(drop=True)
        in_window = ((t.n >= cfg.window_min) & (t.n <= cfg.window_max)).to_numpy()
        slope = common.loglog_slope(t.n.to_numpy()[in_window], errors[name][in_window], rng)
        n_kl = (t.n * t.mean_kl).to_numpy()
        entry = {
            "divergence": t.divergence[0], "slope": slope,
            "plateau_n_kl": float(np.mean(n_kl[in_window])) if in_window.any() else None,
            "n_kl_by_n": dict(zip(t.n.astype(int).tolist(), n_kl.tolist(), strict=True)),
            "final_mean_kl": float(t.mean_kl.iloc[-1]), "final_p_correct": float(t.p_correct.iloc[-1]),
            "bound_failures": int((t["quantile"] > t.bound).sum()) if t.bound.notna().any() else None,
            "bound_constant": float((t.bound * t.n).iloc[0]) if t.bound.notna().any() else None,
            "bound_corrected_constant": float((t.bound_corrected * t.n).iloc[0]) if t.bound.notna().any() else None,
            "asymptotic_constant": asym if registry.get(name).learns_pi_star else None,
        }
        out["estimators"][name] = entry
    return out


def plot(outcome: _runner.Outcome, cfg: Config):
    """Three panels: E[KL] vs n with CI bands and bounds; n E[KL] vs n with constants; P(pi_hat = pi*)."""
    table, summary = outcome.table, outcome.summary
    fig, axes = plt.subplots(1, 3, figsize=(17, 5.2), constrained_layout=True)
    ax_kl, ax_nkl, ax_p = axes
    for name in cfg.estimators:
        t = table[table.estimator == name]
        line = style.line(name)
        style.mean_with_band(ax_kl, t.n, t.mean_kl, t.ci_low, t.ci_high, **line)
        style.mean_with_band(ax_nkl, t.n, t.n * t.mean_kl, t.n * t.ci_low, t.n * t.ci_high, **line)
        ax_p.plot(t.n, t.p_correct, ms=4, **line)
        if t.bound.notna().any():
            ax_nkl.axhline(summary["estimators"][name]["bound_corrected_constant"], ls="--", color=line["color"], lw=1)
    positive = table.mean_kl[table.mean_kl > 0]
    ax_kl.set_ylim(positive.min() / 5, positive.max() * 5)
    n_max = table.n.max()
    slack = [f"{style.short_label(k)}: {v['bound_corrected_constant'] / n_max:.1e}"
             for k, v in summary["estimators"].items() if v["bound_corrected_constant"] is not None]
    if slack:
        ax_kl.text(0.02, 0.02, f"corrected bounds at n={n_max:.0e} (off scale):\n" + "\n".join(slack),
                   transform=ax_kl.transAxes, fontsize=8, va="bottom",
                   bbox={"facecolor": "white", "alpha": 0.8, "edgecolor": "0.7"})
    ns = np.sort(table.n.unique())
    ref = summary["asymptotic_constant"] / ns
    ax_kl.plot(ns, ref, color="k", ls=":", lw=1.5, label=r"$\frac{1}{2}\mathrm{tr}(HI^{-1})/n$")
    asym = summary["asymptotic_constant"]
    ax_nkl.axhline(asym, color="k", ls=":", lw=1.5, label=r"$\frac{1}{2}\mathrm{tr}(HI^{-1})$ (PMLE limit)")
    lo, hi = cfg.window_min, cfg.window_max
    for ax in (ax_kl, ax_nkl):
        ax.axvspan(lo, hi, color="0.9", zorder=-1)
        ax.set(xscale="log", yscale="log", xlabel="n (preference pairs)")
        ax.grid(True, which="major", alpha=0.3)
    ax_kl.set_ylabel("E[KL] (exact; forward, reverse for reverse KL)")
    ax_kl.set_title("Exact E[KL] vs n (band: 95% bootstrap CI over trials)")
    ax_nkl.set_ylabel("n E[KL]")
    ax_nkl.set_title(f"n E[KL] (grey: slope window; dashed: corrected\nThm 4/6/7 bound constants, delta={cfg.delta:g})")
    ax_p.set(xscale="log", xlabel="n (preference pairs)", ylabel=r"P($\hat\pi = \pi^*$)", ylim=(-0.02, 1.02),
             title="Exact recovery frequency")
    ax_nkl.legend(fontsize=8, loc="best")
    d = summary["problem"]
    return style.finish(fig, f"|Pi|={d['n_policies']}, |R|={d['n_rewards']}, X={d['n_prompts']}, A={d['n_responses']}, "
                             f"gamma={d['gamma']}, R={d['R']:.3g}, C_Pi={d['C_pi']:.3g}, C_R={d.get('C_r', float('nan')):.3g}, "
                             f"trials={cfg.trials}, seed={cfg.seed}", legends=False)


def verdicts(outcome: _runner.Outcome, cfg: Config) -> list[str]:
    """One line for the problem, one per estimator: slope, plateau, final error, bound verdict."""
    prob, summary = outcome.data["problem"], outcome.summary
    lines = [f"problem: {prob}  R={prob.boundedness():.3f}  C_Pi={prob.coverage():.3f}  "
             f"asymptotic n*E[KL] (PMLE) = {summary['asymptotic_constant']:.4g}"]
    for name, e in summary["estimators"].items():
        s = e["slope"]
        slope = (f"{s['slope']:+.3f} [{s['ci_low']:+.3f}, {s['ci_high']:+.3f}]" if s["slope"] is not None
                 else f"n/a ({s['reason']})")
        verdict = ""
        if e["bound_failures"] is not None:
            verdict = "bound holds at every n" if e["bound_failures"] == 0 else f"BOUND FAILS at {e['bound_failures']} n"
        lines.append(f"  {name:11s} slope {slope}; plateau n*E[KL] = {e['plateau_n_kl']}; final E[KL] = "
                     f"{e['final_mean_kl']:.3g}, P(correct) = {e['final_p_correct']:.2f}. {verdict}")
    return lines


def run(cfg: Config) -> _runner.Outcome:
    """Build the problem, sweep n, summarize."""
    prob = make_problem(cfg)
    table, errors = sweep(prob, cfg)
    summary = summarize(prob, cfg, table, errors)
    return _runner.Outcome(table, summary, extra={"problem": prob.describe()}, data={"problem": prob})


main = _runner.entry(Config, __doc__, run=run, plot=plot, verdicts=verdicts)


if __name__ == "__main__":
    main()
