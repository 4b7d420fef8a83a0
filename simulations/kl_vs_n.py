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
Outputs in ``--out``: ``kl_vs_n.csv``, ``summary.json``, ``config.json``, ``verdicts.csv``, ``kl_vs_n.png``/``.pdf``.
"""

from __future__ import annotations

from dataclasses import dataclass

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

import bounds  # noqa: E402
import finitepref as fp  # noqa: E402
from finitepref import registry  # noqa: E402
from finitepref.asymptotics import sandwich_constant  # noqa: E402
from simulations import _launch, _limits, _runner, common, style  # noqa: E402
from simulations.verdicts import AGREES, DISAGREES, Verdict, interval_verdict, sig  # noqa: E402

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
    ipo_tau: IPO regularisation tau (Azar et al. 2023)
    chipo_beta: chi-PO coefficient beta (Huang et al. 2024; R_max = 2 gamma R, estimators.chipo_default_r_max)
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
    ipo_tau: float = 0.1
    chipo_beta: float = 0.5
    delta: float = 0.05
    window_min: float = 100
    window_max: float = 1e4

    NAME = NAME
    QUICK = {"n_min": 10, "n_max": 1e5, "n_points": 5, "trials": 200, "bootstrap": 200}
    """Same problem, fewer trials and n: under 30 s on 2 cores, three n >= 1000 kept."""
    SHARD_CELLS = True
    POSITIVE = ("n_prompts", "n_responses", "dim", "resolution", "radius", "reward_stride", "gamma", "dpo_beta",
                "rlhf_beta", "ipo_tau", "chipo_beta", "window_min", "window_max")

    def check(self) -> None:
        common.check_names("estimators", self.estimators, ESTIMATORS)
        if self.window_min > self.window_max:
            raise ValueError(f"window_min: must be <= window_max={self.window_max}, got {self.window_min}")


def make_problem(cfg: Config) -> fp.ToyProblem:
    """The embedded default problem: an epsilon-net of a log-linear family with a coarser reward net."""
    return fp.ToyProblem.loglinear_grid(
        n_prompts=cfg.n_prompts, n_responses=cfg.n_responses, dim=cfg.dim, resolution=cfg.resolution,
        gamma=cfg.gamma, radius=cfg.radius, reward_stride=cfg.reward_stride, seed=cfg.seed)


def estimator_params(cfg: Config) -> dict[str, dict[str, float]]:
    """Each estimator's hyperparameters from the config."""
    return {"dpo": {"beta": cfg.dpo_beta}, "rlhf": {"beta": cfg.rlhf_beta},
            "rebel": {"eta": cfg.rebel_eta if cfg.rebel_eta > 0 else 1.0 / cfg.gamma},
            "ipo": {"tau": cfg.ipo_tau}, "chipo": {"beta": cfg.chipo_beta}}


def run_estimators(prob: fp.ToyProblem, data: fp.PreferenceData, cfg: Config) -> dict[str, np.ndarray]:
    """Chosen policy index per trial for every estimator; one reward model (eq. 9) shared by those that need it."""
    return common.fit_estimators(prob, data, cfg.estimators, estimator_params(cfg))


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

    def cell(i: int) -> dict[str, np.ndarray]:
        return run_estimators(prob, prob.sample(int(ns[i]), cfg.trials, seed=np.random.default_rng(seeds[i])), cfg)

    for i, chosen in enumerate(_launch.map_cells(cell, range(len(ns)), desc="KL vs n", unit="n")):
        for name, idx in chosen.items():
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
    """Slopes with CIs over the declared window, n E[KL] plateaus, population limits, the exact-recovery n, bounds."""
    meta = prob.meta
    asym = sandwich_constant(meta["features"], meta["theta_star"], prob.prompt_probs.numpy(), prob.mu.numpy(),
                             prob.gamma)
    rng = np.random.default_rng(np.random.SeedSequence(cfg.seed).spawn(len(cfg.estimators) + 2)[-1])
    limits = _limits.class_limits(prob, cfg.estimators, estimator_params(cfg))
    out = {"problem": prob.describe(), "window": [cfg.window_min, cfg.window_max], "delta": cfg.delta,
           "asymptotic_constant": asym, "exact_recovery": _limits.exact_recovery_n(prob, asym), "estimators": {}}
    for name in cfg.estimators:
        t = table[table.estimator == name].reset_index(drop=True)
        in_window = ((t.n >= cfg.window_min) & (t.n <= cfg.window_max)).to_numpy()
        n_kl = (t.n * t.mean_kl).to_numpy()
        has_bound = bool(t.bound.notna().any())
        out["estimators"][name] = {
            "divergence": t.divergence[0], "limit": limits[name],
            "slope": common.loglog_slope(t.n.to_numpy()[in_window], errors[name][in_window], rng),
            "plateau_n_kl": float(np.mean(n_kl[in_window])) if in_window.any() else None,
            "plateau_ci": ([float(np.mean((t.n * t.ci_low)[in_window])), float(np.mean((t.n * t.ci_high)[in_window]))]
                           if in_window.any() else None),
            "n_kl_by_n": dict(zip(t.n.astype(int).tolist(), n_kl.tolist(), strict=True)),
            "final_n": int(t.n.iloc[-1]), "final_mean_kl": float(t.mean_kl.iloc[-1]),
            "final_ci": [float(t.ci_low.iloc[-1]), float(t.ci_high.iloc[-1])],
            "final_p_correct": float(t.p_correct.iloc[-1]),
            "bound_failures": int((t["quantile"] > t.bound).sum()) if has_bound else None,
            "bound_constant": float((t.bound * t.n).iloc[0]) if has_bound else None,
            "bound_corrected_constant": float((t.bound_corrected * t.n).iloc[0]) if has_bound else None,
            "max_n_quantile": float((t["quantile"] * t.n).max()),
            "asymptotic_constant": asym if registry.get(name).learns_pi_star else None,
        }
    return out


def _panel_kl(ax, table: pd.DataFrame, summary: dict, cfg: Config) -> None:
    """E[KL] vs n (log-log): every estimator, zeros on the floor, 1/2 tr(H I^-1)/n, the biased limits as guides."""
    positive = table.mean_kl[table.mean_kl > 0]
    floor = positive.min() / 4
    shift = style.offsets(cfg.estimators, 0.02)
    zeros = []
    for name in cfg.estimators:
        t = table[table.estimator == name]
        if style.mean_with_band(ax, t.n * shift[name], t.mean_kl, t.ci_low, t.ci_high, floor=floor,
                                ls=style.linestyle(name), **style.line(name)):
            zeros.append(style.short_label(name))
        lim = summary["estimators"][name]["limit"]
        if not registry.get(name).learns_pi_star:
            ax.axhline(lim["class_kl"], color=style.color(name), ls=(0, (1, 3)), lw=1)
    ns = np.sort(table.n.unique())
    ax.plot(ns, summary["asymptotic_constant"] / ns, color="k", ls=":", lw=1.5,
            label=r"$\frac{1}{2}\mathrm{tr}(HI^{-1})/n$ (asymptotic, $\pi^*$ learners)")
    ax.set(xscale="log", yscale="log", ylim=(floor, positive.max() * 3), xlabel="n (preference pairs)",
           ylabel="E[KL] (exact)", title="(a) E[KL] vs n; dotted guides: biased limits")
    notes = [f"same limit (one class member): {', '.join(g)}" for g in _same_limit(summary).values() if len(g) > 1]
    if zeros:
        notes.append("open markers on the floor: E[KL] = 0 (" + ", ".join(zeros) + ")")
    if notes:
        ax.text(0.02, 0.02, "\n".join(notes), transform=ax.transAxes, fontsize=6.5, va="bottom")


def _same_limit(summary: dict) -> dict[int, list[str]]:
    """Biased estimators grouped by the class member their population loss picks (identical curves at large n)."""
    groups: dict[int, list[str]] = {}
    for name, e in summary["estimators"].items():
        if not registry.get(name).learns_pi_star:
            groups.setdefault(e["limit"]["class_argmin"], []).append(style.short_label(name))
    return groups


def _panel_nkl(ax, table: pd.DataFrame, summary: dict, cfg: Config) -> None:
    """n E[KL] of the distribution-learning estimators on a linear axis, with 1/2 tr(H I^-1)."""
    asym = summary["asymptotic_constant"]
    learners = [n for n in cfg.estimators if registry.get(n).learns_pi_star]
    shift = style.offsets(learners, 0.03)
    top = 0.0
    for name in learners:
        t = table[table.estimator == name]
        style.mean_with_band(ax, t.n * shift[name], t.n * t.mean_kl, t.n * t.ci_low, t.n * t.ci_high, log_y=False,
                             ls=style.linestyle(name), **style.line(name))
        top = max(top, float((t.n * t.mean_kl).max()))
    ax.axhline(asym, color="k", ls=":", lw=1.5)
    ax.text(table.n.min(), asym, f" 1/2 tr(H I$^{{-1}}$) = {asym:.3g}", va="bottom", fontsize=7)
    ax.axvspan(cfg.window_min, cfg.window_max, color="0.92", zorder=-1)
    ax.set(xscale="log", ylim=(0, min(max(1.5 * asym, 1.1 * top), 3 * asym)), xlabel="n (preference pairs)",
           ylabel="n E[KL]", title="(b) n E[KL] ($\\pi^*$ learners; grey: slope window)")


def _panel_recovery(ax, table: pd.DataFrame, summary: dict, cfg: Config) -> None:
    """P(pi_hat = pi*) vs n, with where each net's exact-recovery regime starts."""
    shift = style.offsets(cfg.estimators, 0.02)
    for name in cfg.estimators:
        t = table[table.estimator == name]
        ax.plot(t.n * shift[name], t.p_correct, ls=style.linestyle(name), ms=4, **style.line(name))
    for which, e in summary["exact_recovery"].items():
        ax.axvline(e["n_exact"], color="0.4", ls="-.", lw=1)
        ax.text(e["n_exact"], 0.55 if which == "policy" else 0.8, f" {which} net:\n n≈{e['n_exact']:.2g}", fontsize=7)
    ax.set(xscale="log", ylim=(-0.02, 1.02), xlabel="n (preference pairs)", ylabel=r"P($\hat\pi = \pi^*$)",
           title="(c) exact recovery; dash-dot: c / (least KL gap of the net)")


def _panel_bounds(ax, summary: dict) -> None:
    """The bound constants n * bound (paper, corrected) against the measured n * quantile, per estimator."""
    rows = [(k, v) for k, v in summary["estimators"].items() if v["bound_constant"] is not None]
    y = np.arange(len(rows))
    for j, (key, text, colour) in enumerate((("bound_constant", "paper constants", "0.8"),
                                            ("bound_corrected_constant", "corrected (bounds/FINDINGS.md)", "0.5"),
                                            ("max_n_quantile", r"measured max$_n$ n q$_{1-\delta}$", "0.1"))):
        ax.barh(y + (j - 1) * 0.27, [v[key] for _, v in rows], height=0.27, color=colour, label=text)
    ax.axvline(summary["asymptotic_constant"], color="k", ls=":", lw=1.5)
    ax.set_yticks(y, [style.short_label(k) for k, _ in rows])
    ax.set(xscale="log", xlabel="n x KL", title=f"(d) Thm 4/6/7 bound constants (delta={summary['delta']:g})")


def plot(outcome: _runner.Outcome, cfg: Config):
    """Four panels: E[KL] vs n; n E[KL] (linear); P(pi_hat = pi*); the bound constants. One legend."""
    table, summary = outcome.table, outcome.summary
    fig, axes = plt.subplots(2, 2, figsize=(style.WIDTH, 6.4), layout="constrained")
    _panel_kl(axes[0, 0], table, summary, cfg)
    _panel_nkl(axes[0, 1], table, summary, cfg)
    _panel_recovery(axes[1, 0], table, summary, cfg)
    if any(v["bound_constant"] is not None for v in summary["estimators"].values()):
        _panel_bounds(axes[1, 1], summary)
    d = summary["problem"]
    return style.finish(fig, f"|Pi|={d['n_policies']}, |R|={d['n_rewards']}, X={d['n_prompts']}, A={d['n_responses']}, "
                             f"gamma={d['gamma']}, R={d['R']:.3g}, C_Pi={d['C_pi']:.3g}, C_R={d.get('C_r', float('nan')):.3g}, "
                             f"trials={cfg.trials}, seed={cfg.seed}", ncol=3)


def _learner_verdicts(name: str, e: dict, asym: float, cfg: Config) -> list[Verdict]:
    """Slope -1 and plateau 1/2 tr(H I^-1) of a distribution-learning estimator; its bound."""
    label, s = style.short_label(name), e["slope"]
    window = f"n in [{cfg.window_min:g}, {cfg.window_max:g}]"
    out = [interval_verdict(f"{label}: slope of log E[KL] on log n is -1", s["slope"],
                            None if s["slope"] is None else (s["ci_low"], s["ci_high"]), -1.0, tolerance=0.1,
                            note=f"{window}, within 0.1" if s["slope"] is not None else s["reason"])]
    out.append(interval_verdict(f"{label}: plateau n E[KL] = 1/2 tr(H I^-1)", e["plateau_n_kl"], e["plateau_ci"], asym,
                                tolerance=0.1, relative=True, note=f"mean over {window}, within 10%"))
    if e["bound_failures"] is not None:
        out.append(Verdict(f"{label}: (1-delta) quantile of KL <= Theorem bound (paper constants)",
                           e["bound_failures"], None, None, 0, AGREES if e["bound_failures"] == 0 else DISAGREES,
                           f"n where the quantile exceeds the bound; bound constant n*bound = {sig(e['bound_constant'])}"))
    return out


def _biased_verdict(name: str, e: dict) -> Verdict:
    """A baseline converges to its own population limit, not pi*: measured E[KL] at the largest n vs the limit's."""
    lim = e["limit"]
    note = (f"biased: converges to {lim['form']}, not pi*; reference = KL of the class's population minimiser "
            f"(closed-form limit over all policies: KL {sig(lim.get('limit_kl'))}); E[KL] at n = {e['final_n']}, within 10%")
    return interval_verdict(f"{style.short_label(name)}: converges to its population limit, not pi*",
                            e["final_mean_kl"], e["final_ci"], lim["class_kl"], tolerance=0.1, relative=True, note=note)


def verdicts(outcome: _runner.Outcome, cfg: Config) -> list:
    """The problem; per estimator its slope, plateau and bound (pi* learners) or its limit (baselines); the net."""
    prob, summary = outcome.data["problem"], outcome.summary
    asym, rec = summary["asymptotic_constant"], summary["exact_recovery"]
    lines: list = [f"problem: {prob}  R={prob.boundedness():.3g}  C_Pi={prob.coverage():.3g}  "
                   f"1/2 tr(H I^-1) = {sig(asym)}"]
    for name, e in summary["estimators"].items():
        lines += _learner_verdicts(name, e, asym, cfg) if registry.get(name).learns_pi_star else [_biased_verdict(name, e)]
    lines.append("note: the epsilon-net is finite, so for large n the estimate stops wandering and sits on pi* "
                 "(E[KL] -> 0, faster than 1/n). The transition starts near n = 1/2 tr(H I^-1) / (least nonzero KL "
                 f"between pi* and a net point): policy net {sig(rec['policy']['n_exact'])} (gap "
                 f"{sig(rec['policy']['min_kl_gap'])})"
                 + (f", reward net (stride {cfg.reward_stride}, used by distillation and reverse KL) "
                    f"{sig(rec['reward']['n_exact'])} (gap {sig(rec['reward']['min_kl_gap'])})" if "reward" in rec else "")
                 + ". Slopes and plateaus are judged in the window below it.")
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
