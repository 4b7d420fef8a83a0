r"""Two regimes: a small finite class with a gap (exact recovery, exponentially fast) beside an
epsilon-net of a log-linear family (the 1/n regime).

What the paper predicts: Theorem 4 gives :math:`\mathbb E_x\mathrm{KL}(\pi^*\|\hat\pi) = O(\ln(|\Pi|/\delta)/n)`
for any finite class. For a small class whose policies are all at a positive distance from
:math:`\pi^*`, more is true and follows from the same likelihood-ratio argument as Proposition 12: the
preference MLE picks a wrong policy only if its empirical log-likelihood beats :math:`\pi^*`'s, and by
Chernoff's bound

.. math:: \mathbb P(\hat\pi\ne\pi^*) \le \sum_{\pi\ne\pi^*} \mathbb P\Bigl(\textstyle\sum_i Z_\pi^{(i)} \ge 0\Bigr)
          \le \sum_{\pi\ne\pi^*} e^{-n c_\pi},\qquad
          c_\pi = -\ln\min_{s\in[0,1]}\mathbb E\bigl[e^{s Z_\pi}\bigr],

with :math:`Z_\pi = \ln\mathbb P_\pi(a^+\succ a^-\mid x) - \ln\mathbb P_*(a^+\succ a^-\mid x)` per sample
(:math:`s = 1/2` is the Bhattacharyya coefficient of Proposition 12's proof). So E[KL] reaches exactly
0, :math:`\mathbb P(\hat\pi\ne\pi^*)` decays like :math:`e^{-n c_{\min}}` (times :math:`n^{-1/2}`,
Bahadur-Rao), faster than any power of n. On a fine net the error instead follows 1/n.

What this script measures, exactly: on ``ToyProblem.random`` (20 policies, spread 1) the frequency of
:math:`\hat\pi\ne\pi^*` with Clopper-Pearson intervals over a linear grid of n, against the union
bound; the rate fitted to :math:`\ln\mathbb P(\hat\pi\ne\pi^*) + \tfrac12\ln n` on the n where at least
``min_wrong`` and at most 20% of the trials are wrong (a fit only inside the exponential drop) against :math:`c_{\min}`; and,
on a log-linear net, the OLS slope of log E[KL] on log n over a declared window (no slope is ever
fitted across the drop of the finite class).

Run ``python -m simulations.finite_vs_net`` (about 1 minute on 2 cores) or ``--quick`` (under 30 s).
Outputs in ``--out``: ``finite_vs_net.csv``, ``summary.json``, ``config.json``, ``finite_vs_net.png``/``.pdf``.
"""

from __future__ import annotations

from dataclasses import dataclass

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402
from scipy import optimize  # noqa: E402

import finitepref as fp  # noqa: E402
from simulations import _launch, _runner, common, style  # noqa: E402
from simulations.verdicts import AGREES, DISAGREES, INCONCLUSIVE, Verdict, interval_verdict  # noqa: E402

NAME = "finite_vs_net"


@dataclass(frozen=True)
class Config(_runner.ScriptConfig):
    """Configuration of the two-regime comparison. Every field is a command-line flag (``--field-name``).

    seed: master seed; every (class, n) gets an independent stream via SeedSequence.spawn
    n_policies: size of the gapped random class
    spread: logit noise of the gapped class (ToyProblem.random)
    gamma: gamma of the gapped class
    finite_trials: independent data sets per n for the gapped class
    finite_points: number of linearly spaced n for the gapped class
    finite_n_max: largest n of the gapped class (<= 0: chosen so that the union bound reaches 1/(10 trials))
    min_wrong: fit the exponential rate only on n with at least this many wrong trials
    net_resolution: spacing of the log-linear net
    net_gamma: gamma of the log-linear net
    net_trials: independent data sets per n for the net
    n_min: smallest n of the net
    n_max: largest n of the net
    n_points: number of log-spaced n for the net
    window_min: smallest n of the net's slope window
    window_max: largest n of the net's slope window
    bootstrap: resamples for CIs
    """

    n_policies: int = 20
    spread: float = 1.0
    gamma: float = 1.0
    finite_trials: int = 4000
    finite_points: int = 16
    finite_n_max: int = 0
    min_wrong: int = 10
    net_resolution: float = 0.01
    net_gamma: float = 0.5
    net_trials: int = 1000
    n_min: float = 10
    n_max: float = 1e5
    n_points: int = 9
    window_min: float = 1000
    window_max: float = 3e4
    bootstrap: int = 1000

    NAME = NAME
    SHARD_CELLS = True
    QUICK = {"finite_trials": 1000, "finite_points": 10, "net_resolution": 0.04, "net_trials": 200, "n_points": 5,
             "n_max": 1e4, "window_min": 300, "window_max": 1e4, "bootstrap": 200}
    """Fewer trials and n, a coarser net: under 30 s on 2 cores."""
    POSITIVE = ("spread", "gamma", "net_resolution", "net_gamma", "window_min", "window_max")
    AT_LEAST_ONE = ("finite_trials", "net_trials", "bootstrap", "min_wrong")

    def check(self) -> None:
        if self.n_policies < 2 or self.finite_points < 2:
            raise ValueError(f"n_policies, finite_points: need >= 2 each, got {self.n_policies}, {self.finite_points}")
        _runner.check_sample_grid(self.n_min, self.n_max, self.n_points)
        if self.window_min > self.window_max:
            raise ValueError(f"window_min: must be <= window_max={self.window_max}, got {self.window_min}")


def chernoff_rates(prob: fp.ToyProblem) -> tuple[np.ndarray, np.ndarray]:
    r"""Per policy: Chernoff rate :math:`c_\pi` and Bhattacharyya rate :math:`-\ln\mathbb E[e^{Z_\pi/2}]` (0 for pi*)."""
    law = prob.law().reshape(-1)
    law = law / law.sum()  # the sampler (preference.sample_counts) normalises the law the same way
    winner, loser = prob.log_policies[:, :, :, None], prob.log_policies[:, :, None, :]
    logp = fp.losses.preference_logit(winner, loser, prob.gamma)
    z = (torch.nn.functional.logsigmoid(logp)
         - torch.nn.functional.logsigmoid(logp[prob.star])).reshape(prob.n_policies, -1).numpy()
    keep = law > 0
    chern, bhat = np.zeros(prob.n_policies), np.zeros(prob.n_policies)
    for k in range(prob.n_policies):
        if k == prob.star:
            continue

        def log_mgf(s, zk=z[k, keep]):
            return float(np.log(np.sum(law[keep] * np.exp(s * zk))))

        res = optimize.minimize_scalar(log_mgf, bounds=(0.0, 1.0), method="bounded", options={"xatol": 1e-10})
        chern[k] = -min(res.fun, 0.0)
        bhat[k] = -log_mgf(0.5)
    return chern, bhat


def _pmle_at(prob: fp.ToyProblem, cell: tuple[int, np.random.SeedSequence], trials: int) -> np.ndarray:
    """The preference MLE's choice per trial on ``trials`` data sets of size n drawn from the cell's seed."""
    n, seed = cell
    return fp.estimators.pmle(prob, prob.sample(int(n), trials, seed=np.random.default_rng(seed)))


def finite_sweep(prob: fp.ToyProblem, cfg: Config, ss: np.random.SeedSequence, chern: np.ndarray):
    """Gapped class over a linear n grid."""
    others = np.delete(chern, prob.star)
    c_min = float(others.min())
    n_max = cfg.finite_n_max if cfg.finite_n_max > 0 else int(np.ceil(np.log(10 * cfg.finite_trials * len(others))
                                                                       / c_min))
    ns = np.unique(np.linspace(max(1, n_max // cfg.finite_points), n_max, cfg.finite_points).round().astype(np.int64))
    fwd = prob.forward_kl_table()
    rows, wrong = [], np.empty((len(ns), cfg.finite_trials), dtype=bool)
    cells = list(zip(ns, ss.spawn(len(ns)), strict=True))
    picks = _launch.map_cells(lambda c: _pmle_at(prob, c, cfg.finite_trials), cells, desc="gapped class", unit="n")
    for i, (n, idx) in enumerate(zip(ns, picks, strict=True)):
        wrong[i] = idx != prob.star
        k = int(wrong[i].sum())
        ci_low, ci_high = common.clopper_pearson(k, cfg.finite_trials)
        e = fwd[idx]
        rows.append({"regime": "finite_gap", "n": int(n), "trials": cfg.finite_trials, "mean_kl": e.mean(),
                     "ci_low": np.nan, "ci_high": np.nan, "p_correct": 1 - k / cfg.finite_trials, "n_wrong": k,
                     "p_wrong_ci_low": ci_low, "p_wrong_ci_high": ci_high,
                     "union_bound": float(np.minimum(1.0, np.exp(-n * others).sum())),
                     "n_kl": n * e.mean()})
    return pd.DataFrame(rows), wrong, c_min


def fit_rate(ns: np.ndarray, wrong: np.ndarray, min_wrong: int, rng: np.random.Generator, resamples: int) -> dict:
    r"""Rate c of :math:`\ln\mathbb P(\hat\pi\ne\pi^*) + \frac12\ln n = a - c n` (and without the correction), CI by resampling trials."""
    k = wrong.sum(1)
    win = (k >= min_wrong) & (k <= 0.2 * wrong.shape[1])  # the tail, where one competitor dominates
    if win.sum() < 2:
        return {"rate": None, "reason": f"fewer than two n with {min_wrong} <= wrong <= trials/5"}
    x = ns[win].astype(np.float64)
    p = k[win] / wrong.shape[1]
    rate = -float(np.polyfit(x, np.log(p) + 0.5 * np.log(x), 1)[0])
    rate_plain = -float(np.polyfit(x, np.log(p), 1)[0])
    boots = []
    for _ in range(resamples):
        idx = rng.integers(wrong.shape[1], size=(win.sum(), wrong.shape[1]))
        pb = np.take_along_axis(wrong[win], idx, axis=1).mean(1)
        if (pb > 0).all():
            boots.append(-np.polyfit(x, np.log(pb) + 0.5 * np.log(x), 1)[0])
    return {"rate": rate, "rate_without_sqrt_n": rate_plain, "ci_low": float(np.quantile(boots, 0.025)),
            "ci_high": float(np.quantile(boots, 0.975)), "window_n": x.astype(int).tolist()}


def net_sweep(prob: fp.ToyProblem, cfg: Config, ss: np.random.SeedSequence, rng: np.random.Generator):
    ns = common.log_grid(cfg.n_min, cfg.n_max, cfg.n_points)
    fwd = prob.forward_kl_table()
    rows, errs = [], np.empty((len(ns), cfg.net_trials))
    cells = list(zip(ns, ss.spawn(len(ns)), strict=True))
    picks = _launch.map_cells(lambda c: _pmle_at(prob, c, cfg.net_trials), cells, desc="log-linear net", unit="n")
    for i, (n, idx) in enumerate(zip(ns, picks, strict=True)):
        errs[i] = fwd[idx]
        lo, hi = common.bootstrap_mean_ci(errs[i], rng, resamples=cfg.bootstrap)
        k = int(np.sum(idx != prob.star))
        ci_low, ci_high = common.clopper_pearson(k, cfg.net_trials)
        rows.append({"regime": "net", "n": int(n), "trials": cfg.net_trials, "mean_kl": errs[i].mean(), "ci_low": lo,
                     "ci_high": hi, "p_correct": 1 - k / cfg.net_trials, "n_wrong": k, "p_wrong_ci_low": ci_low,
                     "p_wrong_ci_high": ci_high, "union_bound": np.nan, "n_kl": n * errs[i].mean()})
    return pd.DataFrame(rows), errs


def plot(outcome: _runner.Outcome, cfg: Config):
    """Error vs n for both regimes, exact-recovery frequency, and the gapped class's exponential drop."""
    table, summary = outcome.table, outcome.summary
    fig, axes = plt.subplots(1, 3, figsize=(style.WIDTH, 3.1), layout="constrained")
    floor = table.mean_kl[table.mean_kl > 0].min() / 4
    ax_kl, ax_p, ax_w = axes
    for regime, color, label in (("finite_gap", style.color("tight"), f"gapped class |Pi|={cfg.n_policies}"),
                                 ("net", style.color("default"), "log-linear net")):
        t = table[table.regime == regime]
        pos = t.mean_kl > 0
        ax_kl.plot(t.n[pos], t.mean_kl[pos], "o-", color=color, ms=4, label=label)
        if regime == "net":
            ax_kl.fill_between(t.n, t.ci_low.clip(lower=1e-300), t.ci_high, color=color, alpha=0.2)
        zero = t.n[~pos]
        if len(zero):
            style.mark_zeros(ax_kl, zero, floor, color=color)
            ax_kl.text(0.02, 0.02, "open markers on the floor: E[KL] = 0 exactly", transform=ax_kl.transAxes,
                       fontsize=6.5)
        ax_p.plot(t.n, t.p_correct, "o-", color=color, ms=4, label=label)
    s = summary["net"]["slope"]
    if s["slope"] is not None:
        t = table[(table.regime == "net") & (table.n >= cfg.window_min) & (table.n <= cfg.window_max)]
        ax_kl.axvspan(cfg.window_min, cfg.window_max, color="0.9", zorder=-1)
        ax_kl.plot(t.n, t.mean_kl.iloc[0] * (t.n / t.n.iloc[0]) ** -1.0, "k--", lw=1, label="1/n")
    ax_kl.set(xscale="log", yscale="log", xlabel="n", ylabel="E[KL(pi*||pi_hat)] (exact)", ylim=(floor, None),
              title="Error vs n (grey: net's slope window)")
    ax_p.set(xscale="log", xlabel="n", ylabel=r"P($\hat\pi=\pi^*$)", ylim=(-0.02, 1.02), title="Exact recovery")
    t = table[table.regime == "finite_gap"]
    pos = t.n_wrong > 0
    ax_w.errorbar(t.n[pos], 1 - t.p_correct[pos], yerr=[(1 - t.p_correct - t.p_wrong_ci_low)[pos],
                                                        (t.p_wrong_ci_high - 1 + t.p_correct)[pos]],
                  fmt="o", color="C0", ms=4, capsize=2, label=r"P($\hat\pi\ne\pi^*$), 95% CP")
    ax_w.plot(t.n, t.union_bound, "k--", lw=1, label=r"union Chernoff bound $\sum_\pi e^{-nc_\pi}$")
    f = summary["finite_gap"]["fit"]
    if f.get("rate") is not None:
        x = np.array(f["window_n"], dtype=float)
        p = t.set_index("n").loc[f["window_n"]]
        a = np.mean(np.log(1 - p.p_correct) + 0.5 * np.log(x) + f["rate"] * x)
        ax_w.plot(x, np.exp(a - f["rate"] * x) / np.sqrt(x), "C1-", lw=1.5,
                  label=f"fit: rate {f['rate']:.4g} (c_min = {summary['finite_gap']['c_min']:.4g})")
    ax_w.set(yscale="log", xlabel="n (linear)", ylabel=r"P($\hat\pi\ne\pi^*$)",
             title="Gapped class: exponential drop")
    d = summary["finite_gap"]["problem"]
    return style.finish(fig, f"Gapped: |Pi|={d['n_policies']}, gamma={d['gamma']}, min KL gap={summary['finite_gap']['kl_gap']:.3g}"
                             f"; net: |Pi|={summary['net']['problem']['n_policies']}, gamma={cfg.net_gamma}; seed={cfg.seed}")


def verdicts(outcome: _runner.Outcome, cfg: Config) -> list:
    """Exact recovery, the union bound, the exponential rate against c_min, and the net's 1/n slope."""
    summary, gapped = outcome.summary, outcome.data["gapped"]
    fg = {**summary["finite_gap"], "final_n": outcome.data["final_n"]}
    c_min, fit, slope = fg["c_min"], fg["fit"], summary["net"]["slope"]
    out: list = [f"gapped class: {gapped}, min KL gap {fg['kl_gap']:.4g}, Chernoff c_min {c_min:.4g} "
                 f"(Bhattacharyya {fg['bhattacharyya_min']:.4g})"]
    out.append(Verdict("finite class with a gap: E[KL] = 0 exactly once n >> 1/gap", fg["final_mean_kl"], None, None, 0.0,
                       AGREES if fg["final_mean_kl"] == 0.0 else DISAGREES,
                       f"at n = {fg['final_n']}; P(correct) = {fg['final_p_correct']:.4f}; all trials correct from "
                       f"n = {fg['first_n_all_correct']}"))
    out.append(Verdict("union Chernoff bound on P(wrong) holds", None, None, None, "CP lower limit <= bound at every n",
                       AGREES if fg["union_bound_holds"] else DISAGREES))
    if fit.get("rate") is not None:
        out.append(interval_verdict("exponential rate of P(wrong) = Chernoff c_min (n -> inf)", fit["rate"],
                                    (fit["ci_low"], fit["ci_high"]), c_min, tolerance=0.2, relative=True,
                                    note=f"with n^-1/2 prefactor, within 20%; without it {fit['rate_without_sqrt_n']:.4g}"))
    else:
        out.append(Verdict("exponential rate of P(wrong) = Chernoff c_min", None, None, None, c_min, INCONCLUSIVE,
                           fit["reason"]))
    ci = None if slope["slope"] is None else (slope["ci_low"], slope["ci_high"])
    out.append(interval_verdict("epsilon-net: slope of log E[KL] on log n is -1", slope["slope"], ci, -1.0,
                                tolerance=0.1, note=f"n in [{cfg.window_min:g}, {cfg.window_max:g}], within 0.1"
                                if ci else slope["reason"]))
    return out


def run(cfg: Config) -> _runner.Outcome:
    """The gapped class over a linear grid of n, the net over a log grid, and their summaries."""
    ss_fin, ss_net, ss_ci = np.random.SeedSequence(cfg.seed).spawn(3)
    rng = np.random.default_rng(ss_ci)
    gapped = fp.ToyProblem.random(n_policies=cfg.n_policies, spread=cfg.spread, gamma=cfg.gamma, seed=cfg.seed)
    chern, bhat = chernoff_rates(gapped)
    t_fin, wrong, c_min = finite_sweep(gapped, cfg, ss_fin, chern)
    fit = fit_rate(t_fin.n.to_numpy(), wrong, cfg.min_wrong, rng, cfg.bootstrap)
    net = fp.ToyProblem.loglinear_grid(resolution=cfg.net_resolution, gamma=cfg.net_gamma, seed=cfg.seed)
    t_net, errs = net_sweep(net, cfg, ss_net, rng)
    ns = t_net.n.to_numpy()
    win = (ns >= cfg.window_min) & (ns <= cfg.window_max)
    slope = common.loglog_slope(ns[win], errs[win], rng, resamples=cfg.bootstrap)
    gaps = np.delete(gapped.forward_kl_table(), gapped.star)
    all_correct = t_fin.n[t_fin.n_wrong == 0]
    summary = {
        "finite_gap": {"problem": gapped.describe(), "kl_gap": float(gaps.min()), "c_min": c_min,
                       "bhattacharyya_min": float(np.delete(bhat, gapped.star).min()),
                       "chernoff_rates": np.delete(chern, gapped.star).tolist(), "fit": fit,
                       "final_p_correct": float(t_fin.p_correct.iloc[-1]),
                       "final_mean_kl": float(t_fin.mean_kl.iloc[-1]),
                       "first_n_all_correct": int(all_correct.min()) if len(all_correct) else None,
                       "union_bound_holds": bool((t_fin.p_wrong_ci_low <= t_fin.union_bound).all())},
        "net": {"problem": net.describe(), "slope": slope, "window": [cfg.window_min, cfg.window_max],
                "final_p_correct": float(t_net.p_correct.iloc[-1])},
    }
    table = pd.concat([t_fin, t_net], ignore_index=True)
    return _runner.Outcome(table, summary, data={"gapped": gapped, "final_n": int(t_fin.n.iloc[-1])})


main = _runner.entry(Config, __doc__, run=run, plot=plot, verdicts=verdicts)


if __name__ == "__main__":
    main()
