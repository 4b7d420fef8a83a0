r"""Coverage gap: a class with C_Pi >> C_R, where reverse KL should beat PMLE and preference distillation.

What the paper predicts (Section 5, "Why does reverse KL attain a better bound?"): Theorems 4 and 6
bound PMLE and distillation by :math:`C_\Pi\ln(|\Pi|/\delta)/(\gamma^2 n)`, Theorem 7 bounds reverse KL
by :math:`\ln(|\Pi|/\delta)/n + C_{\mathcal R}\ln(|\mathcal R|/\delta)/(\gamma^2 n)`; under Assumption 5,
when :math:`C_\Pi \gg C_{\mathcal R}` reverse KL should be better, because distillation's *policy*
step still uses the responses drawn from :math:`\mu`, while reverse KL uses them only for the reward
model.

The instance (built here, exactly): 2 prompts, 4 responses; :math:`\mu` puts mass ``mu_rare`` on one
"rare" response per prompt, on which :math:`\pi^*` puts about ``pi_rare``. The class is a product:
:math:`\ln\pi_{\theta,c} = \ln\pi^* + \theta\cdot\phi(x,a) + c_x\mathbf 1[a = \mathrm{rare}_x]` (normalised),
with :math:`\theta` on a grid (features :math:`\phi` supported on the common responses) and :math:`c`
on a grid per prompt. The reward class is :math:`\{\gamma(\ln\pi^* + \theta\cdot\phi)\}`: its induced
policies are the members with :math:`c = 0` (Assumption 5), all exact on the rare responses and
well covered (small :math:`C_{\mathcal R}`), while members with :math:`c\ne 0` differ from
:math:`\pi^*` mostly where :math:`\mu` is small (large :math:`C_\Pi\approx\pi^*(\mathrm{rare})/\mu(\mathrm{rare})`).
The policies are stored in a random order, so the lowest-index tie-break of the argmin favours no one.

What this script measures: exact forward and reverse KL of PMLE (eq. 4), preference distillation
(eq. 11) and reverse KL (eq. 15) on the same data sets at each n, mean with bootstrap CIs, and the
paired difference (PMLE - reverse KL, distill - reverse KL) with a bootstrap CI; it reports where
reverse KL wins, and by how much.

Run ``python -m simulations.coverage_gap`` (under a minute on 2 cores) or ``--quick`` (under 30 s).
Outputs in ``--out``: ``coverage_gap.csv``, ``summary.json``, ``config.json``, ``coverage_gap.png``/``.pdf``.
"""

from __future__ import annotations

import itertools
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
from simulations import _launch, _runner, common, style  # noqa: E402
from simulations.verdicts import AGREES, DISAGREES, INCONCLUSIVE, Verdict  # noqa: E402

NAME = "coverage_gap"
ESTIMATORS = registry.names(learns_pi_star=True)
BASELINE = "reverse_kl"
"""The estimator the others are compared with (Section 5: it should win when C_Pi >> C_R)."""


@dataclass(frozen=True)
class Config(_runner.SweepConfig):
    """Configuration of the coverage-gap instance and sweep. Every field is a command-line flag (``--field-name``).

    seed: master seed (instance and data); every n gets an independent stream via SeedSequence.spawn
    gamma: tilt of the preference model, eq. (2)
    mu_rare: mass of mu on the rare response of each prompt
    pi_rare: mass of pi* on the rare response of each prompt
    theta_values: grid values of each of the two reward parameters theta (common responses)
    rare_values: number of grid values of the rare-response shift c_x per prompt
    rare_range: the rare shift c_x ranges over [-rare_range, rare_range]
    delta: delta of the bounds reported beside the measurement
    """

    n_points: int = 9
    gamma: float = 1.0
    mu_rare: float = 0.01
    pi_rare: float = 0.25
    theta_values: tuple[float, ...] = (-1.0, -0.5, 0.0, 0.5, 1.0)
    rare_values: int = 11
    rare_range: float = 1.5
    delta: float = 0.05

    NAME = NAME
    SHARD_CELLS = True
    QUICK = {"n_points": 5, "trials": 200, "bootstrap": 200}
    """Fewer n and trials: under 30 s on 2 cores."""
    POSITIVE = ("gamma", "rare_values")
    PROBABILITIES = ("delta", "mu_rare", "pi_rare")

    def check(self) -> None:
        if 0.0 not in self.theta_values:
            raise ValueError(f"theta_values: must contain 0 (pi* in the class), got {self.theta_values}")
        if self.rare_range < 0:
            raise ValueError(f"rare_range: must be >= 0, got {self.rare_range}")


def make_problem(cfg: Config) -> fp.ToyProblem:
    """The product class described in the module docstring."""
    rng = np.random.default_rng(np.random.SeedSequence(cfg.seed).spawn(2)[0])
    X, A = 2, 4
    rare = A - 1
    mu = np.full((X, A), (1 - cfg.mu_rare) / (A - 1))
    mu[:, rare] = cfg.mu_rare
    common_logits = rng.standard_normal((X, A - 1))
    rare_logit = np.log(cfg.pi_rare / (1 - cfg.pi_rare)) + np.log(np.exp(common_logits).sum(1, keepdims=True))
    log_star = torch.log_softmax(torch.as_tensor(np.concatenate([common_logits, rare_logit], 1)), -1).numpy()
    phi = np.zeros((X, A, 2))
    phi[:, :rare] = rng.standard_normal((X, A - 1, 2))
    thetas = np.array(list(itertools.product(cfg.theta_values, repeat=2)))
    shifts = np.linspace(-cfg.rare_range, cfg.rare_range, cfg.rare_values) if cfg.rare_values > 1 else np.zeros(1)
    if not np.any(np.isclose(shifts, 0.0)):
        shifts = np.sort(np.append(shifts, 0.0))
    cs = np.array(list(itertools.product(shifts, repeat=X)))
    logits = (log_star[None, None] + np.einsum("td,xad->txa", thetas, phi)[:, None]
              + np.eye(A)[rare][None, None, None, :] * cs[None, :, :, None])  # (T, C, X, A)
    logits = logits.reshape(-1, X, A)
    order = rng.permutation(logits.shape[0])
    log_pol = torch.log_softmax(torch.as_tensor(logits[order]), -1)
    inverse = np.argsort(order)
    t0 = int(np.flatnonzero(np.all(thetas == 0, 1))[0])
    c0 = int(np.flatnonzero(np.all(np.isclose(cs, 0), 1))[0])
    star = int(inverse[t0 * len(cs) + c0])
    rewards = cfg.gamma * torch.as_tensor(log_star[None] + np.einsum("td,xad->txa", thetas, phi))
    induced = [int(inverse[t * len(cs) + c0]) for t in range(len(thetas))]
    meta = {"kind": "coverage_gap", "mu_rare": cfg.mu_rare, "pi_rare": cfg.pi_rare, "reward_policy_index": induced}
    return fp.ToyProblem(np.full(X, 1.0 / X), mu, log_pol, star, cfg.gamma, rewards=rewards, log_space=True, meta=meta)


def sweep(prob: fp.ToyProblem, cfg: Config) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Every estimator's forward and reverse KL at every n, and each one's paired difference to reverse KL."""
    ns = common.log_grid(cfg.n_min, cfg.n_max, cfg.n_points)
    seeds = np.random.SeedSequence(cfg.seed).spawn(len(ns) + 2)
    rng = np.random.default_rng(seeds[-1])
    tables = {"forward": prob.forward_kl_table(), "reverse": prob.reverse_kl_table()}
    rows, diffs = [], []

    def cell(i: int) -> dict[str, np.ndarray]:
        return common.fit_estimators(prob, prob.sample(int(ns[i]), cfg.trials, seed=np.random.default_rng(seeds[i])),
                                     ESTIMATORS)

    for n, chosen in zip(ns, _launch.map_cells(cell, range(len(ns)), desc="coverage gap", unit="n"), strict=True):
        for name, idx in chosen.items():
            for div, tab in tables.items():
                e = tab[idx]
                lo, hi = common.bootstrap_mean_ci(e, rng, resamples=cfg.bootstrap)
                rows.append({"estimator": name, "divergence": div, "n": int(n), "trials": cfg.trials,
                             "mean_kl": e.mean(), "ci_low": lo, "ci_high": hi, "n_kl": n * e.mean(),
                             "p_correct": float(np.mean(idx == prob.star))})
        for name in (e for e in ESTIMATORS if e != BASELINE):
            for div, tab in tables.items():
                d = tab[chosen[name]] - tab[chosen[BASELINE]]
                lo, hi = common.bootstrap_mean_ci(d, rng, resamples=cfg.bootstrap)
                rkl = tab[chosen[BASELINE]].mean()
                diffs.append({"versus": name, "divergence": div, "n": int(n), "mean_difference": d.mean(),
                              "ci_low": lo, "ci_high": hi,
                              "ratio": tab[chosen[name]].mean() / rkl if rkl > 0 else np.inf})
    return pd.DataFrame(rows), pd.DataFrame(diffs)


def summarize(prob: fp.ToyProblem, cfg: Config, diffs: pd.DataFrame) -> dict:
    """The problem's constants, the bounds' constants and shapes, and where reverse KL wins."""
    d = prob.describe()
    R, g, K, M = d["R"], prob.gamma, prob.n_policies, prob.n_rewards
    out = {"problem": d, "concentrability": prob.concentrability(),
           "bound_constants_corrected": {
               "thm4_pmle": float(bounds.theorem4_corrected(d["C_pi"], R, g, K, 1, cfg.delta)),
               "thm6_distill": float(bounds.theorem6_corrected(d["C_pi"], R, g, K, M, 1, cfg.delta)),
               "thm7_reverse_kl": float(bounds.theorem7_corrected(d["C_r"], R, g, K, M, 1, cfg.delta))},
           "bound_shapes": {"C_pi ln(|Pi|/delta)/gamma^2": d["C_pi"] * np.log(K / cfg.delta) / g**2,
                            "ln(|Pi|/delta) + C_R ln(|R|/delta)/gamma^2":
                                np.log(K / cfg.delta) + d["C_r"] * np.log(M / cfg.delta) / g**2},
           "comparisons": {}}
    for (versus, div), t in diffs.groupby(["versus", "divergence"], sort=False):
        wins = t[t.ci_low > 0]
        loses = t[t.ci_high < 0]
        out["comparisons"][f"{versus}_minus_reverse_kl/{div}"] = {
            "n_where_reverse_kl_better": wins.n.astype(int).tolist(),
            "n_where_reverse_kl_worse": loses.n.astype(int).tolist(),
            "ratio_by_n": dict(zip(t.n.astype(int).tolist(), t.ratio.tolist(), strict=True)),
            "max_ratio": float(t.ratio[np.isfinite(t.ratio)].max()) if np.isfinite(t.ratio).any() else None,
        }
    return out


def plot(outcome: _runner.Outcome, cfg: Config):
    """Forward and reverse KL of every estimator against n, and the error ratios to reverse KL."""
    table, diffs, summary = outcome.table, outcome.data["differences"], outcome.summary
    fig, axes = plt.subplots(1, 3, figsize=(style.WIDTH, 3.1), layout="constrained")
    floor = table.mean_kl[table.mean_kl > 0].min() / 4
    shift = style.offsets(ESTIMATORS, 0.03)
    for ax, div in zip(axes[:2], ("forward", "reverse"), strict=True):
        zeros = [style.short_label(name) for name in ESTIMATORS
                 if style.mean_with_band(ax, (t := table[(table.estimator == name) & (table.divergence == div)]).n
                                         * shift[name], t.mean_kl, t.ci_low, t.ci_high, floor=floor, **style.line(name))]
        ax.set(xscale="log", yscale="log", xlabel="n", ylim=(floor, None), title=f"{div}: E_x KL("
               + ("pi*||pi_hat)" if div == "forward" else "pi_hat||pi*)"))
        if zeros:
            ax.text(0.02, 0.02, "open markers on the floor: E[KL] = 0\n(" + ", ".join(zeros) + ")",
                    transform=ax.transAxes, fontsize=6.5)
    ax = axes[2]
    for (versus, div), t in diffs.groupby(["versus", "divergence"], sort=False):
        fin = np.isfinite(t.ratio)
        ax.plot(t.n[fin], t.ratio[fin], "o-" if div == "forward" else "s--", color=style.color(versus), ms=4,
                label=f"{style.short_label(versus)} / reverse KL ({div})")
    ax.axhline(1, color="k", lw=1)
    ax.set(xscale="log", yscale="log", xlabel="n", ylabel="mean error ratio", title="error ratio (> 1: reverse KL better)")
    d = summary["problem"]
    return style.finish(fig, f"|Pi|={d['n_policies']}, |R|={d['n_rewards']}, gamma={d['gamma']}, R={d['R']:.3g}, "
                             f"C_Pi={d['C_pi']:.3g}, C_R={d['C_r']:.3g}, mu(rare)={cfg.mu_rare}, trials={cfg.trials}, seed={cfg.seed}")


def verdicts(outcome: _runner.Outcome, cfg: Config) -> list:
    """The problem's constants, the bound shapes, and per comparison whether reverse KL is better (Section 5)."""
    summary = outcome.summary
    d, shapes = summary["problem"], summary["bound_shapes"]
    lines: list = [f"problem: {outcome.data['problem']}  R={d['R']:.3f}  C_Pi={d['C_pi']:.3f}  C_R={d['C_r']:.3f}  "
                   f"(l_inf concentrability {summary['concentrability']:.3g}); bound shapes C_Pi ln(|Pi|/d)/g^2 = "
                   f"{shapes['C_pi ln(|Pi|/delta)/gamma^2']:.3g} vs ln(|Pi|/d) + C_R ln(|R|/d)/g^2 = "
                   f"{shapes['ln(|Pi|/delta) + C_R ln(|R|/delta)/gamma^2']:.3g}"]
    for key, c in summary["comparisons"].items():
        better, worse = c["n_where_reverse_kl_better"], c["n_where_reverse_kl_worse"]
        outcome_ = AGREES if better and not worse else DISAGREES if worse and not better else INCONCLUSIVE
        ratios = ", ".join(f"{n}: {r:.3g}" for n, r in c["ratio_by_n"].items())
        best = max(c["ratio_by_n"].values()) if c["ratio_by_n"] else None
        lines.append(Verdict(f"{key}: reverse KL beats it when C_Pi >> C_R (Section 5)", best, None, None,
                             "ratio > 1 at some n, never significantly < 1", outcome_,
                             f"largest error ratio; better at n={better}, worse at n={worse}; ratio by n {{{ratios}}}"))
    return lines


def run(cfg: Config) -> _runner.Outcome:
    """Build the instance, sweep n, summarize; the paired differences go to config.json."""
    prob = make_problem(cfg)
    table, diffs = sweep(prob, cfg)
    return _runner.Outcome(table, summarize(prob, cfg, diffs), extra={"differences": diffs.to_dict("list")},
                           data={"problem": prob, "differences": diffs})


main = _runner.entry(Config, __doc__, run=run, plot=plot, verdicts=verdicts)


if __name__ == "__main__":
    main()
