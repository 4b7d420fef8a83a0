r"""Degeneracy: DPO and RLHF drive a rich class toward deterministic policies; PMLE with its KL term and
reverse KL keep mass. Plus the prior-smoothing picture of Section 5.

What the paper predicts (Section 3 remark, Section 5): DPO (eq. 6) has no explicit regularizer and
may converge to a degenerate distribution when the class is expressive (Fisch et al., 2025); RLHF
(eq. 1) solves :math:`\hat p\propto p_0 e^{\hat r/\beta}`, deterministic as :math:`\beta\to 0`; PMLE with
:math:`\beta > 0` (eq. 5) is anchored by the preference likelihood (its target is :math:`\pi^*`), and
reverse KL (eq. 16) solves :math:`\hat p_k\propto p_{0,k}^{\alpha}e^{r_k/(\beta+\gamma)}`,
:math:`\alpha = \beta/(\beta+\gamma)`: the entropy term smooths the prior, so :math:`\hat p` is not
degenerate even when :math:`p_0` is.

What this script measures, exactly: on a log-linear net with a large radius (it contains
near-deterministic policies) the prompt-weighted entropy :math:`\sum_x\mathcal D(x)H(\hat\pi(x))` and
the mean max-probability of the policy chosen by DPO, RLHF (with the fitted reward of eq. 9), PMLE
with :math:`\beta>0` and reverse KL with :math:`\beta>0`, against n at fixed :math:`\beta` and against
:math:`\beta` at fixed n; and for a K-categorical example, the closed forms of Section 5
(``bounds.prior_smoothing``) drawn as bars and verified to minimise their objectives by an
independent numerical minimisation (scipy, from random starts) and by exhaustive search on a fine
grid of the simplex for K = 3.

IPO (tau = beta) and chi-PO (beta) run on the same data (issue 14); their rows follow the others'.

Run ``python -m simulations.degeneracy`` (about a minute on 2 cores) or ``--quick`` (under 30 s).
Outputs in ``--out``: ``degeneracy.csv``, ``prior_smoothing.csv``, ``summary.json``, ``config.json``,
``degeneracy.png``/``.pdf``.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from scipy import optimize  # noqa: E402
from scipy.special import softmax  # noqa: E402

import bounds  # noqa: E402
import finitepref as fp  # noqa: E402
from finitepref.divergences import entropy  # noqa: E402
from simulations import _launch, _runner, common, style  # noqa: E402
from simulations.verdicts import AGREES, DISAGREES, INCONCLUSIVE, Verdict  # noqa: E402

NAME = "degeneracy"
ESTIMATORS = ("dpo", "rlhf", "pmle_kl", "reverse_kl")
"""Column values of the results; each is a registry estimator run with the KL coefficient beta > 0."""
REGISTRY_NAME = {"pmle_kl": "pmle"}
"""Column value -> registry name where they differ (PMLE with beta > 0 is eq. 5)."""
BEYOND = ("ipo", "chipo")
"""Estimators beyond the paper (issue 14), run with tau = beta (IPO) and beta (chi-PO); their rows follow the others."""


@dataclass(frozen=True)
class Config(_runner.SweepConfig):
    """Configuration of the degeneracy study. Every field is a command-line flag (``--field-name``).

    seed: master seed; every (sweep, point) gets an independent stream via SeedSequence.spawn
    n_min: smallest n of the n sweep
    n_max: largest n of the n sweep
    trials: independent data sets per point
    gamma: tilt of the preference model, eq. (2)
    radius: the net covers [-radius, radius]^2 (large: near-deterministic policies are in the class)
    resolution: net spacing
    feature_scale: scale of the log-linear features
    reward_stride: reward class = every reward_stride-th net point
    beta: KL coefficient of the n sweep (all four estimators)
    betas: KL coefficients of the beta sweep
    n_beta: sample size of the beta sweep
    ps_p0_logits: logits of the reference p0 of the prior-smoothing example
    ps_rewards: rewards r of the prior-smoothing example
    ps_beta: beta of the prior-smoothing example
    ps_gamma: gamma of the prior-smoothing example
    ps_grid: simplex grid denominator of the K = 3 exhaustive check
    """

    gamma: float = 0.5
    radius: float = 6.0
    resolution: float = 0.2
    feature_scale: float = 1.0
    reward_stride: int = 2
    beta: float = 0.05
    betas: tuple[float, ...] = (0.01, 0.03, 0.1, 0.3, 1.0)
    n_beta: int = 1000
    ps_p0_logits: tuple[float, ...] = (4.0, 2.0, 1.0, 0.0, -2.0, -4.0)
    ps_rewards: tuple[float, ...] = (0.0, 0.3, 0.6, 0.4, 1.0, 0.8)
    ps_beta: float = 0.1
    ps_gamma: float = 0.5
    ps_grid: int = 600

    NAME = NAME
    SHARD_CELLS = True
    QUICK = {"resolution": 0.4, "n_points": 3, "betas": (0.01, 0.1, 1.0), "trials": 200, "bootstrap": 200,
             "ps_grid": 200}
    """A coarser net, fewer points and trials: under 30 s on 2 cores."""
    POSITIVE = ("gamma", "radius", "resolution", "feature_scale", "reward_stride", "beta", "betas", "n_beta",
                "ps_beta", "ps_gamma", "ps_grid")

    def check(self) -> None:
        if len(self.ps_p0_logits) != len(self.ps_rewards) or len(self.ps_rewards) < 3:
            raise ValueError(f"ps_p0_logits, ps_rewards: need the same length K >= 3, got {len(self.ps_p0_logits)} "
                             f"and {len(self.ps_rewards)}")
        if self.n_beta > _runner.MAX_N:
            raise ValueError(f"n_beta: must be <= {_runner.MAX_N:.0e}, got {self.n_beta}")


def make_problem(cfg: Config) -> fp.ToyProblem:
    """A wide log-linear net: near-deterministic policies are in the class."""
    return fp.ToyProblem.loglinear_grid(resolution=cfg.resolution, radius=cfg.radius, gamma=cfg.gamma,
                                        feature_scale=cfg.feature_scale, reward_stride=cfg.reward_stride, seed=cfg.seed)


def choose(prob: fp.ToyProblem, data: fp.PreferenceData, beta: float) -> dict[str, np.ndarray]:
    """Chosen policy index per trial of every estimator, all with the KL coefficient ``beta``."""
    return common.fit_estimators(prob, data, ESTIMATORS, {name: {"beta": beta} for name in ESTIMATORS},
                                 aliases=REGISTRY_NAME)


def choose_beyond(prob: fp.ToyProblem, data: fp.PreferenceData, beta: float) -> dict[str, np.ndarray]:
    """Chosen policy index per trial of IPO (tau = beta) and chi-PO (beta)."""
    return common.fit_estimators(prob, data, BEYOND, {"ipo": {"tau": beta}, "chipo": {"beta": beta}})


def sweep(prob: fp.ToyProblem, cfg: Config) -> pd.DataFrame:
    """Entropy and max-probability of every estimator's choice, against n (fixed beta) and against beta (fixed n)."""
    ent = (entropy(prob.log_policies) @ prob.prompt_probs).numpy()
    maxp = (prob.policies.amax(-1) @ prob.prompt_probs).numpy()
    ns = common.log_grid(cfg.n_min, cfg.n_max, cfg.n_points)
    points = [("n", int(n), cfg.beta) for n in ns] + [("beta", cfg.n_beta, b) for b in cfg.betas]
    seeds = np.random.SeedSequence(cfg.seed).spawn(len(points) + 1)
    rng = np.random.default_rng(seeds[-1])
    rng_beyond = np.random.default_rng(np.random.SeedSequence([cfg.seed, 14]))
    rows, beyond = [], []

    def cell(i: int) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
        _, n, beta = points[i]
        data = prob.sample(n, cfg.trials, seed=np.random.default_rng(seeds[i]))
        return choose(prob, data, beta), choose_beyond(prob, data, beta)

    picks = _launch.map_cells(cell, range(len(points)), desc="degeneracy", unit="pt")
    for (kind, n, beta), (paper, more) in zip(points, picks, strict=True):
        chosen = [(name, idx, rng, rows) for name, idx in paper.items()]
        chosen += [(name, idx, rng_beyond, beyond) for name, idx in more.items()]
        for name, idx, ci_rng, out in chosen:
            lo, hi = common.bootstrap_mean_ci(ent[idx], ci_rng, resamples=cfg.bootstrap)
            out.append({"sweep": kind, "estimator": name, "n": n, "beta": beta, "trials": cfg.trials,
                         "mean_entropy": ent[idx].mean(), "ci_low": lo, "ci_high": hi,
                         "mean_max_prob": maxp[idx].mean(), "entropy_star": float(ent[prob.star]),
                         "max_prob_star": float(maxp[prob.star]), "mean_forward_kl": prob.forward_kl(idx).mean(),
                         "min_entropy_in_class": float(ent.min())})
    return pd.DataFrame(rows + beyond)


def prior_smoothing(cfg: Config) -> tuple[pd.DataFrame, dict]:
    """Closed forms of Section 5 and their numerical verification."""
    p0 = softmax(np.asarray(cfg.ps_p0_logits))
    r = np.asarray(cfg.ps_rewards)
    b, g = cfg.ps_beta, cfg.ps_gamma
    rlhf = bounds.rlhf_solution(p0, r, b + g)
    rkl = bounds.reverse_kl_solution(p0, r, b, g)
    smooth = bounds.smoothed_prior(p0, b, g)

    def objectives(p0_, r_):
        return {"rlhf": lambda p: bounds.reverse_kl_objective(p, p0_, r_, b + g, 0.0),
                "reverse_kl": lambda p: bounds.reverse_kl_objective(p, p0_, r_, b, g)}

    rng = np.random.default_rng(np.random.SeedSequence(cfg.seed).spawn(3)[2])
    check = {}
    for name, obj in objectives(p0, r).items():
        best = None
        for _ in range(5):  # random starts on the logits; the objective is strictly convex in p
            res = optimize.minimize(lambda z, obj=obj: float(obj(softmax(z))), rng.standard_normal(len(p0)),
                                    method="BFGS", options={"gtol": 1e-12})
            if best is None or res.fun < best.fun:
                best = res
        closed = rlhf if name == "rlhf" else rkl
        check[name] = {"max_abs_diff_scipy": float(np.abs(softmax(best.x) - closed).max()),
                       "objective_closed": float(obj(closed)), "objective_scipy": float(best.fun),
                       "closed_le_scipy": bool(obj(closed) <= best.fun + 1e-12)}
    # exhaustive search on the simplex grid {k/N} for K = 3 (first three categories, renormalised)
    p3, r3 = p0[:3] / p0[:3].sum(), r[:3]
    N = cfg.ps_grid
    grid = np.array([(i, j, N - i - j) for i, j in itertools.product(range(N + 1), repeat=2) if i + j <= N]) / N
    for name, obj in objectives(p3, r3).items():
        vals = obj(grid)
        arg = grid[int(np.argmin(vals))]
        closed = (bounds.rlhf_solution(p3, r3, b + g) if name == "rlhf" else bounds.reverse_kl_solution(p3, r3, b, g))
        check[name].update({"grid_argmin_k3": arg.tolist(), "closed_k3": closed.tolist(),
                            "grid_max_abs_diff_k3": float(np.abs(arg - closed).max()),
                            "grid_objective_ge_closed_k3": bool(vals.min() >= obj(closed) - 1e-12)})
    table = pd.DataFrame({"k": np.arange(len(p0)), "p0": p0, "smoothed_p0": smooth, "reward": r,
                          "rlhf": rlhf, "reverse_kl": rkl})
    ent = {k: float(-(v * np.log(v)).sum()) for k, v in (("p0", p0), ("rlhf", rlhf), ("reverse_kl", rkl))}
    return table, {"alpha": b / (b + g), "entropy": ent, "verification": check, "grid_step": 1.0 / N}


def _line(name: str, cfg: Config) -> dict:
    """Style of an estimator of this study: every one runs with beta > 0 (IPO with tau = beta)."""
    line = style.line(name, beta=cfg.beta, estimator=REGISTRY_NAME.get(name, name))
    if name == "ipo":
        line["label"] += r" ($\tau=\beta$)"
    return {**line, "ls": "--" if name in BEYOND else "-"}


def _note_identical(ax, t0: pd.DataFrame, column: str) -> None:
    note = style.identical_note({style.short_label(REGISTRY_NAME.get(k, k)): t0[t0.estimator == k][column].to_numpy()
                                 for k in (*ESTIMATORS, *BEYOND)}, digits=6)
    if note:
        ax.text(0.02, 0.98, note, transform=ax.transAxes, fontsize=6.5, va="top")


def plot(outcome: _runner.Outcome, cfg: Config):
    """Entropy against n and against beta, max-probability against beta, and the prior-smoothing bars."""
    table, ps, ps_summary = outcome.table, outcome.files["prior_smoothing.csv"], outcome.summary["prior_smoothing"]
    fig, axes = plt.subplots(2, 2, figsize=(style.WIDTH, 6.2), layout="constrained")
    axes = axes.ravel()
    shift = style.offsets((*ESTIMATORS, *BEYOND), 0.025)  # small x offsets: coinciding curves stay visible
    for ax, (kind, x) in zip(axes[:2], (("n", "n"), ("beta", "beta")), strict=True):
        t0 = table[table.sweep == kind]
        for name in (*ESTIMATORS, *BEYOND):
            t = t0[t0.estimator == name]
            style.mean_with_band(ax, t[x] * shift[name], t.mean_entropy, t.ci_low, t.ci_high, log_y=False, **_line(name, cfg))
        ax.axhline(t0.entropy_star.iloc[0], color="k", ls=":", label=r"$\pi^*$")
        _note_identical(ax, t0, "mean_entropy")
        ax.axhline(t0.min_entropy_in_class.iloc[0], color="0.5", ls="--", lw=1, label="least entropy in class")
        ax.set(xscale="log", xlabel=x, ylabel=r"$E_x H(\hat\pi(x))$ (nats)",
               title=(f"vs n (beta = {cfg.beta:g})" if kind == "n" else f"vs beta (n = {cfg.n_beta})"))
    ax = axes[2]
    t0 = table[table.sweep == "beta"]
    for name in (*ESTIMATORS, *BEYOND):
        t = t0[t0.estimator == name]
        ax.plot(t.beta * shift[name], t.mean_max_prob, ms=4, **_line(name, cfg))
    ax.axhline(t0.max_prob_star.iloc[0], color="k", ls=":", label=r"$\pi^*$")
    _note_identical(ax, t0, "mean_max_prob")
    ax.set(xscale="log", xlabel="beta", ylabel=r"$E_x \max_a \hat\pi(a|x)$", title=f"Max probability (n = {cfg.n_beta})")
    ax = axes[3]
    w = 0.2
    k = ps.k.to_numpy()
    for j, (col, lab) in enumerate((("p0", r"$p_0$"), ("smoothed_p0", r"$p_0^\alpha$ (normalised)"),
                                    ("rlhf", r"RLHF $p_0 e^{r/(\beta+\gamma)}$"),
                                    ("reverse_kl", r"reverse KL $p_0^\alpha e^{r/(\beta+\gamma)}$"))):
        ax.bar(k + (j - 1.5) * w, ps[col], width=w, label=lab, color=f"C{j}", alpha=0.6)
    ax.legend(fontsize=6.5)
    e = ps_summary["entropy"]
    ax.set(xlabel="category k", ylabel="probability", xticks=k,
           title=f"Prior smoothing (alpha={ps_summary['alpha']:.3g}); entropy:\np0 {e['p0']:.2f}, RLHF {e['rlhf']:.2f}, "
                 f"reverse KL {e['reverse_kl']:.2f}")
    return style.finish(fig, f"Log-linear net radius {cfg.radius}, spacing {cfg.resolution}, gamma={cfg.gamma}; trials={cfg.trials}, "
                             f"seed={cfg.seed}; bands: 95% bootstrap CI")


def _entropy_verdicts(outcome: _runner.Outcome, cfg: Config) -> list:
    """At the smallest beta: DPO/RLHF below PMLE+KL and reverse KL; IPO and chi-PO against DPO."""
    t = outcome.table
    low = t[(t.sweep == "beta") & (t.beta == min(cfg.betas))].set_index("estimator")
    keep = min(low.mean_entropy["pmle_kl"], low.mean_entropy["reverse_kl"])
    at = f"beta = {min(cfg.betas):g}, n = {cfg.n_beta}"
    out = []
    for base in ("dpo", "rlhf"):
        r = low.loc[base]
        out.append(Verdict(f"{style.short_label(base)} degenerates (entropy below PMLE+KL's and reverse KL's) at small beta",
                           r.mean_entropy, r.ci_low, r.ci_high, keep, AGREES if r.mean_entropy < keep else DISAGREES,
                           f"{at}; reference = the lower of PMLE+KL's and reverse KL's entropies"))
    for name in BEYOND:
        r, dpo = low.loc[name], low.loc["dpo"]
        above, not_above = r.ci_low > dpo.ci_high, r.ci_high <= dpo.ci_high and r.mean_entropy <= dpo.mean_entropy
        outcome_ = AGREES if above else DISAGREES if not_above else INCONCLUSIVE
        out.append(Verdict(f"{style.short_label(name)} keeps more mass than DPO at small {'tau' if name == 'ipo' else 'beta'}"
                           " (its authors' claim)", r.mean_entropy, r.ci_low, r.ci_high, float(dpo.mean_entropy),
                           outcome_, f"{at}; entropy vs DPO's (CIs compared)"))
    return out


def verdicts(outcome: _runner.Outcome, cfg: Config) -> list:
    """Degeneracy of DPO and RLHF (and IPO, chi-PO) against PMLE+KL and reverse KL; the prior-smoothing checks."""
    summary, prob = outcome.summary, outcome.data["problem"]
    ps_summary = summary["prior_smoothing"]
    lines: list = [f"problem: {prob}  H(pi*) = {summary['entropy_star']:.3f}, least entropy in class "
                   f"{summary['min_entropy_in_class']:.3f}; entropy at the largest n (beta = {cfg.beta:g}): "
                   + ", ".join(f"{k} {v:.3f}" for k, v in summary["entropy_at_largest_n"].items())]
    lines += _entropy_verdicts(outcome, cfg)
    for name, c in ps_summary["verification"].items():
        ok = c["max_abs_diff_scipy"] < 1e-5 and c["closed_le_scipy"] and c["grid_objective_ge_closed_k3"] \
            and c["grid_max_abs_diff_k3"] <= 1.5 / cfg.ps_grid
        lines.append(Verdict(f"prior smoothing, {name}: the closed form minimises its objective (Section 5)",
                             c["max_abs_diff_scipy"], None, None, 0.0, AGREES if ok else DISAGREES,
                             f"max |closed - scipy|; K=3 grid argmin within {c['grid_max_abs_diff_k3']:.2e} "
                             f"(grid step {1 / cfg.ps_grid:.1e}); entropies p0 {ps_summary['entropy']['p0']:.3f}, "
                             f"RLHF {ps_summary['entropy']['rlhf']:.3f}, reverse KL {ps_summary['entropy']['reverse_kl']:.3f}"))
    return lines


def run(cfg: Config) -> _runner.Outcome:
    """The two sweeps on the net and the prior-smoothing example, summarized."""
    prob = make_problem(cfg)
    table = sweep(prob, cfg)
    ps, ps_summary = prior_smoothing(cfg)
    low_beta = table[(table.sweep == "beta") & (table.beta == min(cfg.betas))].set_index("estimator")
    big_n = table[(table.sweep == "n") & (table.n == table.n.max())].set_index("estimator")
    summary = {"problem": prob.describe(), "entropy_star": float(table.entropy_star.iloc[0]),
               "min_entropy_in_class": float(table.min_entropy_in_class.iloc[0]),
               "entropy_at_smallest_beta": low_beta.mean_entropy.to_dict(),
               "max_prob_at_smallest_beta": low_beta.mean_max_prob.to_dict(),
               "entropy_at_largest_n": big_n.mean_entropy.to_dict(), "prior_smoothing": ps_summary}
    return _runner.Outcome(table, summary, files={"prior_smoothing.csv": ps}, data={"problem": prob})


main = _runner.entry(Config, __doc__, run=run, plot=plot, verdicts=verdicts)


if __name__ == "__main__":
    main()
