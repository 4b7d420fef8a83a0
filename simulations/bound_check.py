r"""Bound check: the (1-delta) quantile of each error against the paper's high-probability bounds.

What the paper predicts (Appendix B): with probability at least :math:`1-\delta`,

- Proposition 12 (PMLE, eq. 4): :math:`\mathbb E_{x,a,b\sim\mu}[(\mathbb P_{\hat\pi}(a\succ b\mid x) -
  \mathbb P_*(a\succ b\mid x))^2] \le 4\ln(|\Pi|/\delta)/n`;
- eq. (18) (PMLE): :math:`\mathbb E_{x,a\sim\mu}[\Delta\bar R_{\hat\pi}(x,a)^2] \le 8e^{4\gamma R}\ln(|\Pi|/\delta)/n`
  (``bounds.eq18``; the corrected Lemma 8 gives 32 instead of 8, ``bounds.eq18_corrected``);
- Theorem 4 (PMLE), Theorem 6 (preference distillation, eq. 11) on the forward KL and Theorem 7
  (reverse KL, eq. 15) on the reverse KL, with the explicit constants of Appendix B
  (``bounds.theorem4/6/7`` and their ``_corrected`` versions).

So the empirical (1-delta) quantile of each error over independent data sets must lie below the
bound at every n, and the frequency of data sets whose error exceeds the bound must be at most delta.

What this script measures, exactly: the error of every policy of the class is computed once (a
table over :math:`|\Pi|`), the estimators are exact argmins, and the error of each trial is a gather.
At each n of a log grid it reports the (1-delta) quantile, the failure count k/trials with its
two-sided 95% Clopper-Pearson interval (a bound is *violated* when the lower limit exceeds delta,
*confirmed* when the upper limit is at most delta), and the slack bound/quantile, for the paper's
and the corrected constants. Two problems: a "tight" log-linear net with small R and gamma = 1
(feature_scale 0.3, so :math:`e^{4\gamma R}` is moderate and the bounds are not absurdly loose), and
the default log-linear problem of ``simulations.kl_vs_n``.

Run ``python -m simulations.bound_check`` (about 2-3 minutes on 2 cores) or ``--quick`` (under 30 s).
Outputs in ``--out``: ``bound_check.csv``, ``summary.json``, ``config.json``, ``bound_check.png``/``.pdf``.
"""

from __future__ import annotations

from dataclasses import dataclass

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402

import bounds  # noqa: E402
import finitepref as fp  # noqa: E402
from finitepref import registry  # noqa: E402
from finitepref.coverage import centered_log_probs  # noqa: E402
from finitepref.preference import preference_probs  # noqa: E402
from simulations import _launch, _runner, common, style  # noqa: E402
from simulations.verdicts import Verdict  # noqa: E402

NAME = "bound_check"
STATEMENTS = ("prop12", "eq18", "thm4", "thm6", "thm7")
LABEL = {
    "prop12": r"Prop. 12: $E_\mu[(P_{\hat\pi}-P_*)^2]$ (PMLE)",
    "eq18": r"Eq. (18): $E_\mu[\Delta\bar R_{\hat\pi}^2]$ (PMLE)",
    "thm4": r"Thm 4: $E_x KL(\pi^*\|\hat\pi)$ (PMLE)",
    "thm6": r"Thm 6: $E_x KL(\pi^*\|\hat\pi)$ (distill)",
    "thm7": r"Thm 7: $E_x KL(\hat\pi\|\pi^*)$ (reverse KL)",
}
ESTIMATOR = {"prop12": "pmle", "eq18": "pmle", "thm4": "pmle", "thm6": "distill", "thm7": "reverse_kl"}
PROBLEMS = ("tight", "default")


@dataclass(frozen=True)
class Config(_runner.SweepConfig):
    """Configuration of the bound check. Every field is a command-line flag (``--field-name``).

    seed: master seed; every (problem, n) gets an independent stream via SeedSequence.spawn
    delta: failure probability of the bounds; the (1-delta) quantile is compared with them
    tight_feature_scale: feature scale of the tight problem (small R)
    tight_gamma: gamma of the tight problem
    tight_resolution: net spacing of the tight problem
    default_resolution: net spacing of the default problem (kl_vs_n uses 0.01)
    default_gamma: gamma of the default problem (kl_vs_n uses 0.5)
    reward_stride: reward class = every reward_stride-th net point (Assumption 5 holds)
    problems: which problems to run (tight, default)
    """

    n_min: float = 30
    n_max: float = 1e5
    n_points: int = 6
    delta: float = 0.05
    tight_feature_scale: float = 0.3
    tight_gamma: float = 1.0
    tight_resolution: float = 0.02
    default_resolution: float = 0.01
    default_gamma: float = 0.5
    reward_stride: int = 5
    problems: tuple[str, ...] = ("tight", "default")

    NAME = NAME
    SHARD_CELLS = True
    QUICK = {"n_min": 100, "n_max": 1e4, "n_points": 3, "trials": 200, "tight_resolution": 0.04,
             "default_resolution": 0.04}
    """Coarser nets, three n, 200 trials: under 30 s on 2 cores."""
    POSITIVE = ("tight_feature_scale", "tight_gamma", "tight_resolution", "default_resolution", "default_gamma",
                "reward_stride")

    def check(self) -> None:
        common.check_names("problems", self.problems, PROBLEMS)


def make_problem(cfg: Config, which: str) -> fp.ToyProblem:
    """The tight problem (small R) or the default log-linear problem of kl_vs_n."""
    if which == "tight":
        return fp.ToyProblem.loglinear_grid(resolution=cfg.tight_resolution, gamma=cfg.tight_gamma,
                                            feature_scale=cfg.tight_feature_scale, reward_stride=cfg.reward_stride,
                                            seed=cfg.seed)
    return fp.ToyProblem.loglinear_grid(resolution=cfg.default_resolution, gamma=cfg.default_gamma,
                                        reward_stride=cfg.reward_stride, seed=cfg.seed)


def preference_error_table(prob: fp.ToyProblem) -> np.ndarray:
    r""":math:`\mathbb E_{x\sim\mathcal D,a,b\sim\mu(x)}[(\mathbb P_\pi(a\succ b\mid x) - \mathbb P_*(a\succ b\mid x))^2]` per policy."""
    weight = prob.prompt_probs[:, None, None] * prob.mu[:, :, None] * prob.mu[:, None, :]
    star = preference_probs(prob.log_pi_star, prob.gamma)
    out = torch.empty(prob.n_policies, dtype=torch.float64)
    for s in range(0, prob.n_policies, 8192):
        diff = preference_probs(prob.log_policies[s:s + 8192], prob.gamma) - star
        out[s:s + 8192] = (weight * diff * diff).sum((-3, -2, -1))
    return out.numpy()


def centered_reward_error_table(prob: fp.ToyProblem) -> np.ndarray:
    r""":math:`\mathbb E_{x\sim\mathcal D,a\sim\mu(x)}[\Delta\bar R_\pi(x,a)^2]`, :math:`\Delta\bar R_\pi = \gamma(\overline{\ln\pi} - \overline{\ln\pi^*})`."""
    delta = prob.gamma * (centered_log_probs(prob.log_policies, prob.mu) - centered_log_probs(prob.log_pi_star, prob.mu))
    return ((prob.prompt_probs[:, None] * prob.mu) * delta * delta).sum((-2, -1)).numpy()


def statement_bounds(prob: fp.ToyProblem, n: np.ndarray, delta: float) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """(paper, corrected) bound of every statement at every n."""
    R, g, C_pi, C_r = prob.boundedness(), prob.gamma, prob.coverage(), prob.reward_coverage()
    K, M = prob.n_policies, prob.n_rewards
    p12 = bounds.proposition12(K, n, delta)
    return {
        "prop12": (p12, p12),
        "eq18": (bounds.eq18(R, g, K, n, delta), bounds.eq18_corrected(R, g, K, n, delta)),
        "thm4": (bounds.theorem4(C_pi, R, g, K, n, delta), bounds.theorem4_corrected(C_pi, R, g, K, n, delta)),
        "thm6": (bounds.theorem6(C_pi, R, g, K, M, n, delta), bounds.theorem6_corrected(C_pi, R, g, K, M, n, delta)),
        "thm7": (bounds.theorem7(C_r, R, g, K, M, n, delta), bounds.theorem7_corrected(C_r, R, g, K, M, n, delta)),
    }


def _ci(k: int, trials: int) -> tuple[float, float]:
    return common.clopper_pearson(k, trials)


def sweep(prob: fp.ToyProblem, which: str, cfg: Config, seeds) -> pd.DataFrame:
    """All statements at every n for one problem."""
    ns = common.log_grid(cfg.n_min, cfg.n_max, cfg.n_points)
    tables = {"prop12": preference_error_table(prob), "eq18": centered_reward_error_table(prob),
              **{st: registry.get(ESTIMATOR[st]).error_table(prob) for st in ("thm4", "thm6", "thm7")}}
    bnd = statement_bounds(prob, ns.astype(np.float64), cfg.delta)
    rows = []

    def cell(i: int) -> dict[str, np.ndarray]:
        data = prob.sample(int(ns[i]), cfg.trials, seed=np.random.default_rng(seeds[i]))
        return common.fit_estimators(prob, data, ("pmle", "distill", "reverse_kl"))

    picks = _launch.map_cells(cell, range(len(ns)), desc=f"bound check ({which})", unit="n")
    for i, (n, chosen) in enumerate(zip(ns, picks, strict=True)):
        for st in STATEMENTS:
            err = tables[st][chosen[ESTIMATOR[st]]]
            q = float(np.quantile(err, 1 - cfg.delta))
            row = {"problem": which, "statement": st, "estimator": ESTIMATOR[st], "n": int(n), "trials": cfg.trials,
                   "delta": cfg.delta, "mean_error": float(err.mean()), "quantile": q,
                   "p_correct": float(np.mean(chosen[ESTIMATOR[st]] == prob.star))}
            for tag, b in zip(("", "_corrected"), bnd[st], strict=True):
                b_i = float(np.asarray(b)[i])
                k = int(np.sum(err > b_i))
                lo, hi = _ci(k, cfg.trials)
                row.update({f"bound{tag}": b_i, f"failures{tag}": k, f"failure_freq{tag}": k / cfg.trials,
                            f"cp_low{tag}": lo, f"cp_upper{tag}": hi,
                            f"slack{tag}": b_i / q if q > 0 else np.inf})
            rows.append(row)
    return pd.DataFrame(rows)


def verdict(t: pd.DataFrame, tag: str, delta: float) -> str:
    """AGREES if the CP upper limit is <= delta at every n, DISAGREES if the CP lower limit exceeds delta somewhere."""
    if (t[f"cp_low{tag}"] > delta).any():
        return "DISAGREES"
    return "AGREES" if (t[f"cp_upper{tag}"] <= delta).all() else "INCONCLUSIVE"


def summarize(probs: dict[str, fp.ToyProblem], cfg: Config, table: pd.DataFrame) -> dict:
    out: dict = {"delta": cfg.delta, "problems": {k: p.describe() for k, p in probs.items()}, "statements": {}}
    for (which, st), t in table.groupby(["problem", "statement"], sort=False):
        entry = {}
        for tag in ("", "_corrected"):
            key = "paper" if tag == "" else "corrected"
            finite = t[f"slack{tag}"][np.isfinite(t[f"slack{tag}"])]
            entry[key] = {
                "verdict": verdict(t, tag, cfg.delta),
                "max_failure_freq": float(t[f"failure_freq{tag}"].max()),
                "max_cp_upper": float(t[f"cp_upper{tag}"].max()),
                "min_slack": float(finite.min()) if len(finite) else None,
                "max_slack": float(finite.max()) if len(finite) else None,
                "bound_times_n": float((t[f"bound{tag}"] * t.n).iloc[0]),
            }
        entry["quantile_times_n"] = dict(zip(t.n.astype(int).tolist(), (t["quantile"] * t.n).tolist(), strict=True))
        out["statements"][f"{which}/{st}"] = entry
    return out


def plot(outcome: _runner.Outcome, cfg: Config):
    """One panel per statement (quantile against the paper's and the corrected bound), and the slack."""
    table, summary = outcome.table, outcome.summary
    fig, axes = plt.subplots(2, 3, figsize=(style.WIDTH, 5.4), layout="constrained")
    floor = table["quantile"][table["quantile"] > 0].min() / 4
    for ax, st in zip(axes.flat, STATEMENTS, strict=False):
        for which in PROBLEMS:
            color = style.color(which)
            t = table[(table.statement == st) & (table.problem == which)]
            if t.empty:
                continue
            pos = t["quantile"] > 0
            ax.plot(t.n[pos], t["quantile"][pos], "o-", color=color, ms=4, label=f"{which}: {1 - cfg.delta:g}-quantile")
            if (~pos).any():
                style.mark_zeros(ax, t.n[~pos], floor, color=color)
                ax.text(0.02, 0.02, "open markers: quantile 0", transform=ax.transAxes, fontsize=6)
            ax.plot(t.n, t.bound, "--", color=color, lw=1, label=f"{which}: paper bound")
            if st != "prop12":
                ax.plot(t.n, t.bound_corrected, ":", color=color, lw=1.5, label=f"{which}: corrected bound")
        ax.set(xscale="log", yscale="log", xlabel="n", title=LABEL[st], ylim=(floor, None))
    ax = axes.flat[-1]
    for i, st in enumerate(STATEMENTS):
        for which, ls in (("tight", "-"), ("default", "--")):
            t = table[(table.statement == st) & (table.problem == which)]
            fin = np.isfinite(t.slack_corrected)
            if fin.any():
                ax.plot(t.n[fin], t.slack_corrected[fin], ls, marker="o", ms=3, color=f"C{i}",
                        label=f"{st} ({which})")
    ax.axhline(1, color="k", lw=1)
    ax.set(xscale="log", yscale="log", xlabel="n", ylabel="slack = corrected bound / quantile",
           title="Slack (1 = tight; < 1 = violated)")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=5.5, ncol=2)
    d = summary["problems"]
    return style.finish(fig, "; ".join(f"{k}: |Pi|={v['n_policies']}, gamma={v['gamma']}, R={v['R']:.3g}, C_Pi={v['C_pi']:.3g}"
                                       for k, v in d.items()) + f"; trials={cfg.trials}, delta={cfg.delta}")


def verdicts(outcome: _runner.Outcome, cfg: Config) -> list:
    """One line per problem; one verdict per (statement, constants): P(error > bound) <= delta (Clopper-Pearson)."""
    lines: list = []
    for which, p in outcome.data["problems"].items():
        d = p.describe()
        lines.append(f"{which}: {p}  R={d['R']:.3f}  C_Pi={d['C_pi']:.3f}  C_R={d['C_r']:.3f}")
    for key, e in outcome.summary["statements"].items():
        for version in ("paper", "corrected"):
            v = e[version]
            slack = f"{v['min_slack']:.3g}..{v['max_slack']:.3g}" if v["min_slack"] is not None else "inf (quantile 0)"
            lines.append(Verdict(f"{key} [{version} constants]: P(error > bound) <= delta", v["max_failure_freq"], None,
                                 v["max_cp_upper"], cfg.delta, v["verdict"],
                                 f"max failure frequency over n, CP upper limit as ci_high; slack {slack}"))
    return lines


def run(cfg: Config) -> _runner.Outcome:
    """Every statement on every problem, then the summary."""
    seeds = np.random.SeedSequence(cfg.seed).spawn(len(cfg.problems))
    probs, tables = {}, []
    for which, ss in zip(cfg.problems, seeds, strict=True):
        probs[which] = make_problem(cfg, which)
        tables.append(sweep(probs[which], which, cfg, ss.spawn(cfg.n_points)))
    table = pd.concat(tables, ignore_index=True)
    return _runner.Outcome(table, summarize(probs, cfg, table), data={"problems": probs})


main = _runner.entry(Config, __doc__, run=run, plot=plot, verdicts=verdicts)


if __name__ == "__main__":
    main()
