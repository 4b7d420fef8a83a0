r"""Is Theorem 4's ln|Pi| factor tight? The worst-case error on a hypercube class of 2^d policies.

What the paper predicts (Theorem 4, eq. 7; Theorems 6 and 7 alike): :math:`\mathbb E_x\mathrm{KL}(\pi^*\|\hat\pi)
\lesssim C_\Pi\ln(|\Pi|/\delta)/(\gamma^2 n)`. On an :math:`\varepsilon`-net of a fixed-dimension family
:math:`n\,\mathbb E[\mathrm{KL}]` tends to :math:`\tfrac12\mathrm{tr}(HI^{-1})`, free of :math:`|\Pi|`
(``simulations.scaling``), so those nets cannot say whether the factor :math:`\ln|\Pi|` is needed.

The class here (:mod:`finitepref.hypercube`): :math:`d` prompts, two responses, :math:`\mathcal D` and
:math:`\mu` uniform, :math:`\pi_v(a_0\mid x_j) = \tfrac12 + (2v_j-1)\varepsilon` for :math:`v\in\{0,1\}^d`:
:math:`|\Pi| = 2^d`, :math:`C_\Pi = 1`, :math:`R = \mathrm{artanh}(2\varepsilon)`, reward class
:math:`\gamma\ln\Pi` (:math:`\mathcal P_\gamma(\mathcal R) = \Pi`), :math:`\pi^*` the all-ones vertex (the
vertex of largest risk under the lowest-index tie rule). Both classes are streamed: rows are made from
the bits of their index, chunk by chunk, never all at once. For each :math:`n` of ``ns``, each
:math:`d` and each scale :math:`c` of ``scales``, :math:`\varepsilon = c\sqrt{d/n}/\gamma` (the worst case of
Assouad's lemma sits at :math:`c\approx 0.8`); ``trials`` data sets; every estimator by exact, brute-force
argmin over all :math:`2^d` policies through :mod:`finitepref.registry`; exact KL of each choice.

Reported, per estimator and n: :math:`\max_\varepsilon n\,\mathbb E[\mathrm{KL}]` (CI: bootstrap over trials,
the max taken in every resample) against :math:`\ln|\Pi| = d\ln 2`; its OLS slope with a bootstrap CI;
beside it the minimax lower bound of Assouad's lemma for this class (:func:`bounds.hypercube_lower_bound`,
exact, and its Bretagnolle-Huber closed form) and each theorem's bound in expectation: a display that
holds with probability :math:`1-\delta` for every :math:`\delta` in the form :math:`(a + b\ln(1/\delta))/n`
gives :math:`n\,\mathbb E[\mathrm{err}]\le a + b` (integrate the tail :math:`P(n\,\mathrm{err} > a + bt)\le e^{-t}`),
which is the display at :math:`\delta = 1/e` (paper's and corrected constants, ``bounds/FINDINGS.md``).
Verdicts: the slope is positive (the :math:`\ln|\Pi|` factor is needed), the slope is within ``factor`` of
the lower bound's, the lower bound lies below the measurement at every d, the bound above it.

Run ``python -m simulations.log_class_size`` (d = 4..20: 644 s measured on 2 cores under a load of 3.5-5,
peak RSS 0.73 GB; the time is in ``summary.json``) or ``--quick`` (d = 4..10 at two n, 10-25 s). Beyond
d = 20 the cost doubles per d (d = 24: about 16 times d = 20's). For d = 24-30 (10^7-10^9 policies) shard
the rows: every argmin and class reduction here goes through :func:`finitepref._argmin.argmin_rows` and
:mod:`finitepref.distributed`, so under ``torchrun`` with the runner's sharding (or inside
``with finitepref.distributed.sharded(group):`` on every rank, rank 0 writing) the ranks split the
:math:`2^d` rows and the answer is the one process's, bit for bit; or use a GPU (``--device cuda
--chunk-size 0``: the package's accelerator-sized chunks).
Outputs in ``--out``: ``log_class_size.csv``, ``summary.json``, ``config.json``, ``verdicts.csv``,
``log_class_size.png``/``.pdf``.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from tqdm.auto import tqdm  # noqa: E402

import bounds  # noqa: E402
import finitepref as fp  # noqa: E402
from finitepref import _tablecache, registry  # noqa: E402
from finitepref._validate import check_device  # noqa: E402
from finitepref.divergences import kl  # noqa: E402
from finitepref.estimators import fit_reward  # noqa: E402
from finitepref.hypercube import MAX_DIM, hypercube_problem  # noqa: E402
from simulations import _runner, common, style  # noqa: E402
from simulations.verdicts import AGREES, DISAGREES, Verdict, sig, sign_verdict  # noqa: E402

NAME = "log_class_size"
ESTIMATORS = ("pmle", "distill", "reverse_kl")
THEOREM = {"pmle": "Theorem 4", "distill": "Theorem 6", "reverse_kl": "Theorem 7"}


@dataclass(frozen=True)
class Config(_runner.ScriptConfig):
    """Configuration of the hypercube sweep. Every field is a command-line flag (``--field-name``).

    seed: master seed; every (n, d, scale) gets an independent stream via SeedSequence.spawn
    d_min: smallest number of coordinates d (|Pi| = 2^d)
    d_max: largest d
    d_step: step of d
    ns: sample sizes n (each with its own worst-case epsilon grid)
    scales: epsilon = scale * sqrt(d / n) / gamma (Assouad's worst case is near 0.8)
    gamma: tilt of the preference model, eq. (2)
    estimators: which of pmle, distill, reverse_kl to run
    trials: independent data sets per (n, d, scale)
    bootstrap: resamples of trials for the CIs (of the max over epsilon and of the slope)
    chunk_size: policy rows per chunk of the exact argmin (0: the package default; the answer does not depend on it)
    factor: the stated factor: the measured slope should lie within [1, factor] x the lower bound's slope
    device: torch device of the problem (cpu, cuda)
    """

    d_min: int = 4
    d_max: int = 20
    d_step: int = 1
    ns: tuple[int, ...] = (10_000,)
    scales: tuple[float, ...] = (0.65, 0.85, 1.05)
    gamma: float = 1.0
    estimators: tuple[str, ...] = ESTIMATORS
    trials: int = 500
    bootstrap: int = 1000
    chunk_size: int = 16_384
    factor: float = 1.5
    device: str = "cpu"

    NAME = NAME
    QUICK = {"d_max": 10, "ns": (1_000, 10_000), "trials": 200, "bootstrap": 200}
    """d = 4..10 at two n, 200 trials: under 30 s on 2 cores."""
    POSITIVE = ("d_min", "d_max", "d_step", "ns", "scales", "gamma", "factor")

    def check(self) -> None:
        common.check_names("estimators", self.estimators, ESTIMATORS)
        if not self.d_min <= self.d_max <= MAX_DIM:
            raise ValueError(f"d_min, d_max: need 1 <= d_min <= d_max <= {MAX_DIM}, got {self.d_min}, {self.d_max}")
        if len(dims(self)) < 2:
            raise ValueError(f"d_max: need at least two values of d to fit a slope, got {dims(self)}")
        if self.trials < 2 or self.chunk_size < 0 or self.factor < 1:
            raise ValueError(f"trials, chunk_size, factor: need trials >= 2, chunk_size >= 0, factor >= 1, got "
                             f"{self.trials}, {self.chunk_size}, {self.factor}")
        worst = max(epsilon(self, n, self.d_max, c) for n in self.ns for c in self.scales)
        if not worst < 0.5:
            raise ValueError(f"scales: epsilon = scale * sqrt(d / n) / gamma must stay below 1/2, got {worst:.4g} at "
                             f"d = {self.d_max}; lower the scales or raise n")
        check_device(self.device)


def dims(cfg: Config) -> list[int]:
    """The values of d."""
    return list(range(cfg.d_min, cfg.d_max + 1, cfg.d_step))


def epsilon(cfg: Config, n: int, d: int, scale: float) -> float:
    r""":math:`\varepsilon = c\sqrt{d/n}/\gamma`: the scale at which the per-coordinate test is hardest."""
    return float(scale * np.sqrt(d / n) / cfg.gamma)


def chosen_kl(prob: fp.ToyProblem, index: np.ndarray, reverse: bool) -> np.ndarray:
    r"""Exact :math:`\mathbb E_x\mathrm{KL}` between :math:`\pi^*` and each chosen policy (forward, or reverse).

    Only the distinct chosen rows are generated (the class's KL table would hold :math:`2^d` values)."""
    uniq, inverse = np.unique(index, return_inverse=True)
    rows = prob.log_policies[uniq]
    per_prompt = kl(rows, prob.log_pi_star) if reverse else kl(prob.log_pi_star, rows)
    return (per_prompt @ prob.prompt_probs).cpu().numpy()[inverse]


def expected_bounds(prob: fp.ToyProblem, n: int) -> dict[str, tuple[float, float]]:
    r""":math:`n\times` each theorem's display at :math:`\delta = 1/e` (paper, corrected): bounds on :math:`n\,\mathbb E[\mathrm{err}]`.

    Each display is :math:`(a + b\ln(1/\delta))/n` for every :math:`\delta\in(0,1)` (Theorem 4: :math:`b = F`;
    Theorem 6: :math:`b = 3F`; Theorem 7: the sum of its two coefficients), so
    :math:`n\,\mathbb E[\mathrm{err}]\le a + b\int_0^\infty e^{-t}dt = a + b`, the display at :math:`\delta = e^{-1}`.
    """
    C, R, g, K = prob.coverage(), prob.boundedness(), prob.gamma, prob.n_policies
    C_r, M, delta = prob.reward_coverage(), prob.n_rewards, float(np.exp(-1.0))
    return {
        "pmle": (n * bounds.theorem4(C, R, g, K, n, delta), n * bounds.theorem4_corrected(C, R, g, K, n, delta)),
        "distill": (n * bounds.theorem6(C, R, g, K, M, n, delta),
                    n * bounds.theorem6_corrected(C, R, g, K, M, n, delta)),
        "reverse_kl": (n * bounds.theorem7(C_r, R, g, K, M, n, delta),
                       n * bounds.theorem7_corrected(C_r, R, g, K, M, n, delta)),
    }


def run_estimators(prob: fp.ToyProblem, data: fp.PreferenceData, cfg: Config) -> dict[str, np.ndarray]:
    """Chosen index per trial of every estimator, by exact argmin through the registry (one fitted reward, eq. 9)."""
    chunk = cfg.chunk_size or None
    reward = fit_reward(prob, data, chunk_size=chunk)
    out = {}
    for name in cfg.estimators:
        entry = registry.get(name)
        args = (reward,) if entry.needs_reward else ()
        out[name] = entry.function(prob, data, *args, chunk_size=chunk)
    return out


def one_problem(cfg: Config, n: int, d: int, scale: float, seed) -> tuple[list[dict], dict[str, np.ndarray]]:
    """The rows of one (n, d, scale) and the raw n * KL per trial of every estimator."""
    eps = epsilon(cfg, n, d, scale)
    prob = hypercube_problem(d, eps, cfg.gamma, device=cfg.device)
    data = prob.sample(n, cfg.trials, seed=np.random.default_rng(seed))
    chosen = run_estimators(prob, data, cfg)
    lower = n * bounds.hypercube_lower_bound(n, d, eps, cfg.gamma)
    lower_bh = n * bounds.hypercube_lower_bound_bh(n, d, eps, cfg.gamma)
    bound = expected_bounds(prob, n)
    ci_rng = np.random.default_rng(seed.spawn(1)[0])
    rows, raw = [], {}
    for name, idx in chosen.items():
        raw[name] = n * chosen_kl(prob, idx, registry.get(name).divergence == "reverse")
        lo, hi = common.bootstrap_mean_ci(raw[name], ci_rng, resamples=cfg.bootstrap)
        rows.append({"estimator": name, "divergence": registry.get(name).divergence, "n": n, "d": d,
                     "n_policies": 2 ** d, "log_class": d * np.log(2.0), "scale": scale, "eps": eps,
                     "trials": cfg.trials, "n_kl": raw[name].mean(), "ci_low": lo, "ci_high": hi,
                     "p_correct": float(np.mean(idx == prob.star)),
                     "same_as_pmle": float(np.mean(idx == chosen["pmle"])) if "pmle" in chosen else np.nan,
                     "lower_bound": lower, "lower_bound_bh": lower_bh, "bound": bound[name][0],
                     "bound_corrected": bound[name][1], "R": prob.boundedness(), "C_pi": prob.coverage()})
    return rows, raw


def sweep(cfg: Config) -> tuple[pd.DataFrame, dict]:
    """Every (n, d, scale); returns the table and the raw n * KL, ``raw[(name, n)]`` of shape (len(d), len(scales), trials)."""
    cases = [(n, d, c) for n in cfg.ns for d in dims(cfg) for c in cfg.scales]
    seeds = np.random.SeedSequence(cfg.seed).spawn(len(cases))
    shape = (len(dims(cfg)), len(cfg.scales), cfg.trials)
    raw = {(name, n): np.empty(shape) for name in cfg.estimators for n in cfg.ns}
    rows: list[dict] = []
    start, old_budget = time.perf_counter(), _tablecache.set_budget(0)  # each problem is used once: stream its tables
    try:
        with tqdm(total=len(cases), desc=NAME, unit="problem") as bar:
            for (n, d, c), seed in zip(cases, seeds, strict=True):
                bar.set_postfix_str(f"d={d}, n={n}")
                case_rows, case_raw = one_problem(cfg, n, d, c, seed)
                rows += case_rows
                i, j = dims(cfg).index(d), cfg.scales.index(c)
                for name, values in case_raw.items():
                    raw[name, n][i, j] = values
                bar.update()
    finally:
        _tablecache.set_budget(old_budget)
    return pd.DataFrame(rows), {"raw": raw, "elapsed_s": time.perf_counter() - start}


def _ols(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """(slope, intercept) of the least-squares line."""
    slope, intercept = np.polyfit(x, y, 1)
    return float(slope), float(intercept)


def _max_and_slope_ci(raw: np.ndarray, x: np.ndarray, rng: np.random.Generator, resamples: int):
    """Bootstrap over trials (within each d and scale): CIs of the max over scales per d, and of the OLS slope."""
    trials = raw.shape[-1]
    maxima = np.empty((resamples, raw.shape[0]))
    for b in range(resamples):
        idx = rng.integers(trials, size=raw.shape)
        maxima[b] = np.take_along_axis(raw, idx, axis=-1).mean(-1).max(-1)
    slopes = np.polyfit(x, maxima.T, 1)[0]
    return np.quantile(maxima, [0.025, 0.975], axis=0), np.quantile(slopes, [0.025, 0.975])


def _grid(t: pd.DataFrame, cfg: Config, column: str) -> np.ndarray:
    """``column`` of one (estimator, n) as a (d, scale) array."""
    return t.pivot(index="d", columns="scale", values=column).loc[dims(cfg), list(cfg.scales)].to_numpy()


def summarize_one(cfg: Config, t: pd.DataFrame, raw: np.ndarray, seed: int) -> dict:
    """One (estimator, n): the max over epsilon per d with CIs, the slopes, the bounds at the hardest epsilon.

    The theorems' bounds are read at the epsilon of the grid that maximises the lower bound (the hardest
    instance; deterministic); ``max_over_bound`` compares the measurement with the bound at every (d, epsilon)."""
    x = np.array(dims(cfg)) * np.log(2.0)
    measured = raw.mean(-1).max(1)
    lower, lower_bh = _grid(t, cfg, "lower_bound"), _grid(t, cfg, "lower_bound_bh")
    hardest = (np.arange(len(x)), lower.argmax(1))
    paper, corrected = _grid(t, cfg, "bound")[hardest], _grid(t, cfg, "bound_corrected")[hardest]
    band, slope_ci = _max_and_slope_ci(raw, x, np.random.default_rng(seed), cfg.bootstrap)
    slope, intercept = _ols(x, measured)
    lb = lower.max(1)
    lb_slope = _ols(x, lb)[0]
    return {
        "log_class": x.tolist(), "max_n_kl": measured.tolist(), "max_ci_low": band[0].tolist(),
        "max_ci_high": band[1].tolist(), "argmax_scale": [cfg.scales[j] for j in raw.mean(-1).argmax(1)],
        "lower_bound": lb.tolist(), "lower_bound_bh": lower_bh.max(1).tolist(),
        "hardest_scale": [cfg.scales[j] for j in hardest[1]], "bound": paper.tolist(),
        "bound_corrected": corrected.tolist(),
        "slope": {"slope": slope, "intercept": intercept, "ci_low": float(slope_ci[0]), "ci_high": float(slope_ci[1])},
        "lower_bound_slope": lb_slope, "lower_bound_bh_slope": _ols(x, lower_bh.max(1))[0],
        "bound_slope": _ols(x, paper)[0], "bound_corrected_slope": _ols(x, corrected)[0],
        "bound_over_measured_at_d_max": float(paper[-1] / measured[-1]),
        "ratio_to_lower": {"slope": slope / lb_slope, "ci_low": float(slope_ci[0]) / lb_slope,
                           "ci_high": float(slope_ci[1]) / lb_slope},
        "min_ci_high_over_lower": float(np.min(band[1] / lb)),
        "max_over_bound": float((t.n_kl / t.bound).max()),
        "max_over_bound_corrected": float((t.n_kl / t.bound_corrected).max()),
        "same_as_pmle": float(t.same_as_pmle.mean()),
    }


def asymptotic_lower_slope(gamma: float) -> float:
    r"""Slope in :math:`\ln|\Pi|` of :math:`\max_\varepsilon nL` as :math:`n/d\to\infty`: :math:`\max_u 4u^2\bar\Phi(u)/(\gamma^2\ln 2)`.

    With :math:`\varepsilon = c\sqrt{d/n}/\gamma`: :math:`\kappa\approx 8\varepsilon^2`, :math:`m\approx n/(2d)`,
    :math:`q-\tfrac12\approx\gamma\varepsilon`, so (A) of :mod:`bounds.assouad` tends to
    :math:`n L\approx (8c^2 d/\gamma^2)\,\bar\Phi(c\sqrt 2)`; with :math:`u = c\sqrt2` the maximum is
    :math:`0.663\,d/\gamma^2` at :math:`u\approx 1.20` (:math:`c\approx 0.85`)."""
    from scipy.optimize import minimize_scalar
    from scipy.stats import norm

    best = minimize_scalar(lambda u: -4.0 * u * u * norm.sf(u), bounds=(0.1, 5.0), method="bounded",
                           options={"xatol": 1e-10})
    return float(-best.fun / (gamma**2 * np.log(2.0)))


def summarize(cfg: Config, table: pd.DataFrame, out: dict) -> dict:
    """Per estimator and n: :func:`summarize_one`; the problem's constants; the measured time."""
    summary: dict = {"dims": dims(cfg), "ns": list(cfg.ns), "scales": list(cfg.scales), "gamma": cfg.gamma,
                     "elapsed_s": out["elapsed_s"], "C_pi": sorted(set(np.round(table.C_pi, 12))),
                     "R_range": [float(table.R.min()), float(table.R.max())],
                     "asymptotic_lower_slope": asymptotic_lower_slope(cfg.gamma), "estimators": {}}
    for name in cfg.estimators:  # one bootstrap seed for all: the resamples are paired across estimators
        summary["estimators"][name] = {
            str(n): summarize_one(cfg, table[(table.estimator == name) & (table.n == n)], out["raw"][name, n],
                                  cfg.seed + 1000)
            for n in cfg.ns}
        summary["estimators"][name]["theorem"] = THEOREM[name]
    return summary


def _panel_growth(ax, summary: dict, cfg: Config) -> None:
    """(a) max_eps n E[KL] against ln|Pi| at the largest n: every estimator, its fitted line, the lower bounds."""
    n = str(cfg.ns[-1])
    notes = []
    for k, name in enumerate(cfg.estimators):
        s = summary["estimators"][name][n]
        x, y = np.array(s["log_class"]), np.array(s["max_n_kl"])
        shift = 0.08 * (k - (len(cfg.estimators) - 1) / 2)  # identical estimators stay visible side by side
        ax.errorbar(x + shift, y, yerr=[y - s["max_ci_low"], np.array(s["max_ci_high"]) - y], fmt=style.marker(name),
                    color=style.color(name), ms=4, capsize=2, label=style.label(name))
        f = s["slope"]
        ax.plot(x, f["intercept"] + f["slope"] * x, color=style.color(name), lw=1, ls=style.linestyle(name))
        notes.append(f"{style.short_label(name)}: slope {f['slope']:.3f} [{f['ci_low']:.3f}, {f['ci_high']:.3f}]")
    s = summary["estimators"][cfg.estimators[0]][n]
    ax.plot(s["log_class"], s["lower_bound"], "k-", lw=1.5, label="minimax lower bound (Assouad, exact TV)")
    ax.plot(s["log_class"], s["lower_bound_bh"], "k:", lw=1.5, label="Assouad + Bretagnolle-Huber (closed form)")
    notes.append(f"lower bound: slope {s['lower_bound_slope']:.3f} (Bretagnolle-Huber {s['lower_bound_bh_slope']:.3f})")
    ax.text(0.02, 0.98, "\n".join(notes), transform=ax.transAxes, va="top", fontsize=6.5)
    ax.set(xlabel=r"$\ln|\Pi| = d\ln 2$", ylabel=r"$\max_\varepsilon\, n\,E[\mathrm{KL}]$",
           title=f"(a) growth in ln|Pi| (n = {int(n):,})")


def _panel_bounds(ax, summary: dict, cfg: Config) -> None:
    """(b) the same on a log axis, with the theorems' bounds in expectation (Theorem 4 also corrected)."""
    n = str(cfg.ns[-1])
    for name in cfg.estimators:
        s = summary["estimators"][name][n]
        ax.plot(s["log_class"], s["bound"], color=style.color(name), ls="--", lw=1,
                label=f"{THEOREM[name]} at delta = 1/e (paper)")
        if name == "pmle":
            ax.plot(s["log_class"], s["bound_corrected"], color=style.color(name), ls="-.", lw=1,
                    label="Theorem 4, corrected constants")
        ax.plot(s["log_class"], s["max_n_kl"], ls="none", marker=style.marker(name), color=style.color(name), ms=3)
    s = summary["estimators"][cfg.estimators[0]][n]
    ax.plot(s["log_class"], s["lower_bound"], "k-", lw=1.5)
    ax.text(0.02, 0.5, f"{THEOREM[cfg.estimators[0]]}: slope {s['bound_slope']:.3g} (corrected "
            f"{s['bound_corrected_slope']:.3g}),\n{s['bound_over_measured_at_d_max']:.3g} x the measured value at "
            f"d = {cfg.d_max}", transform=ax.transAxes, fontsize=6.5)
    ax.set(yscale="log", xlabel=r"$\ln|\Pi|$", ylabel=r"$n\,E[\mathrm{err}]$",
           title="(b) bounds in expectation at the hardest epsilon")


def _panel_scan(ax, table: pd.DataFrame, cfg: Config) -> None:
    """(c) the epsilon scan: n E[KL] / d against the scale c, for three d, with the lower bound's n L / d."""
    name, n = cfg.estimators[0], cfg.ns[-1]
    picks = sorted({dims(cfg)[0], dims(cfg)[len(dims(cfg)) // 2], dims(cfg)[-1]})
    for k, d in enumerate(picks):
        t = table[(table.estimator == name) & (table.n == n) & (table.d == d)].sort_values("scale")
        ax.errorbar(t.scale, t.n_kl / d, yerr=[(t.n_kl - t.ci_low) / d, (t.ci_high - t.n_kl) / d], fmt="o-",
                    color=f"C{k + 4}", ms=4, capsize=2, label=f"{style.short_label(name)}, d = {d}")
        ax.plot(t.scale, t.lower_bound / d, color=f"C{k + 4}", ls=":", lw=1.2)
    ax.set(xlabel=r"scale $c$ ($\varepsilon = c\sqrt{d/n}/\gamma$)", ylabel=r"$n\,E[\mathrm{KL}]\,/\,d$",
           title=f"(c) scan over epsilon (n = {n:,}; dotted: bound)")


def _panel_ratio(ax, summary: dict, cfg: Config) -> None:
    """(d) measured / lower bound per d with its CI, every estimator and n, with the stated factor."""
    for name in cfg.estimators:
        for j, n in enumerate(cfg.ns):
            s = summary["estimators"][name][str(n)]
            lb, y = np.array(s["lower_bound"]), np.array(s["max_n_kl"])
            ax.errorbar(np.array(summary["dims"]) + 0.1 * j, y / lb, yerr=[(y - s["max_ci_low"]) / lb,
                        (np.array(s["max_ci_high"]) - y) / lb], color=style.color(name), marker=style.marker(name),
                        ls=("-", "--", ":")[j % 3], ms=3, capsize=1.5, lw=1, label=f"_{name}{n}")
    from matplotlib.ticker import MaxNLocator

    ax.axhline(1.0, color="k", lw=1.5)
    ax.axhline(cfg.factor, color="0.5", ls="--", lw=1)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    lines = "" if len(cfg.ns) == 1 else ": " + ", ".join(("-", "--", ":")[j % 3] for j in range(len(cfg.ns)))
    ax.set(xlabel="d", ylabel="measured / lower bound",
           title=f"(d) ratio (n = {', '.join(f'{n:,}' for n in cfg.ns)}{lines}; grey: {cfg.factor:g})")


def plot(outcome: _runner.Outcome, cfg: Config):
    """Four panels: growth in ln|Pi| with the lower bounds; the theorems' bounds; the epsilon scan; the ratio."""
    fig, axes = plt.subplots(2, 2, figsize=(style.WIDTH, 6.4), layout="constrained")
    _panel_growth(axes[0, 0], outcome.summary, cfg)
    _panel_bounds(axes[0, 1], outcome.summary, cfg)
    _panel_scan(axes[1, 0], outcome.table, cfg)
    _panel_ratio(axes[1, 1], outcome.summary, cfg)
    return style.finish(fig, f"Hypercube class |Pi| = 2^d, d = {cfg.d_min}..{cfg.d_max}: max over epsilon of n E[KL] "
                             f"(gamma = {cfg.gamma:g}, C_Pi = 1, pi* = all-ones vertex); trials = {cfg.trials}, "
                             f"seed = {cfg.seed}; bars: 95% bootstrap CI", ncol=3)


def estimator_verdicts(name: str, n: int, s: dict, cfg: Config) -> list[Verdict]:
    """The four claims of one estimator at one n: ln|Pi| needed; constant near the lower bound; LB below; bound above."""
    label, theorem = f"{style.short_label(name)} (n = {n:,})", THEOREM[name]
    f, r = s["slope"], s["ratio_to_lower"]
    window = f"d = {cfg.d_min}..{cfg.d_max}"
    grows = sign_verdict(f"{label}: max_eps n E[KL] grows with ln|Pi| ({theorem}'s ln|Pi| factor is needed)",
                         f["slope"], (f["ci_low"], f["ci_high"]), expected="positive",
                         note=f"OLS slope on ln|Pi| = d ln 2, {window}; 95% bootstrap CI over trials")
    out = [dataclasses.replace(grows, reference="slope > 0")]
    ok = r["ci_low"] <= cfg.factor and r["ci_high"] >= 1.0
    out.append(Verdict(f"{label}: slope within [1, {cfg.factor:g}] x the minimax lower bound's slope", r["slope"],
                       r["ci_low"], r["ci_high"], f"[1, {cfg.factor:g}]", AGREES if ok else DISAGREES,
                       f"lower bound's slope {sig(s['lower_bound_slope'])} (Assouad, exact TV); Bretagnolle-Huber "
                       f"form {sig(s['lower_bound_bh_slope'])}"))
    m = s["min_ci_high_over_lower"]
    out.append(Verdict(f"{label}: Assouad's lower bound lies below the measured max_eps n E[KL] at every d", m, None,
                       None, 1.0, AGREES if m >= 1.0 else DISAGREES, "min over d of (upper CI end / lower bound)"))
    b = s["max_over_bound"]
    out.append(Verdict(f"{label}: n E[KL] <= {theorem}'s bound in expectation (display at delta = 1/e) at every "
                       "(d, eps)", b, None, None, 1.0, AGREES if b <= 1.0 else DISAGREES,
                       f"max of measured / bound; at the hardest eps the bound's slope is "
                       f"{sig(s['bound_slope'] / f['slope'])} x the measured one "
                       f"({sig(s['bound_corrected_slope'] / f['slope'])} x with corrected constants)"))
    return out


def verdicts(outcome: _runner.Outcome, cfg: Config) -> list:
    """The problem; four claims per estimator and n; the coincidence of the three estimators; the overall verdict."""
    summary = outcome.summary
    lines: list = [f"problem: hypercube, d = {cfg.d_min}..{cfg.d_max} (|Pi| = 2^d), gamma = {cfg.gamma:g}, "
                   f"eps = c sqrt(d/n)/gamma, c in {list(cfg.scales)}; C_Pi = {summary['C_pi']}, R in "
                   f"[{sig(summary['R_range'][0])}, {sig(summary['R_range'][1])}]; measured time "
                   f"{summary['elapsed_s']:.0f} s"]
    for name in cfg.estimators:
        for n in cfg.ns:
            lines += estimator_verdicts(name, n, summary["estimators"][name][str(n)], cfg)
    same = {m: summary["estimators"][m][str(cfg.ns[-1])]["same_as_pmle"] for m in cfg.estimators if m != "pmle"}
    if "pmle" in cfg.estimators and same:
        lines.append("note: with the reward class gamma ln Pi (P_gamma(R) = Pi) distillation and reverse KL return "
                     "the fitted reward's policy, i.e. PMLE's (Gibbs' inequality): same index as PMLE in "
                     + ", ".join(f"{style.short_label(m)} {100 * v:.1f}%" for m, v in same.items()) + " of trials")
    lines.append(overall(summary, cfg))
    return lines


def overall(summary: dict, cfg: Config) -> str:
    """One sentence: is ln|Pi| needed, and how far are the measured constant, the lower bound and Theorem 4 apart."""
    name = cfg.estimators[0]
    s = summary["estimators"][name][str(cfg.ns[-1])]
    f, r = s["slope"], s["ratio_to_lower"]
    needed = "yes" if f["ci_low"] > 0 else "not shown"
    return (f"verdict: is ln|Pi| needed? {needed}: {style.short_label(name)}'s max_eps n E[KL] grows by {f['slope']:.3f} "
            f"[{f['ci_low']:.3f}, {f['ci_high']:.3f}] per unit of ln|Pi|, {r['slope']:.2f} [{r['ci_low']:.2f}, "
            f"{r['ci_high']:.2f}] x the minimax lower bound's {s['lower_bound_slope']:.3f} (asymptotically "
            f"{summary['asymptotic_lower_slope']:.3f}); {THEOREM[name]}'s slope in expectation is "
            f"{s['bound_slope']:.3g} (paper) / {s['bound_corrected_slope']:.3g} (corrected), "
            f"{s['bound_slope'] / f['slope']:.3g} / {s['bound_corrected_slope'] / f['slope']:.3g} x the measured one")


main = _runner.entry(Config, __doc__, run=_runner.sweep_then_summarize(sweep, summarize), plot=plot,
                     verdicts=verdicts)


if __name__ == "__main__":
    main()
