r"""Single-policy coverage against the class coverage :math:`C_\Pi`: which one predicts the error?

What is asked (issue 14): the paper's bounds (Theorems 4, 6) scale with the generalized coverage
:math:`C_\Pi` of Definition 3, a property of the whole class; offline RL theory often needs only the
single-policy coefficient of :math:`\pi^*` (:math:`\mathbb E_{\pi^*}[\pi^*/\mu]`, the :math:`\chi^2`
form, ``prob.single_policy_coverage()``). Along a family of data policies :math:`\mu` the two move
apart: this script picks two paths through the family, one along which :math:`C_\Pi` stays within
``band`` (relative) while the single-policy coefficient varies, and one the other way round.

What it measures, exactly: a centred log-linear net (2 prompts, 5 responses, d = 2, reward class
:math:`\gamma\ln\Pi`, uniform :math:`\pi_0`); :math:`\mu_{a,b}\propto\pi^{*a}e^{b g}` on a grid of
:math:`(a, b)` for a fixed random direction :math:`g`. At each chosen :math:`\mu` and fixed ``n``, the
exact E[KL] (over ``trials`` data sets) of PMLE (eq. 4), distillation (eq. 11), reverse KL (eq. 15,
reverse KL), online PMLE (``finitepref.online``, ``rounds`` rounds) and chi-PO; on each path the
log-log slope of E[KL] on the coefficient that varies, with a bootstrap CI over trials. The verdict
sentence says which coefficient predicts the error, whatever it is.

Run ``python -m simulations.coverage_single`` (about 40 s on 2 cores) or ``--quick`` (about 20 s).
Outputs in ``--out``: ``coverage_single.csv`` (one row per path point and estimator), ``mu_grid.csv``
(both coefficients over the whole grid), ``summary.json``, ``config.json``, ``verdicts.csv``,
``coverage_single.png``/``.pdf``.
"""

from __future__ import annotations

from dataclasses import dataclass

import matplotlib
import matplotlib.ticker

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

import finitepref as fp  # noqa: E402
from finitepref import registry  # noqa: E402
from finitepref.online import online  # noqa: E402
from simulations import _families, _launch, _runner, common, style  # noqa: E402
from simulations.verdicts import sign_verdict  # noqa: E402

NAME = "coverage_single"
OFFLINE = ("pmle", "distill", "reverse_kl", "chipo")
ESTIMATORS = (*OFFLINE, "online_pmle")
PATHS = {"single_varies": ("C_single", "C_pi"), "pi_varies": ("C_pi", "C_single")}
"""Path -> (the coefficient that varies along it, the one held within ``band``)."""


@dataclass(frozen=True)
class Config(_runner.ScriptConfig):
    """Configuration of the coverage comparison. Every field is a command-line flag (``--field-name``).

    seed: master seed (instance and data)
    n: sample size (fixed)
    trials: independent data sets per data policy
    bootstrap: bootstrap resamples for the slope CIs
    gamma: tilt of the preference model, eq. (2)
    resolution: spacing of the net over theta
    grid: the (a, b) grid of data policies has grid x grid points
    points: data policies per path
    band: the held coefficient stays within this relative band along a path
    rounds: rounds of online PMLE (n split evenly; round 1 samples from mu)
    chipo_beta: chi-PO coefficient beta
    """

    n: int = 300
    trials: int = 1000
    bootstrap: int = 1000
    gamma: float = 1.0
    resolution: float = 0.1
    grid: int = 21
    points: int = 6
    band: float = 0.08
    rounds: int = 3
    chipo_beta: float = 1.0

    NAME = NAME
    SHARD_CELLS = True
    QUICK = {"trials": 150, "bootstrap": 200, "grid": 13, "points": 4}
    """Fewer trials, a coarser grid and 4 data policies per path: under 60 s on 2 cores."""
    POSITIVE = ("n", "gamma", "resolution", "band", "chipo_beta")
    AT_LEAST_ONE = ("trials", "bootstrap", "rounds")

    def check(self) -> None:
        if self.grid < 3 or self.points < 2:
            raise ValueError(f"grid, points: need grid >= 3 and points >= 2, got {self.grid}, {self.points}")
        if self.rounds > self.n:
            raise ValueError(f"rounds: must be <= n={self.n}, got {self.rounds}")


def make_problem(cfg: Config) -> tuple[fp.ToyProblem, np.ndarray]:
    """The net (uniform mu, uniform pi0, reward class gamma ln Pi) and the direction g of the mu family."""
    rng = np.random.default_rng(cfg.seed)
    n_prompts, n_responses = 2, 5
    features = rng.normal(size=(n_prompts, n_responses, 2))
    uniform = np.full((n_prompts, n_responses), 1.0 / n_responses)
    prob = _families.centered_net(features, np.full(n_prompts, 1.0 / n_prompts), uniform, 0.7 * rng.normal(size=2),
                                  cfg.gamma, cfg.resolution, 1.0, rewards=True, reference=uniform)
    return prob, rng.normal(size=(n_prompts, n_responses))


def mu_family(prob: fp.ToyProblem, direction: np.ndarray, a: float, b: float) -> np.ndarray:
    r""":math:`\mu_{a,b}\propto\pi^{*a}e^{b g}` per prompt."""
    z = a * prob.log_pi_star.numpy() + b * direction
    w = np.exp(z - z.max(-1, keepdims=True))
    return w / w.sum(-1, keepdims=True)


def coefficient_grid(prob: fp.ToyProblem, direction: np.ndarray, cfg: Config) -> pd.DataFrame:
    """Both coefficients at every (a, b) of the grid."""
    rows = []
    for a in np.linspace(-2.0, 1.5, cfg.grid):
        for b in np.linspace(-3.0, 3.0, cfg.grid):
            p = _families.with_mu(prob, mu_family(prob, direction, a, b))
            sp = p.single_policy_coverage()
            rows.append({"a": a, "b": b, "C_pi": p.coverage(), "C_single": sp.chi2, "C_single_linf": sp.linf})
    return pd.DataFrame(rows)


def choose_path(grid: pd.DataFrame, varies: str, held: str, cfg: Config) -> pd.DataFrame:
    """``points`` grid rows with ``held`` within ``band`` of one value and ``varies`` spread as widely as possible."""
    logs = np.log(grid[[varies, held]].to_numpy())
    best, best_span = None, -1.0
    for centre in logs[:, 1]:
        inside = np.abs(logs[:, 1] - centre) <= np.log1p(cfg.band)
        span = np.ptp(logs[inside, 0]) if inside.sum() >= cfg.points else -1.0
        if span > best_span:
            best, best_span = inside, span
    band = grid[best].sort_values(varies)
    targets = np.linspace(np.log(band[varies].min()), np.log(band[varies].max()), cfg.points)
    picks = [int(np.argmin(np.abs(np.log(band[varies].to_numpy()) - t))) for t in targets]
    return band.iloc[sorted(set(picks))].reset_index(drop=True)


def errors_at(prob: fp.ToyProblem, cfg: Config, seed: np.random.SeedSequence) -> dict[str, np.ndarray]:
    """Exact error per trial of every estimator at one data policy (same offline data for the offline ones)."""
    offline_seed, online_seed = seed.spawn(2)
    data = prob.sample(cfg.n, cfg.trials, seed=np.random.default_rng(offline_seed))
    chosen = common.fit_estimators(prob, data, OFFLINE, {"chipo": {"beta": cfg.chipo_beta}})
    chosen["online_pmle"] = online(prob, "pmle", cfg.n, cfg.rounds, cfg.trials, online_seed)
    return {name: registry.get("pmle" if name == "online_pmle" else name).error_table(prob)[idx]
            for name, idx in chosen.items()}


def sweep(cfg: Config) -> tuple[pd.DataFrame, dict]:
    """The grid, the two paths, and E[KL] of every estimator at every path point."""
    prob, direction = make_problem(cfg)
    grid = coefficient_grid(prob, direction, cfg)
    paths = {path: choose_path(grid, *coefs, cfg) for path, coefs in PATHS.items()}
    cells = [(path, i, point) for path, points in paths.items() for i, point in points.iterrows()]
    seeds = np.random.SeedSequence(cfg.seed).spawn(len(cells))
    ci_rng = np.random.default_rng(np.random.SeedSequence([cfg.seed, 1]))
    rows, raw = [], {}

    def cell(j: int) -> dict[str, np.ndarray]:
        point = cells[j][2]
        return errors_at(_families.with_mu(prob, mu_family(prob, direction, point.a, point.b)), cfg, seeds[j])

    picks = _launch.map_cells(cell, range(len(cells)), desc="coverage", unit="mu")
    for (path, i, point), errors in zip(cells, picks, strict=True):
        for name, err in errors.items():
            raw.setdefault((path, name), []).append(err)
            lo, hi = common.bootstrap_mean_ci(err, ci_rng, resamples=cfg.bootstrap)
            rows.append({"path": path, "point": i, "a": point.a, "b": point.b, "C_pi": point.C_pi,
                         "C_single": point.C_single, "C_single_linf": point.C_single_linf, "estimator": name,
                         "n": cfg.n, "trials": cfg.trials, "mean_kl": err.mean(), "ci_low": lo, "ci_high": hi})
    return pd.DataFrame(rows), {"grid": grid, "raw": raw, "problem": prob}


def summarize(cfg: Config, table: pd.DataFrame, raw: dict, problem: dict) -> dict:
    """Per path and estimator the log-log slope of E[KL] on the coefficient that varies (bootstrap CI)."""
    rng = np.random.default_rng(np.random.SeedSequence([cfg.seed, 2]))
    out = {"problem": problem, "n": cfg.n, "paths": {}}
    for path, (varies, held) in PATHS.items():
        t = table[(table.path == path) & (table.estimator == ESTIMATORS[0])]
        entry = {"varies": varies, "held": held, "varies_range": [float(t[varies].min()), float(t[varies].max())],
                 "held_range": [float(t[held].min()), float(t[held].max())], "slopes": {}}
        for name in ESTIMATORS:
            errors = np.stack(raw[(path, name)])
            entry["slopes"][name] = common.loglog_slope(t[varies].to_numpy(), errors, rng, resamples=cfg.bootstrap)
        out["paths"][path] = entry
    out["sentence"] = verdict_sentence(out)
    return out


def _predicts(summary: dict, path: str, name: str) -> bool:
    s = summary["paths"][path]["slopes"][name]
    return s["slope"] is not None and s["ci_low"] > 0


def verdict_sentence(summary: dict) -> str:
    """One sentence: which coefficient predicts each estimator's error (slope CI above 0 along its path)."""
    groups: dict[str, list[str]] = {}
    for name in ESTIMATORS:
        pi, single = _predicts(summary, "pi_varies", name), _predicts(summary, "single_varies", name)
        key = "both" if pi and single else "C_Pi" if pi else "single-policy coverage" if single else "neither"
        groups.setdefault(key, []).append(_label(name))
    parts = [f"{key} for {', '.join(names)}" for key, names in groups.items()]
    return (f"At n = {summary['n']}, the coefficient whose variation (the other held within its band) raises E[KL] "
            f"with a 95% slope CI above 0 is: " + "; ".join(parts) + ".")


def _label(name: str) -> str:
    return "online PMLE" if name == "online_pmle" else style.short_label(name)


def run(cfg: Config) -> _runner.Outcome:
    """Grid, paths, sweep, summary; ``mu_grid.csv`` beside the table."""
    table, raw = sweep(cfg)
    summary = summarize(cfg, table, raw["raw"], raw["problem"].describe())
    return _runner.Outcome(table, summary, extra={"problem": raw["problem"].describe()},
                           files={"mu_grid.csv": raw["grid"]}, data={"grid": raw["grid"]})


def plot(outcome: _runner.Outcome, cfg: Config):
    """The (C_Pi, C_single) plane with both paths; E[KL] along each path."""
    table, summary, grid = outcome.table, outcome.summary, outcome.data["grid"]
    fig, axes = plt.subplots(1, 3, figsize=(style.WIDTH, 2.9), layout="constrained")
    axes[0].scatter(grid.C_pi, grid.C_single, s=6, color="0.75")
    for path, mark in zip(PATHS, ("o", "s"), strict=True):
        t = table[(table.path == path) & (table.estimator == ESTIMATORS[0])]
        axes[0].plot(t.C_pi, t.C_single, marker=mark, color="k", ls="-", ms=4, mfc="white")
    axes[0].set(xscale="log", yscale="log", xlabel=r"$C_\Pi$ (Def. 3)", ylabel=r"single-policy $\mathbb{E}_{\pi^*}[\pi^*/\mu]$",
                title="(a) data policies; paths")
    shift = style.offsets(ESTIMATORS, 0.01)
    for ax, (path, (varies, held)) in zip(axes[1:], PATHS.items(), strict=True):
        for name in ESTIMATORS:
            t = table[(table.path == path) & (table.estimator == name)]
            key = "pmle" if name == "online_pmle" else name
            kw = {"color": style.color(name), "marker": style.marker(name), "ls": ":" if name == "online_pmle"
                  else style.linestyle(key), "label": "online PMLE" if name == "online_pmle" else style.label(name)}
            style.mean_with_band(ax, t[varies] * shift[name], t.mean_kl, t.ci_low, t.ci_high, **kw)
        r = summary["paths"][path]["held_range"]
        same = _identical(table[table.path == path])
        if same:
            ax.text(0.02, 0.02, same, transform=ax.transAxes, fontsize=6.5, va="bottom")
        ax.set(xscale="log", yscale="log", xlabel=(r"$C_\Pi$" if varies == "C_pi" else "single-policy coefficient"),
               ylabel=f"E[KL] at n = {cfg.n}",
               title=f"({'bc'[list(PATHS).index(path)]}) {'C_Pi' if held == 'C_pi' else 'single'} held in "
                     f"[{r[0]:.3g}, {r[1]:.3g}]")
    style.finish(fig, f"|Pi| = {summary['problem']['n_policies']}, gamma = {cfg.gamma}, trials = {cfg.trials}; "
                      "reverse KL's error is KL(pi_hat||pi*), the others' KL(pi*||pi_hat)", ncol=3)
    for ax, (path, (varies, _)) in zip(axes[1:], PATHS.items(), strict=True):  # label the path's ends and middle
        ticks = np.sort(table[(table.path == path) & (table.estimator == ESTIMATORS[0])][varies].to_numpy())
        ticks = ticks[np.unique(np.linspace(0, len(ticks) - 1, min(3, len(ticks))).round().astype(int))]
        ax.set_xticks(ticks, [f"{v:.2g}" for v in ticks], minor=False)
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    return fig


def _identical(table: pd.DataFrame) -> str:
    """A note naming estimators whose curves coincide (same mean at every point)."""
    series = {name: tuple(table[table.estimator == name].mean_kl.round(12)) for name in ESTIMATORS}
    groups: dict[tuple, list[str]] = {}
    for name, values in series.items():
        groups.setdefault(values, []).append(_label(name))
    return "; ".join(" = ".join(g) + " (identical)" for g in groups.values() if len(g) > 1)


def verdicts(outcome: _runner.Outcome, cfg: Config) -> list:
    """Per path and estimator: does E[KL] grow with the coefficient that varies? Then the one sentence."""
    summary, out = outcome.summary, []
    for e in summary["paths"].values():
        name_of = {"C_pi": "C_Pi", "C_single": "single-policy coverage"}
        for name, s in e["slopes"].items():
            ci = None if s["slope"] is None else (s["ci_low"], s["ci_high"])
            out.append(sign_verdict(f"{_label(name)}: E[KL] grows with {name_of[e['varies']]} at fixed "
                                    f"{name_of[e['held']]} (log-log slope)", s["slope"], ci,
                                    note=f"{name_of[e['varies']]} {e['varies_range'][0]:.3g}..{e['varies_range'][1]:.3g}, "
                                         f"{name_of[e['held']]} {e['held_range'][0]:.3g}..{e['held_range'][1]:.3g}"))
    out.append("verdict: " + summary["sentence"])
    return out


main = _runner.entry(Config, __doc__, run=run, plot=plot, verdicts=verdicts)


if __name__ == "__main__":
    main()
