"""Report of the oracle-LM benchmark: summary, the paper's Table 2, the figure and the verdicts."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from finitepref.llm import oracle  # noqa: E402
from simulations import _runner, common, style  # noqa: E402

from .config import Config  # noqa: E402
from .evaluation import reference_rows  # noqa: E402
from .world import World  # noqa: E402

LABELS = {
    "pmle": "PMLE (eq. 5)", "pmle_nokl": "PMLE, beta=0 (eq. 4)", "distill": "Pref. distillation (eq. 12)",
    "reverse_kl": "Reverse KL (eq. 16)", "dpo": "DPO (eq. 6)", "rebel": "REBEL (eq. 10)", "rlhf": "RLHF/PPO (eq. 1)",
}
"""Figure label per algorithm: the one label table of the oracle-LM benchmark (to be read from the
trainer's algorithm registry, ``finitepref.llm.registry``, once it exists)."""


def summarize(world: World, cfg: Config, table: pd.DataFrame, refs: list[dict], timing: dict) -> dict:
    """The world's constants, each algorithm's KL(pi*||pi) by n with its slope, and the reward model's KL."""
    rng = np.random.default_rng(cfg.seed)
    out: dict = {"world": {"responses_per_prompt": world.logp0.shape[1], "prompts": world.prompt_texts,
                           "kl_star_pi0": float(world.prompt_probs @ oracle.kl_rows(world.logp_star, world.logp0)),
                           "kl_pi0_star": float(world.prompt_probs @ oracle.kl_rows(world.logp0, world.logp_star)),
                           "entropy_pi0": float(world.prompt_probs @ oracle.entropy_rows(world.logp0)),
                           "entropy_star": float(world.prompt_probs @ oracle.entropy_rows(world.logp_star)),
                           "leaked_mass_pi0": float(world.prompt_probs @ world.leak0)},
                 "references": refs, "algorithms": {}, "timing_s": timing}
    ns = np.array(sorted(table["n"].unique()))
    for algo, g in table.groupby("algorithm"):
        errs = np.stack([g[g["n"] == n].sort_values("seed")["kl_star_pi"].to_numpy() for n in ns])
        slope = common.loglog_slope(ns, errs, rng, resamples=200) if len(ns) > 1 else {"slope": None}
        means = {int(n): float(e.mean()) for n, e in zip(ns, errs, strict=True)}
        # "falls" only when the slope's CI (resampling seeds) lies below 0; else the last n vs the first
        falls = (slope["ci_high"] < 0) if slope.get("slope") is not None else bool(errs[-1].mean() < errs[0].mean())
        out["algorithms"][algo] = {"slope_kl_star_pi": slope, "mean_kl_star_pi": means, "falls_with_n": bool(falls)}
    out["sampled_win_in_ci_fraction"] = float(table["win_in_ci"].mean())
    rm = table.dropna(subset=["rm_kl_star_implied"])
    out["rm_implied_kl_star"] = {int(n): float(v) for n, v in rm.groupby("n")["rm_kl_star_implied"].mean().items()}
    return out


def table2(table: pd.DataFrame, refs: list[dict]) -> pd.DataFrame:
    """Table 2's columns (win-rate, RM score, KL(pi||pi0)) + exact KLs to pi*, at the largest n."""
    nmax = table["n"].max()
    g = table[table["n"] == nmax].groupby("algorithm", sort=False)
    cols = ["win_rate_exact", "win_rate_sampled", "rm_score", "kl_pi_pi0", "kl_star_pi", "kl_pi_star", "entropy",
            "leaked_mass"]
    t = g[cols].mean()
    t.insert(0, "n", nmax)
    t["seeds"] = g.size()
    ref = pd.DataFrame(refs).set_index("algorithm")[[c for c in cols if c in refs[0]]]
    return pd.concat([t, ref]).reset_index().rename(columns={"index": "algorithm"})


def plot(outcome: _runner.Outcome, cfg: Config):
    """KL to pi* and exact win-rate against n; the band is the range over seeds (dots: single seeds).

    With a handful of seeds a t-interval is uninformative (and leaves [0, 1] for the win-rate), so
    the figure shows the spread it actually measured.
    """
    table, world = outcome.table, outcome.data["world"]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    kl0 = float(world.prompt_probs @ oracle.kl_rows(world.logp_star, world.logp0))
    for algo, g in table.groupby("algorithm", sort=False):
        label, color, marker = LABELS[algo], style.color(algo), style.marker(algo)
        for ax, col in zip(axes, ("kl_star_pi", "win_rate_exact"), strict=True):
            stats = g.groupby("n")[col].agg(["mean", "min", "max"]).reset_index()
            ax.plot(stats["n"], stats["mean"], marker=marker, color=color, label=label)
            ax.fill_between(stats["n"], stats["min"], stats["max"], color=color, alpha=0.15)
            ax.scatter(g["n"], g[col], color=color, s=8, alpha=0.4)
    axes[0].axhline(kl0, color="k", ls="--", lw=1, label="pi0 (SFT)")
    axes[0].set(xscale="log", yscale="log", xlabel="preference pairs n", ylabel="exact KL(pi* || pi-hat)",
                title=f"Oracle LM: K={cfg.alphabet_size}, L={cfg.length}, X={cfg.n_prompts}")
    axes[1].axhline(0.5, color="k", ls="--", lw=1)
    wr_star = float(world.prompt_probs @ oracle.exact_win_rate(world.logp_star, world.logp0, world.logp_star,
                                                                 cfg.gamma))
    axes[1].axhline(wr_star, color="k", ls=":", lw=1, label="pi* vs pi0")
    axes[1].set(xscale="log", xlabel="preference pairs n", ylabel="exact oracle win-rate vs pi0", ylim=(0, 1),
                title=f"{cfg.seeds} seed(s), {cfg.steps} steps; band: range over seeds")
    axes[0].legend(fontsize=7)
    axes[1].legend(fontsize=7)
    fig.tight_layout()
    return fig


def claims(summary: dict, t2: pd.DataFrame, table: pd.DataFrame) -> list[str]:
    """One line per claim: KL by n per algorithm, overfitting without the KL term, drift, win-rates, the RM."""
    lines = []
    A = summary["algorithms"]
    kl0 = summary["world"]["kl_star_pi0"]
    for a, e in A.items():
        s = e["slope_kl_star_pi"]
        sl = f"{s['slope']:+.2f} [{s['ci_low']:+.2f}, {s['ci_high']:+.2f}]" if s.get("slope") is not None else "n/a"
        lines.append(f"{a:11s} KL(pi*||pi) by n {e['mean_kl_star_pi']}  slope {sl}  "
                     f"({'falls' if e['falls_with_n'] else 'no significant fall'} with n; toy log-linear PMLE slope ~ -1)")
    by = t2.set_index("algorithm")
    nmin = table["n"].min()
    if "pmle_nokl" in A and "pmle" in A:
        small = table[table["n"] == nmin].groupby("algorithm")["kl_star_pi"].mean()
        lines.append(f"PMLE beta=0 at n={nmin}: KL(pi*||pi) {small['pmle_nokl']:.4f} vs pi0's {kl0:.4f} -> "
                     f"{'overfits (above pi0)' if small['pmle_nokl'] > kl0 else 'no overfitting beyond pi0'}; "
                     f"with the KL term {small['pmle']:.4f} ({'better' if small['pmle'] < small['pmle_nokl'] else 'not better'})")
    if "dpo" in by.index and "pmle" in by.index:
        d, p = by.loc["dpo", "kl_pi_pi0"], by.loc["pmle", "kl_pi_pi0"]
        lines.append(f"KL(pi||pi0): DPO {d:.4f} vs PMLE {p:.4f} -> DPO drifts {'further' if d > p else 'less'} "
                     f"(paper's Table 2: further)")
    if "distill" in by.index and "rebel" in by.index:
        d, r = by.loc["distill", "win_rate_exact"], by.loc["rebel", "win_rate_exact"]
        lines.append(f"exact win-rate: distillation {d:.4f} vs REBEL {r:.4f} -> "
                     f"{'distillation wins (paper)' if d > r else 'REBEL wins (paper claims the opposite)'}")
    if "reverse_kl" in by.index and "rlhf" in by.index:
        lines.append(f"reverse KL vs RLHF: win-rate {by.loc['reverse_kl', 'win_rate_exact']:.4f} vs "
                     f"{by.loc['rlhf', 'win_rate_exact']:.4f}; KL(pi*||pi) {by.loc['reverse_kl', 'kl_star_pi']:.4f} vs "
                     f"{by.loc['rlhf', 'kl_star_pi']:.4f}")
    if summary["rm_implied_kl_star"]:
        lines.append(f"reward model (eq. 9): KL(pi*||pi~), pi~ = exp(R-hat/gamma)/Z (eq. 8, what distillation and reverse "
                     f"KL learn), by n {summary['rm_implied_kl_star']} vs pi0's {kl0:.4f}")
    f = summary["sampled_win_in_ci_fraction"]
    lines.append(f"sampled judge win-rate: exact value inside its "
                 f"95% Clopper-Pearson CI in {f:.0%} of {len(table)} runs (expected ~95%)")
    return lines


def outcome(cfg: Config, world: World, table: pd.DataFrame, lrs: dict, sweep_df: pd.DataFrame | None,
            timing: dict, runs: Path | None = None) -> _runner.Outcome:
    """Summary, Table 2 and verdicts from the per-run table, with every file the runner writes."""
    refs = reference_rows(world, np.random.default_rng(cfg.seed + 7))
    summary = summarize(world, cfg, table, refs, timing)
    t2 = table2(table, refs)
    summary["lrs"] = lrs
    summary["verdicts"] = claims(summary, t2, table)
    files = {"table2.csv": (t2, "%.6g")}
    if sweep_df is not None:
        files["sweep.csv"] = (sweep_df, "%.6g")
    if runs is not None:
        files["runs"] = runs
    return _runner.Outcome(table, summary, extra={"lr_choice": lrs, "sweep_grid": list(cfg.sweep_lrs) if cfg.sweep
                                                  else None},
                           files=files, data={"world": world, "table2": t2}, config=replace(cfg, lrs=lrs))


def verdicts(outcome: _runner.Outcome, cfg: Config) -> list[str]:
    """The world, Table 2, the claims and the time, as printed lines."""
    summary, world, t2 = outcome.summary, outcome.data["world"], outcome.data["table2"]
    w = summary["world"]
    lines = [f"world: {w['responses_per_prompt']} responses/prompt x {len(world.prompts)} prompts; "
             f"KL(pi*||pi0) = {w['kl_star_pi0']:.4f}, H(pi0) = {w['entropy_pi0']:.3f}, H(pi*) = {w['entropy_star']:.3f}, "
             f"pi0 leaked mass = {w['leaked_mass_pi0']:.3g}"]
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        lines.append(t2.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    lines += ["  " + line for line in summary["verdicts"]]
    lines.append(f"time: {summary['timing_s']['total']:.1f} s")
    return lines
